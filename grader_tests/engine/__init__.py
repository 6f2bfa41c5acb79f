"""The grading engine: intake, nbgrader plugins, sandboxed kernels forked from a warm server, merge, reports."""
