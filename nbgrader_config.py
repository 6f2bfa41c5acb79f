"""nbgrader configuration of the course: sources with solutions in solutions/, student versions in notebooks/.

Each folder of solutions/ is one assignment holding one notebook (01_autograd/autograd.ipynb, ...).
"""

from pathlib import Path

c = get_config()  # noqa: F821 - provided by nbgrader when it loads this file

ROOT = Path(__file__).resolve().parent

c.CourseDirectory.root = str(ROOT)
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "notebooks"
c.CourseDirectory.db_url = f"sqlite:///{ROOT / 'build' / 'gradebook.db'}"
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback"]
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# A warning on stderr must not cost points (nbgrader scores any stderr output of a test cell as 0):
# drop stderr outputs that are Python warnings before grading.
c.IgnorePattern.enabled = True
c.IgnorePattern.pattern = r"\w+Warning: "
