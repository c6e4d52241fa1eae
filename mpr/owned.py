"""Files and folders mpr can prove it wrote — the only ones it ever changes.

The rule: before mpr touches a byte of an existing path, it proves the path is its own.

* An output **folder** (``--out`` of rollouts, training stages, iterations, bench runs; ``--tree``)
  holds a marker file, ``mpr-output.json``, naming what kind of output it is. A missing or empty
  folder is created and marked; a non-empty one must hold the marker of the same kind — or, for
  folders written before markers existed, a file only mpr writes (``legacy``: e.g. a checkpoint's
  ``mpr-checkpoint.json``, a records file with an mpr header). Anything else is refused.
* An output **file** (episode records, summaries) must be absent, or hold mpr content of the same
  settings (the records' header line, a summary's keys); see :func:`check_own_file`.

Every refusal is one :class:`mpr.errors.MprError` line naming the path, what was found, and what
would be accepted. Nothing is written before the check.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mpr.errors import MprError

MARKER = "mpr-output.json"


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temp file and rename, so a kill never leaves a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp's 0600 would make results unreadable to others
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path) -> Any:
    """The JSON in ``path``, or None when it is not readable JSON (never raises for bad content)."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def marker_kind(folder: Path) -> str | None:
    """The output kind an mpr marker in ``folder`` names, or None."""
    data = read_json(folder / MARKER)
    return data.get("kind") if isinstance(data, dict) and data.get("mpr") == "output" else None


def check_dir(folder: str | Path, kind: str, flag: str = "--out",
              legacy: Sequence[Callable[[Path], bool]] = ()) -> bool:
    """Whether ``folder`` is already an mpr output folder of ``kind`` (True) or absent/empty (False);
    MprError when mpr may not write there. Reads only. ``legacy``: tests that recognise a folder mpr
    wrote before markers existed (each gets the folder; True means proven)."""
    path = Path(folder)
    if path.exists() and not path.is_dir():
        raise MprError(f"{flag} {path} is a file, not a folder; give a new folder or an mpr {kind} folder")
    if not path.is_dir() or not any(path.iterdir()):
        return False
    found = marker_kind(path)
    if found is not None and found != kind:
        raise MprError(f"{flag} {path} holds mpr {found} output, not {kind}; choose another {flag}")
    if found is None and not any(proves(path) for proves in legacy):
        raise MprError(f"{flag} {path} is not empty and was not written by mpr (no {MARKER}); "
                       "choose a new or empty folder")
    return True


def claim_dir(folder: str | Path, kind: str, flag: str = "--out",
              legacy: Sequence[Callable[[Path], bool]] = ()) -> Path:
    """Make ``folder`` an mpr output folder of ``kind`` (created and marked), or prove it already is
    one (see :func:`check_dir`); refuse otherwise. Returns the folder as a Path."""
    path = Path(folder)
    check_dir(path, kind, flag, legacy)
    if marker_kind(path) != kind:
        path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path / MARKER, json.dumps({"mpr": "output", "kind": kind}) + "\n")
    return path


def has_mpr_header(name: str) -> Callable[[Path], bool]:
    """A legacy test: ``folder/name`` is a records file whose first line is an mpr header."""

    def proves(folder: Path) -> bool:
        return first_line_header(folder / name) is not None

    return proves


def has_json(name: str, keys: Sequence[str]) -> Callable[[Path], bool]:
    """A legacy test: ``folder/name`` is a JSON object with all of ``keys`` (a file mpr wrote)."""

    def proves(folder: Path) -> bool:
        data = read_json(folder / name)
        return isinstance(data, dict) and set(keys) <= set(data)

    return proves


def has_file(name: str) -> Callable[[Path], bool]:
    """A legacy test: ``folder/name`` exists (for names only mpr writes, e.g. its training state)."""
    return lambda folder: (folder / name).is_file()


def first_line_header(path: Path) -> dict[str, Any] | None:
    """The header of an mpr records file (its first line: JSON with ``"type": "header"``), or None."""
    try:
        with open(path, "rb") as f:
            return header_of(f.readline())
    except OSError:
        return None


def header_of(line: bytes) -> dict[str, Any] | None:
    """The mpr header a records line holds (JSON with ``"type": "header"``), or None."""
    try:
        data = json.loads(line)
    except ValueError:  # UnicodeDecodeError is one
        return None
    return data if isinstance(data, dict) and data.get("type") == "header" else None


def check_writable_file(path: Path, flag: str, what: str) -> None:
    """Refuse a path mpr cannot write a file at: a folder, or under a file."""
    if path.is_dir():
        raise MprError(f"{flag} {path} is a folder; give the path of {what}")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise MprError(f"{flag} {path}: {parent} is a file, not a folder")
            break


def check_own_file(path: Path, flag: str, is_mine: Callable[[Any], bool], what: str) -> None:
    """Refuse an existing ``path`` unless its JSON content passes ``is_mine`` (mpr wrote it)."""
    check_writable_file(path, flag, what)
    if path.exists() and not is_mine(read_json(path)):
        raise MprError(f"{flag}: {path} exists and is not {what} written by mpr; choose another path "
                       "(mpr never overwrites files it did not write)")
