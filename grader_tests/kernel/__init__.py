"""What runs inside a grading kernel: the probes of the hidden checks and the hidden inputs they use.

A kernel's sandbox holds this folder and nothing else of ``grader_tests``. So nothing here may compare with a
reference, import from ``grader_tests.judges`` or ``grader_tests.engine`` (except :class:`record.Probe`, which
judges at once when it runs *outside* grading, for the instructor and the tests), or hold a secret: a student can
read and replace all of it, and the judges treat everything it records as untrusted.
"""
