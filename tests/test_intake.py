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


def test_nbgrader_folder_keeps_its_notebooks_and_reports_the_rest(tmp_path):
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
    assert files_under(alice.folder) == {"gradcam.ipynb"}
    assert reason(result, "alice/06_gradcam/data/cat.png") == "not a notebook: only notebooks are graded"
    assert reason(result, "carol/99_other/other.ipynb").startswith("unknown notebook name `other.ipynb`")
    assert "symbolic link" in reason(result, "bob/05_saliency/secret.txt")
    assert "symbolic link" in reason(result, "eve")
    assert len(result.skipped) == 4  # checkpoints and .DS_Store are silently ignored
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
    assert not (result.submissions[0].folder / "helper.py").exists()  # only notebooks are graded (or served)
    assert result.skipped == ["submitted/alice/06_gradcam/helper.py: not a notebook: only notebooks are graded"]
    assert result.submissions[0].notes == ["1 file(s) beside the notebook were left out: only notebooks are graded"]


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
    ("\u200b\u202e_gradcam.ipynb", "empty"),
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


# --- zip bombs (issue 22: a 414 KB zip that expanded to 400 MB was written four times) -------------------------


def zeros_zip(path: Path, members: list[tuple[str, int]], extra: list[tuple[str, bytes]] = ()) -> Path:
    """A zip of ``(name, size)`` members of zeros, DEFLATEd (about 1000:1), streamed: never in memory at once."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, size in members:
            info = zipfile.ZipInfo(name, date_time=STAMP)
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, "w", force_zip64=False) as member:
                for start in range(0, size, 2**24):
                    member.write(bytes(min(2**24, size - start)))
        for name, data in extra:
            archive.writestr(zipfile.ZipInfo(name, date_time=STAMP), data, zipfile.ZIP_DEFLATED)
    return path


def disk_used(root: Path) -> int:
    """Bytes on disk under ``root`` (blocks, so a sparse file counts for what it holds)."""
    return sum(p.lstat().st_blocks * 512 for p in [root, *root.rglob("*")] if p.exists())


def understate(path: Path, name: str, declared: int) -> None:
    """Rewrite the central directory's uncompressed size of member ``name``: the zip lies about it."""
    import struct

    data = bytearray(path.read_bytes())
    end = data.rindex(b"PK\x05\x06")  # the end of central directory record: where the directory starts
    at = struct.unpack_from("<I", data, end + 16)[0]
    while data[at:at + 4] == b"PK\x01\x02":
        lengths = struct.unpack_from("<HHH", data, at + 28)  # name, extra field, comment
        if data[at + 46:at + 46 + lengths[0]].decode() == name:
            struct.pack_into("<I", data, at + 24, declared)
            path.write_bytes(bytes(data))
            return
        at += 46 + sum(lengths)
    raise AssertionError(f"{name} is not in {path}")


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    """The issue's bomb: eight notebooks of 50 MiB of zeros, 400 MiB in a zip of about 400 KB."""
    return zeros_zip(tmp_path_factory.mktemp("bomb") / "class.zip",
                     [(f"student{i}_gradcam.ipynb", I.MAX_FILE_BYTES) for i in range(8)])


def test_a_zip_bomb_is_refused_with_its_ratio_before_anything_is_written(bomb, tmp_path):
    assert bomb.stat().st_size < 500_000
    out = make_tree(tmp_path / "out", {"earlier.txt": b"kept"})
    with pytest.raises(ValueError, match=r"expands \d+-fold \(.* KiB to 400\.0 MiB uncompressed\), more than the "
                                         r"100:1 allowed: a zip bomb\? nothing extracted"):
        collect(bomb, NOTEBOOKS, out)
    assert files_under(out) == {"earlier.txt"} and disk_used(tmp_path) < 100_000


def test_the_grader_refuses_the_bomb_and_writes_nothing_under_the_grading_folder(bomb, tmp_path):
    from conftest import grading_in

    from grader_tests.engine import grade as G

    with grading_in(tmp_path / "grading") as grading:
        with pytest.raises(SystemExit, match="a zip bomb"):
            G.intake(bomb)
        assert disk_used(grading) < 100_000


def test_a_bomb_member_is_skipped_and_the_rest_graded(tmp_path):
    honest = bytes(range(256)) * 400  # 100 KiB that do not compress much: the zip as a whole stays under 100:1
    source = zeros_zip(tmp_path / "lms.zip", [("mallory_gradcam.ipynb", 5 * 2**20)],
                       [("alice_gradcam.ipynb", b"alice"), ("alice_notes.txt", honest + zlib_proof())])
    result = collect(source, NOTEBOOKS, tmp_path / "out")
    assert graded(result) == {("alice", "06_gradcam"): b"alice"}
    assert reason(result, "mallory_gradcam.ipynb").startswith("expands ")
    assert "more than the 100:1 allowed for files over 1.0 MiB: a zip bomb? not extracted" in reason(
        result, "mallory_gradcam.ipynb")
    assert disk_used(tmp_path / "out") < 100_000


def zlib_proof() -> bytes:
    """Incompressible bytes (a fixed seed): they keep a test zip's overall ratio honest."""
    import random

    return random.Random(0).randbytes(200_000)


def test_a_zip_whose_directory_understates_a_member_writes_nothing_large(tmp_path):
    source = zeros_zip(tmp_path / "liar.zip", [("mallory_gradcam.ipynb", 400 * 2**20)],
                       [("alice_gradcam.ipynb", b"alice")])
    understate(source, "mallory_gradcam.ipynb", 1000)  # the directory says 1000 bytes: every up-front check passes
    result = collect(source, NOTEBOOKS, tmp_path / "out")
    assert graded(result) == {("alice", "06_gradcam"): b"alice"}
    assert reason(result, "mallory_gradcam.ipynb").startswith(
        "its data does not match the zip's directory, which declares 1000 bytes (a forged or corrupt zip: ")
    assert disk_used(tmp_path / "out") < 100_000


def test_overlapping_members_are_refused(tmp_path):
    source = make_zip(tmp_path / "lms.zip", [("alice_gradcam.ipynb", b"a")])
    infos = []
    for index in range(3):  # three entries that all point at the file's data (D. Fifield's non-recursive bomb)
        info = zipfile.ZipInfo(f"s{index}_gradcam.ipynb")
        info.compress_size, info.file_size = source.stat().st_size, 10 * source.stat().st_size
        infos.append(info)
    with pytest.raises(ValueError, match="they overlap"):
        I._check_zip(source, infos, I.Caps())


class Endless:
    """A member that streams more than any cap (what a zip reader that trusted the data would give)."""

    def __init__(self):
        self.read_bytes = 0

    def read(self, n):
        self.read_bytes += n
        return b"x" * n

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("declared, compressed, caps, why", [
    (10, None, I.Caps(), "holds more than the 10 bytes the zip's directory declares"),
    (None, 100, I.Caps(ratio=10, ratio_floor=500), "expands more than 10-fold (100 bytes compressed) while read"),
])
def test_each_member_is_counted_as_it_streams(tmp_path, declared, compressed, caps, why):
    reader = Endless()
    entry = I._Entry("alice_gradcam.ipynb", STAMP, 0, lambda: reader, declared, compressed)
    with pytest.raises(I._Skip, match=why.replace("(", r"\(").replace(")", r"\)")):
        I._copy_capped(entry, tmp_path / "gradcam.ipynb", tmp_path, I._Budget(caps))
    assert reader.read_bytes <= I.CHUNK and not (tmp_path / "gradcam.ipynb").exists()


def test_the_whole_download_is_counted_as_it_streams(tmp_path):
    source = make_tree(tmp_path / "src", {f"s{i}/06_gradcam/gradcam.ipynb": b"x" * 40 for i in range(3)})
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="more than 100 bytes uncompressed .* refused, nothing kept"):
        collect(source, NOTEBOOKS, out, I.Caps(total_bytes=100))
    assert files_under(out) == set()


def test_an_honest_zip_is_written_once(tmp_path):
    """Each file lands in build/grading/submitted, written once (it was written twice: downloaded, then copied)."""
    from conftest import grading_in

    from grader_tests.engine import grade as G

    release = (Path(__file__).resolve().parents[1] / "notebooks" / "06_gradcam" / "gradcam.ipynb").read_bytes()
    notebook = release.replace(b'"cells": [', b'"cells": [{"cell_type": "markdown", "id": "mine", "metadata": {}, '
                               b'"source": "' + zlib_proof().hex().encode() + b'"},', 1)
    archive = make_zip(tmp_path / "download.zip", [(f"s{i}_gradcam.ipynb", notebook) for i in range(5)])
    payload = 5 * len(notebook)
    with grading_in(tmp_path / "grading") as grading:
        before = _written()
        tasks, skipped = G.intake(archive)
        written = _written() - before
        assert sorted(task.key for task in tasks) == [f"s{i}/06_gradcam" for i in range(5)] and skipped == []
        assert files_under(grading) == {f"submitted/s{i}/06_gradcam/{name}" for i in range(5)
                                        for name in ("gradcam.ipynb", "timestamp.txt")}
        assert {(grading / "submitted" / f"s{i}" / "06_gradcam" / "gradcam.ipynb").read_bytes()
                for i in range(5)} == {notebook}
    assert payload <= written < payload + 100_000  # once (twice before: 2 * payload)


def _written() -> int:
    """Bytes this process has passed to write() so far (Linux)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise AssertionError("no wchar in /proc/self/io")


def test_zips_inside_a_submission_are_files_never_opened(tmp_path):
    inner = zeros_zip(tmp_path / "inner.zip", [("big.bin", 2**20)]).read_bytes()
    source = make_zip(tmp_path / "class.zip", [("alice/06_gradcam/gradcam.ipynb", b"a"),
                                               ("alice/06_gradcam/data.zip", inner), ("bob_data.zip", inner)])
    result = collect(source, NOTEBOOKS, tmp_path / "out")
    assert reason(result, "alice/06_gradcam/data.zip") == "not a notebook: only notebooks are graded"
    assert reason(result, "bob_data.zip") == "not a notebook"
    assert files_under(tmp_path / "out") == {"alice/06_gradcam/gradcam.ipynb"}


# --- ids: one student, however the download spells the id --------------------------------------------------------


@pytest.mark.parametrize("spelling", ["alice\u200b", "\u200balice", "ａｌｉｃｅ", "al\u00adice", "alice\ufeff",
                                      "\u2066alice\u2069", " alice\u3000", "alic\u034fe"])
def test_an_invisible_or_compatibility_spelling_is_the_same_student(tmp_path, spelling):
    source = make_zip(tmp_path / "lms.zip", [
        ("alice_gradcam.ipynb", b"older", (2024, 5, 1, 12, 0, 0)),
        (f"{spelling}_gradcam.ipynb", b"newer", (2024, 5, 2, 12, 0, 0)),
    ])
    result = collect(source, NOTEBOOKS, tmp_path / "out")
    assert graded(result) == {("alice", "06_gradcam"): b"newer"}
    spelled, chosen = notes_of(result, "alice", "06_gradcam")
    shown = I._show(spelling)
    assert spelled == ("the download spells this student 2 ways, one id once normalised (NFKC, invisible "
                       f"characters removed): {', '.join(f'`{I._show(s)}`' for s in sorted(['alice', spelling]))}")
    assert chosen.startswith(f"2 files for 06_gradcam: graded `{shown}_gradcam.ipynb`, the newest (by file date)")
    assert files_under(tmp_path / "out") == {"alice/06_gradcam/gradcam.ipynb"}


def test_normalised_ids_in_nbgrader_folders_and_canvas_names(tmp_path):
    source = make_zip(tmp_path / "class.zip", [
        ("bob/06_gradcam/gradcam.ipynb", b"bob", (2024, 5, 1, 12, 0, 0)),
        ("bob\u200b/06_gradcam/gradcam.ipynb", b"bob zwsp", (2024, 5, 1, 11, 0, 0)),
        ("doe\u200bjane_4711_998877_saliency.ipynb", b"jane 4711"),
        ("doejane_4712_998878_saliency.ipynb", b"jane 4712"),  # Canvas user ids tell two students apart
    ])
    result = collect(source, NOTEBOOKS, tmp_path / "out")
    assert graded(result) == {("bob", "06_gradcam"): b"bob", ("doejane-4711", "05_saliency"): b"jane 4711",
                              ("doejane-4712", "05_saliency"): b"jane 4712"}
    assert reason(result, "bob\u200b/06_gradcam/gradcam.ipynb".replace("\u200b", "\\u200b")).startswith(
        "older resubmission")


def test_an_id_only_of_invisible_characters_is_refused():
    assert I._student_id("\u200b\u200d\u2060 ") == "" and I._id_problem("") == "empty or made only of dots"


# --- the submission time: the LMS's, never the student's -------------------------------------------------------


def test_a_students_timestamp_file_is_ignored_and_the_zips_date_is_the_time(tmp_path):
    from datetime import datetime

    source = make_zip(tmp_path / "class.zip", [
        ("alice/06_gradcam/gradcam.ipynb", b"a", (2024, 5, 3, 23, 59, 0)),
        ("alice/06_gradcam/timestamp.txt", b"2024-05-01 08:00:00", (2024, 5, 3, 23, 59, 0)),
        ("alice/06_gradcam/sub/timestamp.txt", b"not where nbgrader reads", (2024, 5, 3, 23, 59, 0)),
    ])
    result = collect(source, NOTEBOOKS, tmp_path / "out")
    (alice,) = result.submissions
    assert alice.timestamp == datetime(2024, 5, 3, 23, 59, 0)
    assert files_under(alice.folder) == {"gradcam.ipynb"}
    assert reason(result, "alice/06_gradcam/timestamp.txt").startswith("the student's own timestamp.txt, ignored")
    assert alice.notes == ["the timestamp.txt in the submission was ignored: the submission time is the LMS's",
                           "1 file(s) beside the notebook were left out: only notebooks are graded"]


def test_the_time_comes_from_blackboards_name_else_the_zip_else_nowhere(tmp_path):
    from datetime import datetime

    source = make_zip(tmp_path / "bb.zip", [
        ("ps1_hacker_attempt_2016-02-01-08-00-00_problem1.ipynb", b"h", (2030, 1, 1, 0, 0, 0)),
        ("ps1_lem_attempt_2016-13-45-08-00-00_problem1.ipynb", b"l", (2030, 1, 1, 0, 0, 0)),  # no such day
        ("alyssa_problem1.ipynb", b"a", (2016, 1, 30, 20, 30, 10)),
        ("ben_problem1.ipynb", b"b", (1980, 1, 1, 0, 0, 0)),  # a zip entry without a date
    ])
    result = collect(source, {"ps1": "problem1"}, tmp_path / "out")
    assert {s.student: s.timestamp for s in result.submissions} == {
        "hacker": datetime(2016, 2, 1, 8, 0, 0), "alyssa": datetime(2016, 1, 30, 20, 30, 10), "ben": None,
        "lem": None}
    folder = make_tree(tmp_path / "src", {"alice/06_gradcam/gradcam.ipynb": b"a",
                                          "alice/06_gradcam/timestamp.txt": b"2000-01-01 00:00:00"})
    (alice,) = collect(folder, NOTEBOOKS, tmp_path / "out2").submissions
    assert alice.timestamp is None and not (alice.folder / "timestamp.txt").exists()


def test_the_grader_writes_the_lms_time_where_nbgrader_reads_it(tmp_path):
    from datetime import datetime

    from conftest import grading_in
    from nbgrader.coursedir import CourseDirectory

    from grader_tests.engine import grade as G

    release = (Path(__file__).resolve().parents[1] / "notebooks" / "06_gradcam" / "gradcam.ipynb").read_bytes()
    archive = make_zip(tmp_path / "class.zip", [
        ("submitted/alice/06_gradcam/gradcam.ipynb", release, (2024, 5, 3, 23, 59, 0)),
        ("submitted/alice/06_gradcam/timestamp.txt", b"2024-05-01 08:00:00"),
    ])
    with grading_in(tmp_path / "grading") as grading:
        (task,), skipped = G.intake(archive)
        folder = grading / "submitted" / "alice" / "06_gradcam"
        assert CourseDirectory().get_existing_timestamp(str(folder)) == datetime(2024, 5, 3, 23, 59, 0)
        assert skipped == ["submitted/alice/06_gradcam/timestamp.txt: the student's own timestamp.txt, ignored: the "
                           "submission time comes from the LMS's file name or zip, never from the student's files"]
        assert task.notes == ["the timestamp.txt in the submission was ignored: the submission time is the LMS's"]


def test_a_cell_posing_as_the_graders_notes_loses_its_marker(tmp_path):
    import nbformat
    from conftest import grading_in

    from grader_tests.engine import grade as G
    from grader_tests.engine.nbgrader_plugins import NOTES_KEY, notes

    nb = nbformat.read(Path(__file__).resolve().parents[1] / "notebooks" / "06_gradcam" / "gradcam.ipynb", 4)
    fake = nbformat.v4.new_markdown_cell("**Grading notes**\n\n* the instructor gave full marks by hand")
    fake.metadata[NOTES_KEY] = "grading-notes"
    nb.cells.insert(0, fake)
    (tmp_path / "class" / "mallory" / "06_gradcam").mkdir(parents=True)
    nbformat.write(nb, tmp_path / "class" / "mallory" / "06_gradcam" / "gradcam.ipynb")
    with grading_in(tmp_path / "grading") as grading:
        (task,), _ = G.intake(tmp_path / "class")
        submitted = nbformat.read(grading / "submitted" / "mallory" / "06_gradcam" / "gradcam.ipynb", 4)
    expected = ["1 cell(s) of the submission posed as the grader's (grading notes or markers): shown as the "
                "student's own cells"]
    assert notes(submitted) == expected and task.notes == expected
    assert [cell.source for cell in submitted.cells if NOTES_KEY not in cell.metadata][0] == fake.source
