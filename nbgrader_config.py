"""nbgrader configuration of the course: sources with solutions in solutions/, student versions in notebooks/.

Each folder of solutions/ is one assignment holding one notebook (01_autograd/autograd.ipynb, ...).
"""

import os
from pathlib import Path

c = get_config()  # noqa: F821 - provided by nbgrader when it loads this file

ROOT = Path(__file__).resolve().parent

c.CourseDirectory.root = str(ROOT)
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "notebooks"
# Grading runs write under build/grading (the tests point VISUALIZING_CNNS_GRADING at a scratch folder).
GRADING = Path(os.environ.get("VISUALIZING_CNNS_GRADING", ROOT / "build" / "grading")).resolve()
c.CourseDirectory.db_url = f"sqlite:///{GRADING / 'gradebook.db'}"
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback"]
# The stub names the function to write ({function}: grader_tests.engine.course.NamedStubs), so that JupyterLab's
# Run All, which stops at the first unfinished task, says which one it is.
c.ClearSolutions.code_stub = {
    "python": '# YOUR CODE HERE\nraise NotImplementedError("write {function}: replace this line with your code")'
}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# A warning on stderr must not cost points (nbgrader scores any stderr output of a test cell as 0):
# drop stderr outputs that are Python warnings before grading.
c.IgnorePattern.enabled = True
c.IgnorePattern.pattern = r"\w+Warning: "

# --- autograding (make grade; see docs/instructors.md) ------------------------------------------------------------
c.CourseDirectory.submitted_directory = str(GRADING / "submitted")
c.CourseDirectory.autograded_directory = str(GRADING / "autograded")
c.CourseDirectory.feedback_directory = str(GRADING / "feedback")
# `nbgrader export`: nbgrader's own CSV next to the gradebook, not in the folder it runs in (`--to` still wins);
# not grades.csv, which is make grade's.
c.ExportPlugin.to = str(GRADING / "nbgrader_grades.csv")
# `nbgrader zip_collect <assignment>`: put the LMS zip in build/grading/downloaded/<assignment>/archive/
c.ZipCollectApp.downloaded_directory = os.path.relpath(GRADING / "downloaded", ROOT)  # nbgrader prefixes the root
c.FileNameCollectorPlugin.named_regexp = (  # matched from the start of the extracted file's whole path:
    # .../alice_12345_gradcam.ipynb; ids of Unicode letters and digits, with single dots or hyphens inside
    r".*[\\/](?P<student_id>[^\W_](?:[^\W_]|[.\-](?=[^\W_]))*)_(?:[^\\/]*_)?(?P<file_id>[A-Za-z0-9]+\.ipynb)$"
)

from nbconvert.preprocessors import (  # noqa: E402
    ClearMetadataPreprocessor, CoalesceStreamsPreprocessor, CSSHTMLHeaderPreprocessor,
)
from nbgrader.converters import GenerateAssignment  # noqa: E402
from nbgrader.preprocessors import (  # noqa: E402
    AssignLatePenalties, ClearOutput, ClearSolutions, DeduplicateIds, GetGrades, IgnorePattern,
    LimitOutput, OverwriteCells, OverwriteKernelspec, SaveAutoGrades,
)

from grader_tests.engine.course import NamedStubs  # noqa: E402
from grader_tests.engine.forkserver import ForkingKernelManager  # noqa: E402
from grader_tests.engine.nbgrader_plugins import (  # noqa: E402
    CheckCellMetadataOnce, ClearHiddenTestsOfTests, FeedbackExporter, GuardedExecute, JudgeHiddenChecks,
    RepairStructure,
)

# Generating the student versions: nbgrader's steps, with stubs that name their function (code_stub above).
c.GenerateAssignment.preprocessors = [
    NamedStubs if step is ClearSolutions else step
    for step in GenerateAssignment.class_traits()["preprocessors"].default()
]

# Sanitising: rebuild broken notebooks on the released ones first, then nbgrader's own checks.
c.RepairStructure.release_directory = str(ROOT / "notebooks")
c.GuardedExecute.release_directory = str(ROOT / "notebooks")  # which cells are the student's own
c.Autograde.sanitize_preprocessors = [
    RepairStructure, ClearOutput, DeduplicateIds, OverwriteKernelspec, OverwriteCells, CheckCellMetadataOnce,
]
# Grading: execute with guards, then let the trusted judge decide the graded test cells before nbgrader scores.
# (nbgrader's default list ends with a second CheckCellMetadata: nothing here changes the nbgrader metadata the
# sanitising step checked, and that check is a tenth of a notebook's grading time.)
# (Consecutive prints of a cell become one output, as JupyterLab shows them: a kernel held to its CPU quota flushes
# its output in more pieces. After IgnorePattern, which drops whole stderr outputs that are warnings.)
c.Autograde.autograde_preprocessors = [
    GuardedExecute, IgnorePattern, JudgeHiddenChecks, CoalesceStreamsPreprocessor, ClearMetadataPreprocessor,
    LimitOutput, SaveAutoGrades, AssignLatePenalties,
]
c.CoalesceStreamsPreprocessor.enabled = True  # nbconvert's preprocessors are off unless enabled
c.Execute.timeout = 60  # seconds per cell; a cell past it is interrupted
# Kernels are forked from a process that has imported torch & co. once (grader_tests/engine/forkserver.py), and
# killed once their notebook has run: nothing a kernel would do at exit counts. (Set here, not in GuardedExecute:
# nbconvert rebuilds the preprocessor from the configuration for every notebook.)
c.Execute.kernel_manager_class = ForkingKernelManager
c.Execute.shutdown_kernel = "immediate"
# Nor does its input history: IPython keeps it in memory (In, _i) without writing an SQLite file at start.
c.Execute.extra_arguments = ["--HistoryManager.enabled=False"]
# nbconvert validates a notebook after each of its preprocessors (a twelfth of a grading's time); once, after the
# last, is enough: a notebook a preprocessor broke is refused all the same.
c.Exporter.optimistic_validation = True
# Feedback never shows the hidden tests (nbgrader's default feedback would, jupyter/nbgrader#917).
c.GenerateFeedback.preprocessors = [ClearHiddenTestsOfTests, GetGrades, CSSHTMLHeaderPreprocessor]
c.GenerateFeedback.exporter_class = FeedbackExporter

# --- what a browser shows: the feedback pages and formgrader (docs/formgrader.md) ---------------------------------
# Both build nbconvert's HTMLExporter from this file. Student HTML is sanitised (grader_tests/engine/sanitize.py):
# outputs, raw cells and Markdown (nbgrader's templates render Markdown without nbconvert's clean_html, so the
# markdown2html filter cleans), and what is not HTML (JavaScript and widget outputs, iframes, image sizes) is
# removed from the copy being shown.
c.HTMLExporter.sanitize_html = True
c.HTMLExporter.filters = {
    "clean_html": "grader_tests.engine.sanitize.clean_html",
    "markdown2html": "grader_tests.engine.sanitize.SafeMarkdown",
}
c.HTMLExporter.preprocessors = ["grader_tests.engine.sanitize.RemoveActiveContent"]
