"""ALFWorld game data: where it lives, how it is installed and verified, how tasks are named.

Layout (ALFWorld's own convention)::

    $ALFWORLD_DATA/json_2.1.1/<split>/<task_type>-<Object>-<Movable|None>-<Parent>-<scene>/<trial>/game.tw-pddl

A task id is the path below ``json_2.1.1`` without the file name, e.g.
``valid_unseen/pick_and_place_simple-Pencil-None-Shelf-308/trial_T20190908_121952_610012``.
It is stable across machines; ``resolve_task`` also accepts a game file or trial directory path.

The archive's games lack ``traj_data.json``, which ALFWorld's handcoded expert
reads at reset. ``prepare`` writes it, derived from the task folder name.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mpr.errors import DataMissingError, GameFileError, MprError, TaskNotFoundError
from mpr.owned import atomic_write_text

GAMES_DIRNAME = "json_2.1.1"
GAME_FILENAME = "game.tw-pddl"
TRAJ_DATA_FILENAME = "traj_data.json"
EXPECTED_COUNTS = {"train": 3553, "valid_train": 200, "valid_seen": 140, "valid_unseen": 134}
SPLITS = tuple(EXPECTED_COUNTS)
TASK_TYPES = (
    "pick_and_place_simple",
    "look_at_obj_in_light",
    "pick_clean_then_place_in_recep",
    "pick_heat_then_place_in_recep",
    "pick_cool_then_place_in_recep",
    "pick_two_obj_and_place",
)
PREPARE_HINT = "run `mpr data prepare --from ARCHIVE_OR_DIR` (or set ALFWORLD_DATA to a prepared data dir)"


def default_data_dir() -> Path:
    """``$ALFWORLD_DATA`` if set, else ALFWorld's own default ``~/.cache/alfworld``."""
    env = os.environ.get("ALFWORLD_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "alfworld"


def games_root(data_dir: str | Path | None = None) -> Path:
    return Path(data_dir or default_data_dir()) / GAMES_DIRNAME


@dataclass(frozen=True)
class Task:
    """One ALFWorld game: its stable id, split, type and game file."""

    id: str
    split: str
    task_type: str
    game_file: Path

    @property
    def trial_dir(self) -> Path:
        return self.game_file.parent


@dataclass(frozen=True)
class TaskParams:
    """What ALFWorld's handcoded expert needs, parsed from a task folder name."""

    task_type: str
    object_target: str
    mrecep_target: str
    parent_target: str
    toggle_target: str
    scene: str


def parse_task_folder(name: str) -> TaskParams:
    """Parse ``<task_type>-<Object>-<Movable|None>-<Parent>-<scene>``.

    For ``look_at_obj_in_light`` the fourth field is the lamp to toggle and there
    is no parent receptacle.
    """
    parts = name.split("-")
    if len(parts) != 5 or parts[0] not in TASK_TYPES:
        raise GameFileError(f"not an ALFWorld task folder name: {name!r}")
    task_type, obj, mrecep, parent, scene = parts
    mrecep = "" if mrecep == "None" else mrecep
    if task_type == "look_at_obj_in_light":
        return TaskParams(task_type, obj, mrecep, "", parent, scene)
    return TaskParams(task_type, obj, mrecep, parent, "", scene)


def traj_data_for(params: TaskParams) -> dict:
    """The subset of ALFRED's traj_data.json that ALFWorld's TextWorld expert reads."""
    return {
        "task_type": params.task_type,
        "scene": {"scene_num": int(params.scene) if params.scene.isdigit() else params.scene},
        "pddl_params": {
            "object_target": params.object_target,
            "parent_target": params.parent_target,
            "mrecep_target": params.mrecep_target,
            "toggle_target": params.toggle_target,
            "object_sliced": False,
        },
        "generated_by": "mpr data prepare (derived from the task folder name)",
    }


def iter_game_files(root: Path, split: str) -> list[Path]:
    """Game files of one split, in sorted (stable) order."""
    return sorted((root / split).glob(f"*/*/{GAME_FILENAME}"))


def count_games(root: Path) -> dict[str, int]:
    return {split: sum(1 for _ in iter_game_files(root, split)) for split in SPLITS}


def verify_counts(root: Path) -> dict[str, int]:
    """Check each split holds its expected number of games; raise with the differences."""
    counts = count_games(root)
    wrong = {s: (counts[s], n) for s, n in EXPECTED_COUNTS.items() if counts[s] != n}
    if wrong:
        detail = ", ".join(f"{s}: {got} (expected {exp})" for s, (got, exp) in wrong.items())
        raise DataMissingError(f"ALFWorld games under {root} are incomplete: {detail}; {PREPARE_HINT}")
    return counts


def write_traj_data(root: Path) -> int:
    """Write traj_data.json next to every game file lacking one; returns how many were written."""
    return sum(ensure_traj_data(f.parent) for split in SPLITS for f in iter_game_files(root, split))


def ensure_traj_data(trial_dir: Path) -> bool:
    """Write ``trial_dir/traj_data.json`` from its task folder name if missing; True if written."""
    target = trial_dir / TRAJ_DATA_FILENAME
    if target.exists():
        return False
    params = parse_task_folder(trial_dir.parent.name)
    atomic_write_text(target, json.dumps(traj_data_for(params), indent=1))
    return True


def _check_source(src: Path) -> None:
    """What ``--from`` must be, checked before anything is written: a folder holding json_2.1.1/ (or
    that folder itself), or a tar archive."""
    if not src.exists():
        raise MprError(f"--from source not found: {src}")
    if src.is_dir():
        if not (src if src.name == GAMES_DIRNAME else src / GAMES_DIRNAME).is_dir():
            raise MprError(f"{src} holds no {GAMES_DIRNAME}/ folder")
    elif not tarfile.is_tarfile(src):
        raise MprError(f"cannot unpack {src}: not a tar archive (give alfworld-json_2.1.1-games.tar.xz "
                       f"or a folder holding {GAMES_DIRNAME}/)")


def _extract_archive(archive: Path, dest: Path) -> None:
    """Unpack an archive holding ``json_2.1.1/...`` into ``dest`` (atomically per split)."""
    with tempfile.TemporaryDirectory(dir=dest, prefix=".extract-") as tmp:
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(tmp, filter="data")
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise MprError(f"cannot unpack {archive}: {exc}") from None
        found = list(Path(tmp).rglob(GAMES_DIRNAME))
        if not found:
            raise MprError(f"{archive} holds no {GAMES_DIRNAME}/ folder")
        _move_splits(found[0], dest / GAMES_DIRNAME)


def _move_splits(src_root: Path, dst_root: Path) -> None:
    """Move complete split folders into place; an existing split is replaced only if incomplete."""
    dst_root.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        src, dst = src_root / split, dst_root / split
        if not src.is_dir():
            continue
        if dst.is_dir():
            if sum(1 for _ in iter_game_files(dst_root, split)) == EXPECTED_COUNTS[split]:
                continue
            shutil.rmtree(dst)
        shutil.move(str(src), str(dst))


def _copy_dir(src: Path, dest: Path) -> None:
    root = src if src.name == GAMES_DIRNAME else src / GAMES_DIRNAME
    if not root.is_dir():
        raise MprError(f"{src} holds no {GAMES_DIRNAME}/ folder")
    dst_root = dest / GAMES_DIRNAME
    for split in SPLITS:
        if (root / split).is_dir() and not (dst_root / split).is_dir():
            shutil.copytree(root / split, dst_root / split)


def _download_with_alfworld(dest: Path) -> None:
    """ALFWorld's own downloader script (needs internet); used when no --from source is given."""
    import subprocess
    import sys

    script = Path(sys.executable).parent / "alfworld-download"
    if not script.exists():
        found = shutil.which("alfworld-download")
        if not found:
            raise MprError("alfworld-download is not installed; pass --from ARCHIVE_OR_DIR")
        script = Path(found)
    proc = subprocess.run([str(script), "--data-dir", str(dest)], capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["unknown error"])[-1]
        raise MprError(
            f"alfworld-download failed ({last}); "
            "pass --from with a local copy of alfworld-json_2.1.1-games.tar.xz"
        )


def prepare(
    source: str | Path | None = None,
    data_dir: str | Path | None = None,
    log: Callable[[str], None] = lambda _msg: None,
) -> dict[str, int]:
    """Install the json_2.1.1 games into ``data_dir`` and verify them. Idempotent.

    ``source`` is the games archive (.tar.xz/.tar.gz) or a directory holding
    ``json_2.1.1``; with no source, ALFWorld's downloader is used. Returns the
    per-split game counts.
    """
    dest = Path(data_dir or default_data_dir()).expanduser()
    root = dest / GAMES_DIRNAME
    if root.is_dir() and count_games(root) == EXPECTED_COUNTS:
        log(f"games already installed under {root}")
    else:
        src = Path(source).expanduser() if source is not None else None
        if src is not None:  # before anything is created
            _check_source(src)
        if dest.exists() and not dest.is_dir():
            raise MprError(f"--data-dir {dest} is a file, not a folder")
        dest.mkdir(parents=True, exist_ok=True)
        if src is None:
            log("no --from given: using ALFWorld's downloader")
            _download_with_alfworld(dest)
        else:
            log(f"installing games from {src} into {dest}")
            if src.is_dir():
                _copy_dir(src, dest)
            else:
                _extract_archive(src, dest)
    counts = verify_counts(root)
    written = write_traj_data(root)
    if written:
        log(f"wrote {written} traj_data.json files for ALFWorld's handcoded expert")
    return counts


def require_games_root(data_dir: str | Path | None = None) -> Path:
    root = games_root(data_dir)
    if not root.is_dir():
        raise DataMissingError(f"no ALFWorld games at {root}; {PREPARE_HINT}")
    return root


def task_from_game_file(game_file: Path, data_dir: str | Path | None = None) -> Task:
    """Build a Task from a game file path.

    Inside the data dir the id is ``split/folder/trial``; elsewhere it is the
    trial directory's absolute path, so resolving the id again finds this file.
    """
    game_file = game_file.resolve()
    trial_dir = game_file.parent
    task_folder = trial_dir.parent.name
    task_type = task_folder.split("-", 1)[0]
    if task_type not in TASK_TYPES:
        raise GameFileError(f"{game_file}: folder {task_folder!r} is not an ALFWorld task folder")
    root = games_root(data_dir).resolve()
    try:
        task_id = str(trial_dir.relative_to(root))
        split = trial_dir.parent.parent.name
    except ValueError:
        task_id, split = str(trial_dir), "external"
    return Task(id=task_id, split=split, task_type=task_type, game_file=game_file)


def resolve_task(task: str, data_dir: str | Path | None = None) -> Task:
    """A Task from an id (``split/folder/trial``), a trial directory or a game file path."""
    path = Path(task).expanduser()
    if path.is_file():
        return task_from_game_file(path, data_dir)
    if path.is_dir() and (path / GAME_FILENAME).is_file():
        return task_from_game_file(path / GAME_FILENAME, data_dir)
    root = require_games_root(data_dir)
    game_file = root / task / GAME_FILENAME
    if not task.strip() or ".." in Path(task).parts or not game_file.is_file():
        raise TaskNotFoundError(
            f"unknown task {task!r}: expected an id like 'valid_unseen/<task folder>/<trial>' "
            f"under {root}, or a path to a {GAME_FILENAME} file (see `mpr tasks --split valid_unseen`)"
        )
    return task_from_game_file(game_file, data_dir)


def list_tasks(
    split: str,
    data_dir: str | Path | None = None,
    task_type: str | None = None,
    limit: int | None = None,
) -> list[Task]:
    """The tasks of a split in stable order, optionally one task type, at most ``limit``.

    With a limit and no task type, tasks are taken round-robin over task types so a
    small sample still covers every type.
    """
    if split not in SPLITS:
        raise MprError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    if task_type is not None and task_type not in TASK_TYPES:
        raise MprError(f"unknown task type {task_type!r}; choose one of: {', '.join(TASK_TYPES)}")
    root = require_games_root(data_dir)
    if not (root / split).is_dir():
        raise DataMissingError(f"split {split!r} is missing under {root}; {PREPARE_HINT}")
    tasks = [task_from_game_file(f, data_dir) for f in iter_game_files(root, split)]
    if task_type:
        tasks = [t for t in tasks if t.task_type == task_type]
    elif limit is not None:
        tasks = _round_robin_by_type(tasks)
    return tasks[:limit] if limit is not None else tasks


def _round_robin_by_type(tasks: list[Task]) -> list[Task]:
    by_type: dict[str, list[Task]] = {}
    for t in tasks:
        by_type.setdefault(t.task_type, []).append(t)
    queues = [by_type[tt] for tt in TASK_TYPES if tt in by_type]
    out: list[Task] = []
    for i in range(max(map(len, queues), default=0)):
        out.extend(q[i] for q in queues if i < len(q))
    return out


def load_walkthrough(task: Task) -> list[str]:
    """The game file's winning command list."""
    return list(read_game_json(task.game_file).get("walkthrough") or [])


def read_game_json(game_file: Path) -> dict:
    """Parse a game file; a corrupt or incomplete one is a GameFileError, not a traceback."""
    try:
        data = json.loads(game_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GameFileError(f"corrupt game file {game_file}: {exc.__class__.__name__}: {exc}") from None
    missing = [k for k in ("pddl_domain", "grammar", "pddl_problem") if k not in data]
    if not isinstance(data, dict) or missing:
        raise GameFileError(f"corrupt game file {game_file}: missing {', '.join(missing)}")
    return data
