"""Instructor-only: reference implementations and the hidden checks of the graded tasks. Never released.

One module per notebook topic holds both the reference implementation and the ``check_*`` functions that the
notebooks' hidden test cells call. A check runs the student's function on inputs the student never saw and
compares with the reference (see :mod:`grader_tests.common`).
"""
