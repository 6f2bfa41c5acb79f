"""Intake of a class's downloads: every layout gives exactly its (student, assignment) pairs with the right bytes,
the newest resubmission wins with a note, every file not used is reported by name, and no student's file name can
write outside the working folder or merge two students."""

from __future__ import annotations

import stat
import unicodedata
import zipfile
from pathlib import Path

import pytest

from grader_tests.engine import intake as I
from grader_tests.engine.intake import collect

NOTEBOOKS = {"05_saliency": "saliency", "06_gradcam": "gradcam"}
STAMP = (2024, 5, 1, 12, 0, 0)


def make_zip(path: Path, members: list[tuple]) -> Path:
    """``members``: ``(name, data)`` or ``(name, data, date_time)``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data, *when in members:
            info = zipfile.ZipInfo(name, date_time=when[0] if when else STAMP)
            archive.writestr(info, data)
    return path


def make_tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def graded(result: I.Intake, notebooks: dict[str, str] = NOTEBOOKS) -> dict[tuple[str, str], bytes]:
    """(student, assignment) -> the bytes of the notebook handed to the grader."""
    return {(s.student, s.assignment): (s.folder / f"{notebooks[s.assignment]}.ipynb").read_bytes()
            for s in result.submissions}


def reason(result: I.Intake, path: str) -> str:
    lines = [line for line in result.skipped if line.startswith(f"{path}: ")]
    assert len(lines) == 1, (path, result.skipped)
    return lines[0][len(path) + 2:]


def notes_of(result: I.Intake, student: str, assignment: str) -> list[str]:
    return next(s.notes for s in result.submissions if (s.student, s.assignment) == (student, assignment))


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


# --- layouts --------------------------------------------------------------------------------------------------


def test_nbgrader_folder_keeps_other_files_and_reports_the_rest(tmp_path):
    source = make_tree(tmp_path / "src", {
        "alice/06_gradcam/gradcam.ipynb": b"alice gradcam",
        "alice/06_gradcam/data/cat.png": b"png",
        "alice/06_gradcam/.ipynb_checkpoints/gradcam-checkpoint.ipynb": b"junk",
        "alice/06_gradcam/.DS_Store": b"junk",
        "bob/05_saliency/saliency.ipynb": b"bob saliency",
        "carol/99_other/other.ipynb": b"not this course",
        "dave/06_gradcam/GradCAM.ipynb": b"wrong case",
    })
    (source / "bob" / "05_saliency" / "secret.txt").symlink_to("/etc/passwd")
    (source / "eve").symlink_to(source / "alice")
    result = collect(source, NOTEBOOKS, tmp_path / "out")
    dave = next(s for s in result.submissions if s.student == "dave")
    assert files_under(dave.folder) == {"GradCAM.ipynb"}  # misnamed: still dave's submission, the grader notes why
    result.submissions.remove(dave)
    assert graded(result) == {("alice", "06_gradcam"): b"alice gradcam", ("bob", "05_saliency"): b"bob saliency"}
    alice = result.submissions[0]
    assert alice.folder == (tmp_path / "out" / "alice" / "06_gradcam").resolve()
    assert files_under(alice.folder) == {"gradcam.ipynb", "data/cat.png"}
    assert reason(result, "carol/99_other/other.ipynb").startswith("unknown notebook name `other.ipynb`")
    assert "symbolic link" in reason(result, "bob/05_saliency/secret.txt")
    assert "symbolic link" in reason(result, "eve")
    assert len(result.skipped) == 3  # checkpoints and .DS_Store are silently ignored
    assert not (tmp_path / "out" / "bob" / "05_saliency" / "secret.txt").exists()


def test_nbgrader_layout_zip_under_one_top_folder(tmp_path):
    source = make_zip(tmp_path / "class.zip", [
        ("submitted/", b""),
        ("submitted/alice/06_gradcam/gradcam.ipynb", b"alice"),
        ("submitted/alice/06_gradcam/helper.py", b"x = 1"),
        ("submitted/bob/06_gradcam/gradcam.ipynb", b"bob"),
        ("submitted/bob/05_saliency/saliency.ipynb", b"bob s"),
        ("__MACOSX/submitted/alice/06_gradcam/._gradcam.ipynb", b"junk"),
    ])
    result = collect(source, NOTEBOOKS, tmp_path / "out")
    assert graded(result) == {("alice", "06_gradcam"): b"alice", ("bob", "05_saliency"): b"bob s",
                              ("bob", "06_gradcam"): b"bob"}
    assert (result.submissions[0].folder / "helper.py").read_bytes() == b"x = 1"
    assert result.skipped == []


def test_generic_flat_zip(tmp_path):
    source = make_zip(tmp_path / "lms.zip", [
        ("alice_4711_gradcam.ipynb", b"alice g"),
        ("submissions/bob_gradcam.ipynb", b"bob g"),
        ("submissions/bob_a_b_c_saliency.ipynb", b"bob s"),
        ("alice_4711_notes.txt", b"notes"),
        ("gradcam.ipynb", b"whose?"),
        ("alice_4711_gradcam_1.ipynb", b"_1 is no suffix"),
    ])
    result = collect(source, NOTEBOOKS, tmp_path / "out")
    assert graded(result) == {("alice", "06_gradcam"): b"alice g", ("bob", "06_gradcam"): b"bob g",
                              ("bob", "05_saliency"): b"bob s"}
    assert reason(result, "alice_4711_notes.txt") == "not a notebook"
    assert reason(result, "gradcam.ipynb").startswith("unparseable name")
    assert reason(result, "alice_4711_gradcam_1.ipynb").startswith("unknown notebook name `1.ipynb`")
    assert len(result.skipped) == 3


def test_canvas_names_late_marker_and_resubmissions(tmp_path):
    source = make_zip(tmp_path / "canvas.zip", [
        ("doejane_4711_998877_gradcam.ipynb", b"jane 0"),
        ("doejane_4711_998879_gradcam-1.ipynb", b"jane 1"),
        ("doejane_4711_998880_gradcam-2.ipynb", b"jane 2"),
        ("smithjohn_LATE_4712_998878_gradcam-1.ipynb", b"john late"),
        ("smithjohn_4712_998870_saliency.ipynb", b"john s"),
        ("smithjohn_4712_998871_my_saliency.ipynb", b"renamed"),
    ])
    result = collect(source, NOTEBOOKS, tmp_path / "out")
    assert graded(result) == {("doejane", "06_gradcam"): b"jane 2", ("smithjohn", "06_gradcam"): b"john late",
                              ("smithjohn", "05_saliency"): b"john s"}
    (note,) = notes_of(result, "doejane", "06_gradcam")
    assert note.startswith("3 files for 06_gradcam: graded `doejane_4711_998880_gradcam-2.ipynb`, the newest")
    assert "resubmission number" in note
    assert reason(result, "doejane_4711_998877_gradcam.ipynb").startswith("older resubmission")
    assert reason(result, "doejane_4711_998879_gradcam-1.ipynb").startswith("older resubmission")
    assert notes_of(result, "smithjohn", "06_gradcam") == ["submitted late (Canvas LATE marker)"]
    assert notes_of(result, "smithjohn", "05_saliency") == []
    assert reason(result, "smithjohn_4712_998871_my_saliency.ipynb").startswith("unknown notebook name")


def test_canvas_namesakes_stay_two_students(tmp_path):
    source = make_zip(tmp_path / "canvas.zip", [
        ("leeanna_100_1_gradcam.ipynb", b"first"),
        ("leeanna_200_2_gradcam.ipynb", b"second"),
    ])
    result = collect(source, NOTEBOOKS, tmp_path / "out")
    assert graded(result) == {("leeanna-100", "06_gradcam"): b"first", ("leeanna-200", "06_gradcam"): b"second"}
    assert "shared by user ids 100, 200" in notes_of(result, "leeanna-100", "06_gradcam")[0]


def test_moodle_folders_with_unicode_names(tmp_path):
    source = make_zip(tmp_path / "moodle.zip", [
        ("Jane Doe_123456_assignsubmission_file_/gradcam.ipynb", b"jane"),
        ("Jane Doe_123456_assignsubmission_file_/figure.png", b"png"),
        ("Jane Doe_123456_assignsubmission_onlinetext_/onlinetext.html", b"<p>hi</p>"),
        ("Zoë Ångström_42_assignsubmission_file_/saliency.ipynb", b"zoe"),
        ("Max Mustermann_7_assignsubmission_file_saliency (1).ipynb", b"max flat"),
    ])
    result = collect(source, NOTEBOOKS, tmp_path / "out")
    assert graded(result) == {("Jane_Doe_123456", "06_gradcam"): b"jane", ("Zoë_Ångström_42", "05_saliency"): b"zoe",
                              ("Max_Mustermann_7", "05_saliency"): b"max flat"}
    assert "onlinetext" in reason(result, "Jane Doe_123456_assignsubmission_onlinetext_/onlinetext.html")
    assert reason(result, "Jane Doe_123456_assignsubmission_file_/figure.png") == "not a notebook"
    assert (tmp_path / "out" / "Zoë_Ångström_42" / "05_saliency" / "saliency.ipynb").exists()


def test_blackboard_two_students_two_attempts_each(tmp_path):
    early, late = "2016-01-30-20-30-10", "2016-02-01-08-00-00"
    source = make_zip(tmp_path / "bb.zip", [
        (f"ps1_hacker_attempt_{early}_problem1.ipynb", b"hacker 1"),
        (f"ps1_hacker_attempt_{late}_problem1.ipynb", b"hacker 2"),
        (f"ps1_hacker_attempt_{late}.txt", b"receipt"),
        (f"ps1_bitdiddle_attempt_{late}_problem1 (1).ipynb", b"ben 2", (2000, 1, 1, 0, 0, 0)),
        (f"ps1_bitdiddle_attempt_{early}_problem1-3.ipynb", b"ben 1", (2030, 1, 1, 0, 0, 0)),
        (f"Problem Set_1 (late)_reasoner_attempt_{early}_problem1.ipynb", b"alyssa"),
    ])
    result = collect(source, {"ps1": "problem1"}, tmp_path / "out")
    assert graded(result, {"ps1": "problem1"}) == {
        ("hacker", "ps1"): b"hacker 2", ("bitdiddle", "ps1"): b"ben 2", ("reasoner", "ps1"): b"alyssa"}
    (note,) = notes_of(result, "bitdiddle", "ps1")
    assert note.startswith(f"2 files for ps1: graded `ps1_bitdiddle_attempt_{late}_problem1 (1).ipynb`, the newest")
    assert "Blackboard attempt time" in note
    assert reason(result, f"ps1_hacker_attempt_{late}.txt").startswith("Blackboard attempt receipt")
    assert reason(result, f"ps1_hacker_attempt_{early}_problem1.ipynb").startswith("older resubmission")
    assert reason(result, f"ps1_bitdiddle_attempt_{early}_problem1-3.ipynb").startswith("older resubmission")
    assert len(result.skipped) == 3


# --- resubmissions --------------------------------------------------------------------------------------------


def test_resubmission_suffixes_newest_wins(tmp_path):
    source = make_zip(tmp_path / "lms.zip", [
        ("alice_gradcam.ipynb", b"a0"),
        ("alice_gradcam (1).ipynb", b"a1"),
        ("alice_gradcam (2).ipynb", b"a2"),
        ("alice_gradcam (copy).ipynb", b"copy"),
        ("bob_saliency-1.ipynb", b"b1"),
        ("bob_saliency.ipynb", b"b0"),
    ])
    result = collect(source, NOTEBOOKS, tmp_path / "out")
    assert graded(result) == {("alice", "06_gradcam"): b"a2", ("bob", "05_saliency"): b"b1"}
    (note,) = notes_of(result, "alice", "06_gradcam")
    assert note.startswith("3 files for 06_gradcam: graded `alice_gradcam (2).ipynb`, the newest")
    assert "`alice_gradcam.ipynb`" in note and "`alice_gradcam (1).ipynb`" in note
    assert notes_of(result, "bob", "05_saliency")[0].startswith("2 files for 05_saliency: graded `bob_saliency-1")
    assert reason(result, "alice_gradcam (copy).ipynb").startswith("unknown notebook name")
    assert reason(result, "bob_saliency.ipynb").startswith("older resubmission: `bob_saliency-1.ipynb` is graded")


def test_file_date_breaks_a_tie(tmp_path):
    source = make_zip(tmp_path / "lms.zip", [
        ("uploads/alice_gradcam.ipynb", b"new", (2024, 6, 2, 9, 0, 0)),
        ("alice_gradcam.ipynb", b"old", (2024, 6, 1, 9, 0, 0)),
    ])
    result = collect(source, NOTEBOOKS, tmp_path / "out")
    assert graded(result) == {("alice", "06_gradcam"): b"new"}
    (note,) = notes_of(result, "alice", "06_gradcam")
    assert "graded `uploads/alice_gradcam.ipynb`" in note and "file date" in note  # same names: paths shown
    assert reason(result, "alice_gradcam.ipynb").startswith("older resubmission")


def test_notebook_bytes_are_copied_as_they_are(tmp_path):
    data = b"\x00not json at all\xff"
    result = collect(make_zip(tmp_path / "z.zip", [("alice_gradcam.ipynb", data)]), NOTEBOOKS, tmp_path / "out")
    assert graded(result) == {("alice", "06_gradcam"): data}


def test_case_of_names_and_extensions_is_strict(tmp_path):
    source = make_zip(tmp_path / "lms.zip", [("alice_GradCAM.ipynb", b"x"), ("bob_gradcam.IPYNB", b"y")])
    result = collect(source, NOTEBOOKS, tmp_path / "out")
    assert result.submissions == []
    assert reason(result, "alice_GradCAM.ipynb").startswith("unknown notebook name `GradCAM.ipynb`")
    assert reason(result, "bob_gradcam.IPYNB").startswith("unknown notebook name `gradcam.IPYNB`")
    assert all("case-sensitive" in line for line in result.skipped)


# --- student ids ----------------------------------------------------------------------------------------------


def test_unicode_ids_are_kept_and_never_merged(tmp_path):
    nfd_jose = unicodedata.normalize("NFD", "José")
    source = make_zip(tmp_path / "lms.zip", [
        ("José_gradcam.ipynb", b"acute"),
        ("Josè_gradcam.ipynb", b"grave"),
        ("李雷_gradcam.ipynb", b"li lei"),
        ("韩梅梅_gradcam.ipynb", b"han meimei"),
        (f"{nfd_jose}_saliency.ipynb", b"acute, NFD"),
    ])
    result = collect(source, NOTEBOOKS, tmp_path / "out")
    assert graded(result) == {("José", "06_gradcam"): b"acute", ("Josè", "06_gradcam"): b"grave",
                              ("李雷", "06_gradcam"): b"li lei", ("韩梅梅", "06_gradcam"): b"han meimei",
                              ("José", "05_saliency"): b"acute, NFD"}


@pytest.mark.parametrize("name, why", [
    (".._gradcam.ipynb", "made only of dots"),
    ("..._gradcam.ipynb", "made only of dots"),
    (".hidden_gradcam.ipynb", "starts with a dot"),
    ("a\x01b_gradcam.ipynb", "control character"),
    ("a\u202eb_gradcam.ipynb", "control character"),
    ("*_gradcam.ipynb", "glob character"),
    (f"{'x' * 101}_gradcam.ipynb", "longer than 100"),
    (f"{'李' * 70}_gradcam.ipynb", "200 bytes"),
])
def test_unsafe_student_ids_are_skipped(tmp_path, name, why):
    source = make_zip(tmp_path / "lms.zip", [(name, b"x"), ("alice_gradcam.ipynb", b"a")])
    result = collect(source, NOTEBOOKS, tmp_path / "out")
    assert graded(result) == {("alice", "06_gradcam"): b"a"}
    (line,) = result.skipped
    assert why in line
    assert files_under(tmp_path / "out") == {"alice/06_gradcam/gradcam.ipynb"}


@pytest.mark.parametrize("student", ["", ".", "..", "a/b", "a\\b", "a\0b", "a\nb", ".a"])
def test_ids_that_no_file_name_can_carry_are_rejected_too(student):
    assert I._id_problem(student)


def test_unsafe_ids_in_an_nbgrader_folder(tmp_path):
    source = make_tree(tmp_path / "src", {".../06_gradcam/gradcam.ipynb": b"dots", ".x/06_gradcam/gradcam.ipynb": b"x",
                                          "alice/06_gradcam/gradcam.ipynb": b"a"})
    result = collect(source, NOTEBOOKS, tmp_path / "out")
    assert graded(result) == {("alice", "06_gradcam"): b"a"}
    assert "unsafe student id `...`: empty or made only of dots" in reason(result, ".../06_gradcam/gradcam.ipynb")
    assert "starts with a dot" in reason(result, ".x/06_gradcam/gradcam.ipynb")


# --- attacks on paths -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../../evil_gradcam.ipynb", "/etc/x_gradcam.ipynb", "..\\..\\x_gradcam.ipynb",
                                  "C:\\x_gradcam.ipynb", "ok/../../x_gradcam.ipynb"])
def test_no_path_leaves_out(tmp_path, name):
    source = make_zip(tmp_path / "src" / "evil.zip", [(name, b"evil"), ("alice_gradcam.ipynb", b"a")])
    out = tmp_path / "work" / "out"
    result = collect(source, NOTEBOOKS, out)
    assert graded(result) == {("alice", "06_gradcam"): b"a"}
    assert "unsafe path" in reason(result, name)
    assert files_under(tmp_path) == {"src/evil.zip", "work/out/alice/06_gradcam/gradcam.ipynb"}


def test_symlink_members_are_not_extracted(tmp_path):
    source = tmp_path / "links.zip"
    with zipfile.ZipFile(source, "w") as archive:
        link = zipfile.ZipInfo("alice_gradcam.ipynb", date_time=STAMP)
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
        archive.writestr("bob_gradcam.ipynb", b"b")
    result = collect(source, NOTEBOOKS, tmp_path / "out")
    assert graded(result) == {("bob", "06_gradcam"): b"b"}
    assert "symbolic link" in reason(result, "alice_gradcam.ipynb")
    assert not any(p.is_symlink() for p in (tmp_path / "out").rglob("*"))


def test_a_file_over_the_cap_is_skipped_and_the_next_newest_graded(tmp_path, monkeypatch):
    monkeypatch.setattr(I, "MAX_FILE_BYTES", 10)
    source = make_zip(tmp_path / "lms.zip", [("alice_gradcam (1).ipynb", b"x" * 11), ("alice_gradcam.ipynb", b"ok")])
    result = collect(source, NOTEBOOKS, tmp_path / "out")
    assert graded(result) == {("alice", "06_gradcam"): b"ok"}
    assert reason(result, "alice_gradcam (1).ipynb").startswith("too big")


def test_reading_stops_at_the_cap_whatever_the_declared_size(tmp_path, monkeypatch):
    monkeypatch.setattr(I, "MAX_FILE_BYTES", 10)
    read = []

    class Endless:
        def read(self, n):
            read.append(n)
            return b"x" * n

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    entry = I._Entry("alice_gradcam.ipynb", STAMP, 0, Endless)
    with pytest.raises(I._Skip, match="too big"):
        I._copy_capped(entry, tmp_path / "gradcam.ipynb", tmp_path)
    assert sum(read) == 11 and not (tmp_path / "gradcam.ipynb").exists()


def test_a_zip_over_the_total_cap_is_refused_and_nothing_extracted(tmp_path, monkeypatch):
    monkeypatch.setattr(I, "MAX_ZIP_BYTES", 100)
    source = make_zip(tmp_path / "bomb.zip", [(f"s{i}_gradcam.ipynb", b"x" * 30) for i in range(4)])
    out = make_tree(tmp_path / "out", {"earlier.txt": b"kept"})
    with pytest.raises(ValueError, match="uncompressed"):
        collect(source, NOTEBOOKS, out)
    assert files_under(out) == {"earlier.txt"}


# --- the source and the working folder ------------------------------------------------------------------------


def test_source_must_be_a_folder_or_a_zip(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    for source in (tmp_path / "notes.txt", tmp_path / "missing.zip"):
        with pytest.raises(ValueError, match="neither a folder of submissions nor a zip"):
            collect(source, NOTEBOOKS, tmp_path / "out")


def test_out_is_wiped_and_must_not_hold_the_source(tmp_path):
    source = make_zip(tmp_path / "lms.zip", [("alice_gradcam.ipynb", b"a")])
    out = make_tree(tmp_path / "out", {"stale/06_gradcam/gradcam.ipynb": b"old run"})
    assert graded(collect(source, NOTEBOOKS, out)) == {("alice", "06_gradcam"): b"a"}
    assert files_under(out) == {"alice/06_gradcam/gradcam.ipynb"}
    with pytest.raises(ValueError, match="overlap"):
        collect(source, NOTEBOOKS, tmp_path)
