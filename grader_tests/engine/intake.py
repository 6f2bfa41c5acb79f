"""Intake: an instructor's download (a folder or an LMS zip) -> one folder per (student, assignment).

:func:`collect` writes ``out/<student>/<assignment>/<notebook>.ipynb`` (the released notebook's name) for every
submission it finds, and reports every file it does not use in :attr:`Intake.skipped` with the reason.

Layouts, tried in this order for every file; the first that applies decides:

1. **Blackboard**: the file name holds ``_attempt_<YYYY-MM-DD-HH-MM-SS>``:
   ``<assignment name>_<username>_attempt_<ts>_<filename>`` (student: the username just before ``_attempt_``; the
   assignment name may hold ``_`` and spaces) and the attempt's receipt ``..._attempt_<ts>.txt`` (skipped).
2. **Moodle**: a path component holds ``_assignsubmission_``: ``<Full Name>_<id>_assignsubmission_file_/<filename>``
   (or the same as one flat name); student ``<Full_Name>_<id>``. Other plugins (``onlinetext``) hold no notebook.
3. **nbgrader**: the file lies in ``[<top>/]<student>/<assignment>/`` and that folder holds a notebook, normally
   ``<notebook>.ipynb``; the other files of the folder stay with it. A folder whose notebooks are all misnamed is
   still a submission without its notebook: the grader grades it as the released notebook, with a note.
4. **Canvas**: ``<sortablename>[_LATE]_<userid>_<attachmentid>_<filename>``; student: the sortable name, or
   ``<name>-<userid>`` when user ids share a name.
5. **generic**: ``<student>_[<anything>_]<notebook>.ipynb``; the notebook is the last ``_``-separated part.

The two markers are unambiguous, so they come first. The nbgrader folder is named after a known assignment and
must hold its notebook; it comes before the file-name forms so that any file in it stays with its notebook. Canvas's
two digit groups come before the generic form, which would also match them (with the same student).

A ``<filename>`` must be ``<notebook>.ipynb`` exactly (case-sensitive), or a resubmission of it:
``<notebook> (2).ipynb`` or ``<notebook>-2.ipynb`` (``_2`` and ``(copy)`` are not). Of several files for one student
and assignment the newest is graded: by Blackboard attempt time, else resubmission number (none: 0), else file date,
else order in the download.

Trust nothing: zip members are never extracted by name: each file is written to a path built from a validated
student id and a known assignment. Members with absolute or ``..`` paths, symbolic links (in a zip or a folder),
files over :data:`MAX_FILE_BYTES` and unsafe student ids are skipped and reported; a zip over :data:`MAX_ZIP_BYTES`
uncompressed is refused. Notebooks are copied byte for byte, never parsed here. Student ids are NFC-normalised and
otherwise kept (``José`` and ``Josè`` stay two students); ids that are empty or only dots, start with a dot, hold a
separator, a control or glob character, or exceed 100 characters are refused. ``__MACOSX/``,
``.ipynb_checkpoints/``, ``__pycache__/`` and ``.DS_Store`` are never submissions: ignored without a report.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import time
import unicodedata
import zipfile
import zlib
from collections import defaultdict
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import BinaryIO

MAX_FILE_BYTES = 50 * 2**20  # the largest file taken: its declared size is checked, and no more than this is read
MAX_ZIP_BYTES = 2 * 2**30  # the largest total uncompressed size of a zip; a larger one is refused
MAX_ID_CHARS, MAX_ID_BYTES = 100, 200
JUNK_FOLDERS = {"__MACOSX", ".ipynb_checkpoints", "__pycache__"}
JUNK_FILES = {".DS_Store"}
CHUNK = 2**20

BLACKBOARD = re.compile(r"^(?P<assignment>.+)_(?P<user>[^_]+)_attempt_(?P<ts>\d{4}(?:-\d\d){5})"
                        r"(?:_(?P<file>.+)|\.txt)$")
BLACKBOARD_MARK = re.compile(r"_attempt_\d{4}-")
MOODLE = re.compile(r"^(?P<name>.+)_(?P<id>\d+)_assignsubmission_(?P<plugin>[A-Za-z]+)_(?P<file>.*)$")
MOODLE_MARK = "_assignsubmission_"
CANVAS = re.compile(r"^(?P<name>[^_]+)(?P<late>_LATE)?_(?P<uid>\d+)_(?P<aid>\d+)_(?P<file>.+)$")
RESUBMISSION = re.compile(r"^(?P<stem>.+?)(?: \((?P<paren>\d+)\)|-(?P<dash>\d+))$")
BIDI_CONTROLS = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
RANK_CRITERIA = ("Blackboard attempt time", "resubmission number", "file date", "order in the download")


@dataclass
class Submission:
    """One student's submission to one assignment, ready to grade."""

    student: str  # a safe student id: one path component
    assignment: str  # e.g. "06_gradcam"
    folder: Path  # holds <notebook>.ipynb (the released name) and, in nbgrader's layout, the files that came with it
    notes: list[str] = field(default_factory=list)  # for the instructor and the student, e.g. which file was graded


@dataclass
class Intake:
    """What :func:`collect` found."""

    submissions: list[Submission]  # sorted by (student, assignment)
    skipped: list[str]  # one line per file or folder not used: "<path inside the download>: <reason>"


@dataclass
class _Entry:
    """A file of the download: its '/'-separated path in it, declared size, date and how to read it."""

    path: str
    date_time: tuple[int, ...]
    order: int
    open: Callable[[], BinaryIO]

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(self.path.split("/"))


@dataclass
class _Candidate:
    """One file that may be a student's notebook for one assignment (and, for nbgrader, its folder's files)."""

    student: str
    assignment: str
    entry: _Entry | None  # None: an nbgrader folder without the released notebook's name
    rank: tuple
    notes: list[str] = field(default_factory=list)
    extras: dict[str, _Entry] = field(default_factory=dict)
    canvas: tuple[str, str] | None = None


class _Skip(Exception):
    """Why a file is not used."""


def collect(source: Path, notebooks: dict[str, str], out: Path) -> Intake:
    """Every submission in ``source`` (an nbgrader folder or an LMS zip) written under ``out`` (wiped first).

    ``notebooks`` maps assignment -> notebook stem, e.g. ``{"06_gradcam": "gradcam"}``. Raises ValueError if
    ``source`` is neither a folder nor a zip, overlaps ``out``, or is a zip over :data:`MAX_ZIP_BYTES` uncompressed.
    """
    source, out = Path(source), Path(out)
    src, dst = source.resolve(), out.resolve()
    if src == dst or src.is_relative_to(dst) or (source.is_dir() and dst.is_relative_to(src)):
        raise ValueError(f"{source} and {out} overlap: collect wipes {out}")
    skipped: list[str] = []
    with ExitStack() as stack:
        if source.is_dir():
            entries = _folder_entries(source, skipped)
        elif source.is_file() and zipfile.is_zipfile(source):
            entries = _zip_entries(source, stack, skipped)
        else:
            raise ValueError(f"{source} is neither a folder of submissions nor a zip")
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True, exist_ok=True)
        candidates = _candidates(entries, notebooks, skipped)
        submissions = _settle_all(candidates, notebooks, out.resolve(), skipped)
    return Intake(sorted(submissions, key=lambda s: (s.student, s.assignment)), sorted(skipped))


# --- the download's files -------------------------------------------------------------------------------------


def _zip_entries(source: Path, stack: ExitStack, skipped: list[str]) -> list[_Entry]:
    """The files of a zip (kept open by ``stack``); unsafe paths and symbolic links reported, never extracted."""
    try:
        archive = stack.enter_context(zipfile.ZipFile(source))
    except (zipfile.BadZipFile, OSError) as exc:
        raise ValueError(f"{source} is not a readable zip: {exc}") from exc
    if (total := sum(info.file_size for info in archive.infolist())) > MAX_ZIP_BYTES:
        raise ValueError(f"{source} holds {total / 2**30:.2f} GiB uncompressed, more than the "
                         f"{MAX_ZIP_BYTES / 2**30:g} GiB allowed: nothing extracted")
    entries = []
    for order, info in enumerate(archive.infolist()):
        raw = _member_name(info)
        name = raw.replace("\\", "/")  # zips made on Windows may separate folders with backslashes
        if name.endswith("/"):
            continue
        parts = tuple(p for p in name.split("/") if p not in ("", "."))
        if name.startswith("/") or re.match(r"[A-Za-z]:", name) or ".." in parts or not parts:
            skipped.append(f"{_show(raw)}: unsafe path (absolute or with `..`), not extracted")
        elif parts[-1] not in JUNK_FILES and not JUNK_FOLDERS.intersection(parts):
            if stat.S_ISLNK(info.external_attr >> 16):
                skipped.append(f"{_show(name)}: a symbolic link, not extracted")
            elif _size_ok(name, info.file_size, skipped):
                entries.append(_Entry("/".join(parts), info.date_time, order, partial(archive.open, info)))
    return entries


def _member_name(info: zipfile.ZipInfo) -> str:
    """The member's name; UTF-8 names written without the UTF-8 flag (common) are decoded as UTF-8."""
    if info.flag_bits & 0x800:
        return info.filename
    try:
        return info.filename.encode("cp437").decode("utf-8")
    except UnicodeError:
        return info.filename


def _folder_entries(source: Path, skipped: list[str]) -> list[_Entry]:
    """The files of a folder, symbolic links not followed (reported)."""
    entries: list[_Entry] = []
    for root, folders, files in os.walk(source):
        here = Path(root)
        for name in sorted(folders):
            if name in JUNK_FOLDERS or (here / name).is_symlink():
                folders.remove(name)
                if name not in JUNK_FOLDERS:
                    skipped.append(f"{_show((here / name).relative_to(source).as_posix())}: a symbolic link, "
                                   "not followed")
        folders.sort()
        for name in sorted(set(files) - JUNK_FILES):
            path = here / name
            rel, info = path.relative_to(source).as_posix(), path.lstat()
            if stat.S_ISLNK(info.st_mode):
                skipped.append(f"{_show(rel)}: a symbolic link, not followed")
            elif not stat.S_ISREG(info.st_mode):
                skipped.append(f"{_show(rel)}: not a regular file")
            elif _size_ok(rel, info.st_size, skipped):
                when = time.localtime(info.st_mtime)[:6]
                entries.append(_Entry(rel, when, len(entries), partial(open, path, "rb", opener=_no_follow)))
    return entries


def _no_follow(path: str, flags: int) -> int:
    return os.open(path, flags | getattr(os, "O_NOFOLLOW", 0))


def _size_ok(path: str, size: int, skipped: list[str]) -> bool:
    if size > MAX_FILE_BYTES:
        skipped.append(f"{_show(path)}: too big ({size} bytes, more than {MAX_FILE_BYTES})")
    return size <= MAX_FILE_BYTES


def _show(text: str) -> str:
    """``text`` on one printable line: control characters escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


# --- layouts --------------------------------------------------------------------------------------------------


def _candidates(entries: list[_Entry], notebooks: dict[str, str], skipped: list[str]) -> list[_Candidate]:
    """One candidate per notebook file found (an nbgrader folder is one, with its other files)."""
    stems = {stem: assignment for assignment, stem in notebooks.items()}
    unmarked = [entry for entry in entries if not _marked(entry.parts)]
    folders = {e.parts[:-1] for e in unmarked if len(e.parts) in (3, 4) and e.parts[-2] in notebooks
               and e.parts[-1].endswith(".ipynb")}
    files_of: dict[tuple[str, ...], dict[str, _Entry]] = defaultdict(dict)
    candidates = []
    for entry in entries:
        folder = next((entry.parts[:n] for n in (2, 3) if entry.parts[:n] in folders), None)
        if folder and not _marked(entry.parts):
            rel = "/".join(entry.parts[len(folder):])
            if rel in files_of[folder]:
                skipped.append(f"{_show(files_of[folder][rel].path)}: the zip holds this name twice; the later is used")
            files_of[folder][rel] = entry
            continue
        try:
            candidates.append(_parse_flat(entry, stems))
        except _Skip as why:
            skipped.append(f"{_show(entry.path)}: {why}")
    for folder, files in files_of.items():
        notebook = files.pop(f"{notebooks[folder[-1]]}.ipynb", None)  # None: misnamed (the grader says so)
        anchor = notebook or min(files.values(), key=lambda e: e.order)
        rank = ("", 0, anchor.date_time, anchor.order)
        candidates.append(_Candidate(_student_id(folder[-2]), folder[-1], notebook, rank, extras=files))
    return candidates


def _marked(parts: tuple[str, ...]) -> bool:
    """Whether a Blackboard or Moodle marker decides the layout of this path."""
    return bool(BLACKBOARD_MARK.search(parts[-1])) or any(MOODLE_MARK in part for part in parts)


def _parse_flat(entry: _Entry, stems: dict[str, str]) -> _Candidate:
    """A candidate from a file's path, by the first layout that applies (see the module's docstring)."""
    name, notes, canvas, stamp = entry.parts[-1], [], None, ""
    if BLACKBOARD_MARK.search(name):
        student, filename, stamp = _blackboard(name)
    elif any(MOODLE_MARK in part for part in entry.parts):
        student, filename = _moodle(entry.parts)
    elif match := CANVAS.match(name):
        student, filename, canvas = match["name"], match["file"], (match["name"], match["uid"])
        if match["late"]:
            notes.append("submitted late (Canvas LATE marker)")
    elif "_" in name:
        student, filename = name.split("_", 1)[0], name.rpartition("_")[2]
    else:
        _notebook_of(name, stems)  # "not a notebook" or "unknown notebook name" says more than "unparseable"
        raise _Skip("unparseable name: no `<student>_` before the notebook name (expected "
                    "`<student>_<notebook>.ipynb`, or an nbgrader, Canvas, Moodle or Blackboard layout)")
    stem, number = _notebook_of(filename, stems)
    return _Candidate(_student_id(student), stems[stem], entry, (stamp, number, entry.date_time, entry.order),
                      notes, canvas=canvas)


def _blackboard(name: str) -> tuple[str, str, str]:
    match = BLACKBOARD.match(name)
    if not match:
        raise _Skip("unparseable Blackboard name (expected `<assignment>_<username>_attempt_<ts>_<filename>`)")
    if match["file"] is None:
        raise _Skip("Blackboard attempt receipt, not a notebook")
    return match["user"], match["file"], match["ts"]


def _moodle(parts: tuple[str, ...]) -> tuple[str, str]:
    index = next(i for i, part in enumerate(parts) if MOODLE_MARK in part)
    match = MOODLE.match(parts[index])
    if not match:
        raise _Skip("unparseable Moodle name (expected `<Full Name>_<id>_assignsubmission_file_/<filename>`)")
    if match["plugin"] != "file":
        raise _Skip(f"Moodle `{match['plugin']}` submission: holds no notebook")
    filename = match["file"] if index == len(parts) - 1 else parts[-1]
    return re.sub(r"\s+", "_", f"{match['name']}_{match['id']}"), filename


def _notebook_of(filename: str, stems: dict[str, str]) -> tuple[str, int]:
    """``gradcam (2).ipynb`` -> ``("gradcam", 2)``; the names are case-sensitive."""
    stem, dot, extension = filename.rpartition(".")
    if not dot or extension != "ipynb":
        if dot and extension.lower() == "ipynb":
            raise _Skip(f"unknown notebook name `{filename}`: the extension must be `.ipynb` (case-sensitive)")
        raise _Skip("not a notebook")
    if stem in stems:
        return stem, 0
    match = RESUBMISSION.match(stem)
    if match and match["stem"] in stems:
        return match["stem"], int(match["paren"] or match["dash"])
    known = ", ".join(f"`{s}.ipynb`" for s in sorted(stems))
    raise _Skip(f"unknown notebook name `{filename}` (expected one of {known}; names are case-sensitive)")


def _student_id(raw: str) -> str:
    return unicodedata.normalize("NFC", raw)


def _id_problem(student: str) -> str | None:
    """Why ``student`` is not a safe path component, or None."""
    if not student.strip("."):
        return "empty or made only of dots"
    if student.startswith("."):
        return "starts with a dot"
    if "/" in student or "\\" in student:
        return "contains a path separator"
    if any(unicodedata.category(c) in ("Cc", "Cs") or c in BIDI_CONTROLS for c in student):
        return "contains a control character"
    if any(c in "*?[]" for c in student):
        return "contains a glob character (nbgrader reads student ids as patterns)"
    if len(student) > MAX_ID_CHARS or len(student.encode()) > MAX_ID_BYTES:
        return f"longer than {MAX_ID_CHARS} characters ({MAX_ID_BYTES} bytes)"
    return None


# --- settling: one submission per (student, assignment) -------------------------------------------------------


def _settle_all(candidates: list[_Candidate], notebooks: dict[str, str], out: Path,
                skipped: list[str]) -> list[Submission]:
    _name_canvas_namesakes(candidates)
    groups: dict[tuple[str, str], list[_Candidate]] = defaultdict(list)
    for candidate in candidates:
        problem = _id_problem(candidate.student)
        if problem:
            for entry in [e for e in [candidate.entry, *candidate.extras.values()] if e is not None]:
                skipped.append(f"{_show(entry.path)}: unsafe student id `{_show(candidate.student)}`: {problem}")
        else:
            groups[candidate.student, candidate.assignment].append(candidate)
    settled = (_settle(group, notebooks[group[0].assignment], out, skipped) for group in groups.values())
    return [submission for submission in settled if submission]


def _name_canvas_namesakes(candidates: list[_Candidate]) -> None:
    """Canvas user ids that share a sortable name become ``<name>-<userid>``, with a note."""
    user_ids = defaultdict(set)
    for candidate in candidates:
        if candidate.canvas:
            user_ids[candidate.canvas[0]].add(candidate.canvas[1])
    for candidate in candidates:
        if candidate.canvas and len(ids := user_ids[candidate.canvas[0]]) > 1:
            name, uid = candidate.canvas
            candidate.student = _student_id(f"{name}-{uid}")
            candidate.notes.append(f"Canvas sortable name `{name}` is shared by user ids {', '.join(sorted(ids))}: "
                                   f"this student is `{candidate.student}`")


def _settle(group: list[_Candidate], stem: str, out: Path, skipped: list[str]) -> Submission | None:
    """Write the newest candidate that can be read, with a note if there were several; report the others."""
    ranked = sorted(group, key=lambda c: c.rank, reverse=True)
    student, assignment = group[0].student, group[0].assignment
    folder, label = out / student / assignment, _labels(group)
    for index, chosen in enumerate(ranked):
        shutil.rmtree(folder, ignore_errors=True)
        try:
            if chosen.entry is not None:
                _copy_capped(chosen.entry, folder / f"{stem}.ipynb", out)
        except _Skip as why:
            skipped.append(f"{_show(chosen.entry.path)}: {why}")
            continue
        folder.mkdir(parents=True, exist_ok=True)
        for rel, entry in chosen.extras.items():
            try:
                _copy_capped(entry, folder / rel, out)
            except _Skip as why:
                skipped.append(f"{_show(entry.path)}: {why}")
        for loser in ranked[index + 1:]:
            for entry in [e for e in [loser.entry, *loser.extras.values()] if e is not None]:
                skipped.append(f"{_show(entry.path)}: older resubmission: `{label[id(chosen)]}` is graded for "
                               f"{student}/{assignment}")
        notes = list(chosen.notes)
        if len(group) > 1:
            why = _criterion(chosen, ranked[index + 1]) if index + 1 < len(ranked) else "the others are unreadable"
            others = ", ".join(f"`{label[id(c)]}`" for c in ranked if c is not chosen)
            notes.append(f"{len(group)} files for {assignment}: graded `{label[id(chosen)]}`, the newest (by {why}); "
                         f"not graded: {others}")
        return Submission(student, assignment, folder, notes)
    return None


def _labels(group: list[_Candidate]) -> dict[int, str]:
    """Each candidate's file name, or its path in the download where names repeat."""
    entries = [c.entry or min(c.extras.values(), key=lambda e: e.order) for c in group]
    names = [_show(entry.parts[-1]) for entry in entries]
    unique = len(set(names)) == len(names)
    return {id(c): name if unique else _show(e.path) for c, e, name in zip(group, entries, names, strict=True)}


def _criterion(newer: _Candidate, older: _Candidate) -> str:
    return next((k for k, a, b in zip(RANK_CRITERIA, newer.rank, older.rank, strict=True) if a != b), RANK_CRITERIA[-1])


def _copy_capped(entry: _Entry, target: Path, out: Path) -> None:
    """Copy ``entry`` to ``target`` (inside ``out``), reading at most :data:`MAX_FILE_BYTES` + 1 bytes."""
    if not target.resolve().is_relative_to(out):
        raise _Skip("unsafe path, not extracted")
    copied = 0
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with entry.open() as source, open(target, "xb") as sink:
            while chunk := source.read(min(CHUNK, MAX_FILE_BYTES + 1 - copied)):
                copied += len(chunk)
                if copied > MAX_FILE_BYTES:
                    break
                sink.write(chunk)
    except (OSError, EOFError, RuntimeError, NotImplementedError, zipfile.BadZipFile, zlib.error) as exc:
        target.unlink(missing_ok=True)
        raise _Skip(f"unreadable or unwritable: {exc}") from exc
    if copied > MAX_FILE_BYTES:
        target.unlink()
        raise _Skip(f"too big (more than {MAX_FILE_BYTES} bytes)")
