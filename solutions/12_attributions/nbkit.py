"""Tiny notebook builder: md(), code(), locked/solution/test cells with nbgrader metadata."""
import json, uuid

def _src(text):
    lines = text.strip("\n").split("\n")
    return [line + "\n" for line in lines[:-1]] + [lines[-1]]

def _id(text):
    return uuid.uuid5(uuid.NAMESPACE_URL, text[:300]).hex[:8]

def _meta(kind, grade_id, points=None):
    if kind is None:
        return {}
    base = {"schema_version": 3, "grade_id": grade_id}
    if kind == "locked":
        base.update(grade=False, solution=False, locked=True)
    elif kind == "solution":
        base.update(grade=False, solution=True, locked=False)
    elif kind == "test":
        base.update(grade=True, solution=False, locked=True, points=points)
    elif kind == "answer":
        base.update(grade=True, solution=True, locked=False, points=points)
    return {"nbgrader": dict(sorted(base.items()))}

def md(text, grade_id=None, kind="locked", points=None):
    return {"cell_type": "markdown", "id": _id(text), "metadata": _meta(kind if grade_id else None, grade_id, points),
            "source": _src(text)}

def code(text, grade_id=None, kind="locked", points=None):
    return {"cell_type": "code", "execution_count": None, "id": _id(text),
            "metadata": _meta(kind if grade_id else None, grade_id, points), "outputs": [], "source": _src(text)}

def write(cells, path):
    nb = {"cells": cells, "metadata": {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python",
          "name": "python3"}, "language_info": {"name": "python"}}, "nbformat": 4, "nbformat_minor": 5}
    ids = [c["id"] for c in cells]
    assert len(set(ids)) == len(ids), "duplicate cell ids"
    with open(path, "w") as f:
        json.dump(nb, f, indent=1, ensure_ascii=False)
        f.write("\n")
