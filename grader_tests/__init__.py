"""Instructor-only: the autograder of the course. Never released to students.

Three parts, one folder each, split along the trust boundary of grading:

* ``kernel/``: what may run inside a student's grading kernel. The *probes* of the hidden checks call the
  student's functions on hidden inputs and record raw results; nothing here compares, and nothing here knows a
  reference answer. It is the only part of this package a sandboxed kernel can see.
* ``judges/``: the reference implementations and the *judges*, which decide each graded test cell from the
  recorded results. They run only in the grading process, never in a kernel, and a kernel cannot read them.
* ``engine/``: the grading engine: intake, nbgrader's configuration and plugins, the fork server and the sandbox
  of the kernels, the gradebook merge and the reports.
"""
