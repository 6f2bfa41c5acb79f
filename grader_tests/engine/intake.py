"""Intake: an instructor's download (a folder or an LMS zip) -> one folder per (student, assignment).

:func:`collect` writes ``out/<student>/<assignment>/<notebook>.ipynb`` (the released notebook's name) for every
submission it finds, and reports every file it does not use in :attr:`Intake.skipped` with the reason. A submission
from Canvas, Moodle or Blackboard keeps that LMS's own ids of its student (:class:`LmsId`), for the grade's way back.

Layouts, tried in this order for every file; the first that applies decides:

1. **Blackboard**: the file name holds ``_attempt_<YYYY-MM-DD-HH-MM-SS>``:
   ``<assignment name>_<username>_attempt_<ts>_<filename>`` (student: the username just before ``_attempt_``; the
   assignment name may hold ``_`` and spaces) and the attempt's receipt ``..._attempt_<ts>.txt`` (skipped).
2. **Moodle**: a path component holds ``_assignsubmission_``: ``<Full Name>_<id>_assignsubmission_file_/<filename>``
   (or the same as one flat name); student ``<Full_Name>_<id>``. Other plugins (``onlinetext``) hold no notebook.
3. **nbgrader**: the file lies in ``[<top>/]<student>/<assignment>/`` and that folder holds a notebook, normally
   ``<notebook>.ipynb``; the other notebooks of the folder stay with it (a misnamed one is reported by name),
   any other file is left out and reported: only notebooks are graded, and nbgrader's formgrader would serve
   such a file, an HTML page say, unsandboxed to the instructor's browser. A folder whose notebooks are all
   misnamed is still a submission without its notebook: the grader grades it as the released notebook, with a
   note.
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
student id and a known assignment, once (the grader moves the folder into place, it does not copy it). Members with
absolute or ``..`` paths, symbolic links (in a zip or a folder), files over :attr:`Caps.file_bytes` and unsafe
student ids are skipped and reported. Notebooks are copied byte for byte, never parsed here.

**Zip bombs** (:class:`Caps`): a zip is checked on its central directory before anything is written: one whose
members declare more than :attr:`Caps.total_bytes` uncompressed, or more compressed bytes than the file holds
(overlapping members), or that expands more than :attr:`Caps.ratio`-fold as a whole, is refused with the reason
(ValueError) and nothing is written; a member over :attr:`Caps.file_bytes`, or over :attr:`Caps.ratio_floor` and
more than :attr:`Caps.ratio`-fold compressed, is skipped with the reason. Declared sizes can lie, so the same caps
hold while reading: every member is counted as it streams (never more than it declared, its cap, or its ratio
allows) and the whole download against :attr:`Caps.total_bytes` (past it: refused, and what was written removed).
Zips inside the download are never opened: a ``.zip`` is an ordinary file (skipped, or copied as bytes with the
other files of an nbgrader folder).

**Student ids** are normalised before they are compared or used as folder names: Unicode NFKC (full-width and
compatibility forms become their plain letters), invisible characters removed (format characters, category Cf:
zero-width spaces and joiners, bidirectional controls, soft hyphens, byte-order marks; and the other
default-ignorable code points, :data:`IGNORABLE`), surrounding whitespace trimmed. ``alice``, ``alice\u200b`` and
``ａｌｉｃｅ`` are one student, ``alice``: their files compete as resubmissions (the newest is graded, by the rules
above) and the submission's notes list the spellings seen. Accents and case are kept (``José`` and ``Josè``, ``Ann``
and ``ann`` stay two students). Ids that are empty or only dots, start with a dot, hold a separator, a control or
glob character, or exceed 100 characters are refused. ``__MACOSX/``, ``.ipynb_checkpoints/``, ``__pycache__/`` and
``.DS_Store`` are never submissions: ignored without a report.

**Submission time** (:attr:`Submission.timestamp`) comes from the LMS, never from a file the student wrote: the
Blackboard attempt time in the file name, else the date of the notebook's entry in the zip (written by the LMS,
or by whoever zipped the download); a folder's file dates say when the files were copied, not submitted: none.
A ``timestamp.txt`` in an nbgrader folder (which nbgrader would read as the submission time) is the student's
own file: it is skipped, with a note. Times carry no zone (a zip's dates are the zipping machine's local time).
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
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import BinaryIO

MAX_FILE_BYTES = 50 * 2**20  # default of Caps.file_bytes
MAX_ZIP_BYTES = 2 * 2**30  # default of Caps.total_bytes
MAX_RATIO = 100  # default of Caps.ratio
RATIO_FLOOR = 2**20  # default of Caps.ratio_floor
TIMESTAMP = "timestamp.txt"  # where nbgrader reads a submission's time: never taken from the student
IGNORABLE = {chr(c) for c in (0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x3164, 0xFFA0, *range(0x180B, 0x1810),
                              *range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0))}
"""Default-ignorable code points (Unicode's DerivedCoreProperties) outside category Cf: fillers and variation
selectors that render as nothing. Removed from student ids with every Cf character."""
DOS_EPOCH = (1980, 1, 1, 0, 0, 0)  # a zip entry's date when it has none
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


@dataclass(frozen=True)
class Caps:
    """How large a download may be, and how far it may expand (the module's docstring says where each applies).

    The defaults: ``file_bytes`` 50 MiB, far above a notebook with its saved figures (a few MB; the grader keeps
    far less output than that); ``total_bytes`` 2 GiB a download, hundreds of students at a few MB each;
    ``ratio`` 100:1, where notebooks deflate about 4:1 (the course's released and solved ones: 3.7-3.8:1) and
    base64 figures hardly at all, while DEFLATE reaches about 1000:1 on a bomb's zeros: under the cap a bomb needs
    a zip of 20 MB for every 2 GB; ``ratio_floor`` 1 MiB, under which a file may deflate further (a short file of
    repeated lines): many such files still meet ``total_bytes`` and the zip's ratio as a whole.
    """

    file_bytes: int = field(default_factory=lambda: MAX_FILE_BYTES)
    total_bytes: int = field(default_factory=lambda: MAX_ZIP_BYTES)
    ratio: float = field(default_factory=lambda: MAX_RATIO)
    ratio_floor: int = field(default_factory=lambda: RATIO_FLOOR)


@dataclass(frozen=True)
class LmsId:
    """Who a submission belongs to in the LMS it was downloaded from, as the download's names spell it: where its grade
    goes back to (:mod:`grader_tests.engine.lms_export`).

    ``system``: ``"canvas"``, ``"moodle"`` or ``"blackboard"``; ``user_id``: Canvas's user id (``4711`` of
    ``doejane_4711_998877_gradcam.ipynb``), Moodle's participant id (``123456`` of
    ``Jane Doe_123456_assignsubmission_file_``; one id per student *and assignment*) or Blackboard's username
    (``jdoe`` of ``ps1_jdoe_attempt_<ts>_...``); ``name``: Canvas's sortable name (``doejane``), Moodle's full name
    (``Jane Doe``), or empty (Blackboard's names carry none).
    """

    system: str
    user_id: str
    name: str = ""


@dataclass
class Submission:
    """One student's submission to one assignment, ready to grade."""

    student: str  # a safe student id, normalised (see the module's docstring): one path component
    assignment: str  # e.g. "06_gradcam"
    folder: Path  # holds <notebook>.ipynb (the released name) and, in nbgrader's layout, the files that came with it
    notes: list[str] = field(default_factory=list)  # for the instructor and the student, e.g. which file was graded
    timestamp: datetime | None = None  # when the LMS says it was submitted (see the module's docstring), or None
    lms: LmsId | None = None  # the LMS's own ids of the student (None: an nbgrader folder or a generic name)


@dataclass
class Intake:
    """What :func:`collect` found."""

    submissions: list[Submission]  # sorted by (student, assignment)
    skipped: list[str]  # one line per file or folder not used: "<path inside the download>: <reason>"


@dataclass
class _Entry:
    """A file of the download: its '/'-separated path in it, date, order, how to read it and, in a zip, its
    declared sizes."""

    path: str
    date_time: tuple[int, ...]
    order: int
    open: Callable[[], BinaryIO]
    declared: int | None = None  # uncompressed bytes, as the zip's central directory says
    compressed: int | None = None  # compressed bytes, as the zip's central directory says (None: not in a zip)

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
    raw: str = ""  # the student id as the download spells it
    timestamp: datetime | None = None
    lms: LmsId | None = None


@dataclass
class _Budget:
    """The bytes written for one download so far, against its caps."""

    caps: Caps
    written: int = 0

    def take(self, size: int, path: str) -> None:
        self.written += size
        if self.written > self.caps.total_bytes:
            raise _Refused(f"it holds more than {_size(self.caps.total_bytes)} uncompressed (the cap on one "
                           f"download), found while reading {_show(path)}: refused, nothing kept")


class _Skip(Exception):
    """Why a file is not used."""


class _Refused(ValueError):
    """Why the whole download is refused, found while reading it."""


def collect(source: Path, notebooks: dict[str, str], out: Path, caps: Caps | None = None) -> Intake:
    """Every submission in ``source`` (an nbgrader folder or an LMS zip) written under ``out`` (wiped first).

    ``notebooks`` maps assignment -> notebook stem, e.g. ``{"06_gradcam": "gradcam"}``; ``caps``: the limits on
    sizes and compression (default :class:`Caps`). Raises ValueError, with the reason, if ``source`` is neither a
    folder nor a zip, overlaps ``out``, or is a zip over the caps (a zip bomb): then ``out`` holds nothing new
    (untouched if the zip's directory told, emptied if its sizes lied and reading found out).
    """
    source, out, caps = Path(source), Path(out), caps or Caps()
    src, dst = source.resolve(), out.resolve()
    if src == dst or src.is_relative_to(dst) or (source.is_dir() and dst.is_relative_to(src)):
        raise ValueError(f"{source} and {out} overlap: collect wipes {out}")
    skipped: list[str] = []
    with ExitStack() as stack:
        if source.is_dir():
            entries = _folder_entries(source, skipped, caps)
        elif source.is_file() and zipfile.is_zipfile(source):
            entries = _zip_entries(source, stack, skipped, caps)
        else:
            raise ValueError(f"{source} is neither a folder of submissions nor a zip")
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True, exist_ok=True)
        try:
            candidates = _candidates(entries, notebooks, skipped)
            submissions = _settle_all(candidates, notebooks, out.resolve(), skipped, _Budget(caps))
        except _Refused as refused:  # the caps, met while reading: nothing of this download is kept
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True, exist_ok=True)
            raise ValueError(f"{source}: {refused}") from None
    return Intake(sorted(submissions, key=lambda s: (s.student, s.assignment)), sorted(skipped))


# --- the download's files -------------------------------------------------------------------------------------


def _zip_entries(source: Path, stack: ExitStack, skipped: list[str], caps: Caps) -> list[_Entry]:
    """The files of a zip (kept open by ``stack``); unsafe paths, symbolic links and members over the caps
    reported, never extracted. Raises ValueError if the zip as a whole is over the caps."""
    try:
        archive = stack.enter_context(zipfile.ZipFile(source))
    except (zipfile.BadZipFile, OSError) as exc:
        raise ValueError(f"{source} is not a readable zip: {exc}") from exc
    _check_zip(source, archive.infolist(), caps)
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
            elif _size_ok(name, info.file_size, skipped, caps) and _ratio_ok(name, info, skipped, caps):
                entries.append(_Entry("/".join(parts), info.date_time, order, partial(archive.open, info),
                                      info.file_size, info.compress_size))
    return entries


def _check_zip(source: Path, infos: list[zipfile.ZipInfo], caps: Caps) -> None:
    """Refuse (ValueError) a zip whose central directory declares a bomb: too large in all, members that overlap,
    or a ratio over the cap as a whole. Nothing has been written when this runs."""
    size = max(source.stat().st_size, 1)
    total, packed = sum(info.file_size for info in infos), sum(info.compress_size for info in infos)
    if total > caps.total_bytes:
        raise ValueError(f"{source} holds {_size(total)} uncompressed, more than the {_size(caps.total_bytes)} "
                         "allowed: nothing extracted")
    if packed > size:
        raise ValueError(f"{source}: its members claim {_size(packed)} of compressed data in a file of "
                         f"{_size(size)}: they overlap (a zip bomb) or the zip is corrupt: nothing extracted")
    if total > caps.ratio_floor and total > caps.ratio * size:
        raise ValueError(f"{source} expands {total / size:.0f}-fold ({_size(size)} to {_size(total)} uncompressed), "
                         f"more than the {caps.ratio:g}:1 allowed: a zip bomb? nothing extracted")


def _ratio_ok(path: str, info: zipfile.ZipInfo, skipped: list[str], caps: Caps) -> bool:
    if info.file_size > caps.ratio_floor and info.file_size > caps.ratio * max(info.compress_size, 1):
        skipped.append(f"{_show(path)}: expands {info.file_size / max(info.compress_size, 1):.0f}-fold "
                       f"({_size(info.compress_size)} to {_size(info.file_size)}), more than the {caps.ratio:g}:1 "
                       f"allowed for files over {_size(caps.ratio_floor)}: a zip bomb? not extracted")
        return False
    return True


def _size(count: float) -> str:
    for unit in ("bytes", "KiB", "MiB"):
        if count < 1024:
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.2f} GiB"


def _member_name(info: zipfile.ZipInfo) -> str:
    """The member's name; UTF-8 names written without the UTF-8 flag (common) are decoded as UTF-8."""
    if info.flag_bits & 0x800:
        return info.filename
    try:
        return info.filename.encode("cp437").decode("utf-8")
    except UnicodeError:
        return info.filename


def _folder_entries(source: Path, skipped: list[str], caps: Caps) -> list[_Entry]:
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
            elif _size_ok(rel, info.st_size, skipped, caps):
                when = time.localtime(info.st_mtime)[:6]
                entries.append(_Entry(rel, when, len(entries), partial(open, path, "rb", opener=_no_follow)))
    return entries


def _no_follow(path: str, flags: int) -> int:
    return os.open(path, flags | getattr(os, "O_NOFOLLOW", 0))


def _size_ok(path: str, size: int, skipped: list[str], caps: Caps) -> bool:
    if size > caps.file_bytes:
        skipped.append(f"{_show(path)}: too big ({size} bytes, more than {caps.file_bytes})")
    return size <= caps.file_bytes


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
        candidates.append(_Candidate(_student_id(folder[-2]), folder[-1], notebook, rank, extras=files,
                                     raw=folder[-2], timestamp=_entry_time(anchor)))
    return candidates


def _marked(parts: tuple[str, ...]) -> bool:
    """Whether a Blackboard or Moodle marker decides the layout of this path."""
    return bool(BLACKBOARD_MARK.search(parts[-1])) or any(MOODLE_MARK in part for part in parts)


def _parse_flat(entry: _Entry, stems: dict[str, str]) -> _Candidate:
    """A candidate from a file's path, by the first layout that applies (see the module's docstring)."""
    name, notes, canvas, stamp, lms = entry.parts[-1], [], None, "", None
    if BLACKBOARD_MARK.search(name):
        student, filename, stamp = _blackboard(name)
        lms = LmsId("blackboard", student)
    elif any(MOODLE_MARK in part for part in entry.parts):
        student, filename, lms = _moodle(entry.parts)
    elif match := CANVAS.match(name):
        student, filename, canvas = match["name"], match["file"], (_student_id(match["name"]), match["uid"])
        lms = LmsId("canvas", match["uid"], match["name"])
        if match["late"]:
            notes.append("submitted late (Canvas LATE marker)")
    elif "_" in name:
        student, filename = name.split("_", 1)[0], name.rpartition("_")[2]
    else:
        _notebook_of(name, stems)  # "not a notebook" or "unknown notebook name" says more than "unparseable"
        raise _Skip("unparseable name: no `<student>_` before the notebook name (expected "
                    "`<student>_<notebook>.ipynb`, or an nbgrader, Canvas, Moodle or Blackboard layout)")
    stem, number = _notebook_of(filename, stems)
    when = _blackboard_time(stamp) if stamp else _entry_time(entry)
    return _Candidate(_student_id(student), stems[stem], entry, (stamp, number, entry.date_time, entry.order),
                      notes, canvas=canvas, raw=student, timestamp=when, lms=lms)


def _blackboard_time(stamp: str) -> datetime | None:
    """``2016-02-01-08-00-00`` -> its datetime; None if it names no real time (``2016-13-45-...``)."""
    try:
        return datetime.strptime(stamp, "%Y-%m-%d-%H-%M-%S")
    except ValueError:
        return None


def _entry_time(entry: _Entry) -> datetime | None:
    """A zip entry's date (the LMS's, or the zipper's); None for a folder's files or an entry without a date."""
    if entry.compressed is None or tuple(entry.date_time) <= DOS_EPOCH:
        return None
    try:
        return datetime(*entry.date_time)
    except ValueError:  # a DOS date can say February 31st
        return None


def _blackboard(name: str) -> tuple[str, str, str]:
    match = BLACKBOARD.match(name)
    if not match:
        raise _Skip("unparseable Blackboard name (expected `<assignment>_<username>_attempt_<ts>_<filename>`)")
    if match["file"] is None:
        raise _Skip("Blackboard attempt receipt, not a notebook")
    return match["user"], match["file"], match["ts"]


def _moodle(parts: tuple[str, ...]) -> tuple[str, str, LmsId]:
    index = next(i for i, part in enumerate(parts) if MOODLE_MARK in part)
    match = MOODLE.match(parts[index])
    if not match:
        raise _Skip("unparseable Moodle name (expected `<Full Name>_<id>_assignsubmission_file_/<filename>`)")
    if match["plugin"] != "file":
        raise _Skip(f"Moodle `{match['plugin']}` submission: holds no notebook")
    filename = match["file"] if index == len(parts) - 1 else parts[-1]
    return re.sub(r"\s+", "_", f"{match['name']}_{match['id']}"), filename, LmsId("moodle", match["id"], match["name"])


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
    """``raw`` as a student id: NFKC, invisible characters removed, surrounding whitespace trimmed (see the module's
    docstring); ``"ａｌｉｃｅ\u200b "`` -> ``"alice"``."""
    visible = "".join(c for c in raw if unicodedata.category(c) != "Cf" and c not in IGNORABLE)
    normal = unicodedata.normalize("NFKC", visible)  # may compose what an invisible character held apart
    return "".join(c for c in normal if unicodedata.category(c) != "Cf" and c not in IGNORABLE).strip()


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
                skipped: list[str], budget: _Budget) -> list[Submission]:
    _name_canvas_namesakes(candidates)
    groups: dict[tuple[str, str], list[_Candidate]] = defaultdict(list)
    for candidate in candidates:
        problem = _id_problem(candidate.student)
        if problem:
            for entry in [e for e in [candidate.entry, *candidate.extras.values()] if e is not None]:
                skipped.append(f"{_show(entry.path)}: unsafe student id `{_show(candidate.student)}`: {problem}")
        else:
            groups[candidate.student, candidate.assignment].append(candidate)
    settled = (_settle(group, notebooks[group[0].assignment], out, skipped, budget) for group in groups.values())
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


def _settle(group: list[_Candidate], stem: str, out: Path, skipped: list[str], budget: _Budget) -> Submission | None:
    """Write the newest candidate that can be read, with a note if there were several; report the others."""
    ranked = sorted(group, key=lambda c: c.rank, reverse=True)
    student, assignment = group[0].student, group[0].assignment
    folder, label = out / student / assignment, _labels(group)
    for index, chosen in enumerate(ranked):
        shutil.rmtree(folder, ignore_errors=True)
        try:
            if chosen.entry is not None:
                _copy_capped(chosen.entry, folder / f"{stem}.ipynb", out, budget)
        except _Skip as why:
            skipped.append(f"{_show(chosen.entry.path)}: {why}")
            continue
        folder.mkdir(parents=True, exist_ok=True)
        notes = list(chosen.notes)
        left_out = 0
        for rel, entry in chosen.extras.items():
            if rel == TIMESTAMP:
                skipped.append(f"{_show(entry.path)}: the student's own {TIMESTAMP}, ignored: the submission time "
                               "comes from the LMS's file name or zip, never from the student's files")
                notes.append(f"the {TIMESTAMP} in the submission was ignored: the submission time is the LMS's")
                continue
            if not rel.endswith(".ipynb"):  # formgrader would serve it, unsandboxed, to the instructor's browser
                skipped.append(f"{_show(entry.path)}: not a notebook: only notebooks are graded")
                left_out += 1
                continue
            try:
                _copy_capped(entry, folder / rel, out, budget)
            except _Skip as why:
                skipped.append(f"{_show(entry.path)}: {why}")
        if left_out:
            notes.append(f"{left_out} file(s) beside the notebook were left out: only notebooks are graded")
        for loser in ranked[index + 1:]:
            for entry in [e for e in [loser.entry, *loser.extras.values()] if e is not None]:
                skipped.append(f"{_show(entry.path)}: older resubmission: `{label[id(chosen)]}` is graded for "
                               f"{student}/{assignment}")
        spellings = sorted({c.raw for c in group if c.raw})
        if len(spellings) > 1:
            notes.append(f"the download spells this student {len(spellings)} ways, one id once normalised (NFKC, "
                         f"invisible characters removed): {', '.join(f'`{_show(raw)}`' for raw in spellings)}")
        if len(group) > 1:
            why = _criterion(chosen, ranked[index + 1]) if index + 1 < len(ranked) else "the others are unreadable"
            others = ", ".join(f"`{label[id(c)]}`" for c in ranked if c is not chosen)
            notes.append(f"{len(group)} files for {assignment}: graded `{label[id(chosen)]}`, the newest (by {why}); "
                         f"not graded: {others}")
        return Submission(student, assignment, folder, notes, chosen.timestamp, chosen.lms)
    return None


def _labels(group: list[_Candidate]) -> dict[int, str]:
    """Each candidate's file name, or its path in the download where names repeat."""
    entries = [c.entry or min(c.extras.values(), key=lambda e: e.order) for c in group]
    names = [_show(entry.parts[-1]) for entry in entries]
    unique = len(set(names)) == len(names)
    return {id(c): name if unique else _show(e.path) for c, e, name in zip(group, entries, names, strict=True)}


def _criterion(newer: _Candidate, older: _Candidate) -> str:
    return next((k for k, a, b in zip(RANK_CRITERIA, newer.rank, older.rank, strict=True) if a != b), RANK_CRITERIA[-1])


def _copy_capped(entry: _Entry, target: Path, out: Path, budget: _Budget | None = None) -> None:
    """Copy ``entry`` to ``target`` (inside ``out``), counting the bytes as they stream, whatever the zip declared:
    past the file cap, the entry's declared size or its ratio the copy stops and is removed (:class:`_Skip`); past
    the download's total (``budget``) the whole download is refused (ValueError)."""
    if not target.resolve().is_relative_to(out):
        raise _Skip("unsafe path, not extracted")
    budget = budget or _Budget(Caps())
    caps, copied, why = budget.caps, 0, None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with entry.open() as source, open(target, "xb") as sink:
            while chunk := source.read(min(CHUNK, caps.file_bytes + 1 - copied)):
                copied += len(chunk)
                why = _over(entry, copied, caps)
                if why:
                    break
                budget.take(len(chunk), entry.path)
                sink.write(chunk)
    except _Refused:
        target.unlink(missing_ok=True)
        raise
    except zipfile.BadZipFile as exc:
        target.unlink(missing_ok=True)
        raise _Skip(f"its data does not match the zip's directory, which declares {entry.declared} bytes "
                    f"(a forged or corrupt zip: {exc}): not extracted") from exc
    except (OSError, EOFError, RuntimeError, NotImplementedError, ValueError, zlib.error) as exc:
        target.unlink(missing_ok=True)
        raise _Skip(f"unreadable or unwritable: {exc}") from exc
    if why:
        target.unlink()
        raise _Skip(why)


def _over(entry: _Entry, copied: int, caps: Caps) -> str | None:
    """Why reading must stop after ``copied`` bytes of ``entry``, or None."""
    if copied > caps.file_bytes:
        return f"too big (more than {caps.file_bytes} bytes)"
    if entry.declared is not None and copied > entry.declared:
        return f"holds more than the {entry.declared} bytes the zip's directory declares (a forged zip): not extracted"
    if entry.compressed is not None and copied > caps.ratio_floor and copied > caps.ratio * max(entry.compressed, 1):
        return (f"expands more than {caps.ratio:g}-fold ({_size(entry.compressed)} compressed) while read, past the "
                f"{caps.ratio:g}:1 allowed for files over {_size(caps.ratio_floor)}: a zip bomb? not extracted")
    return None
