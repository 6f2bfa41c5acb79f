import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pip_lines(text: str) -> list[str]:
    block = text.split("- pip:", 1)[1]
    return [m.group(1).strip() for m in re.finditer(r"^\s+- (.+)$", block, re.M)]


def test_environment_yml_names_the_pyproject_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [name for extra in project["optional-dependencies"].values() for name in extra]
    everything = project["dependencies"] + extras
    conda = _pip_lines((ROOT / "environment.yml").read_text())
    assert sorted(conda) == sorted(everything)


def test_readme_opens_with_the_two_commands():
    head = (ROOT / "README.md").read_text()[:1500]
    assert "make course" in head and "make test" in head
    assert "make test" in (ROOT / ".ci" / "run").read_text()
