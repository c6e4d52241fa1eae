"""Hostile input, as a table: the wrong file at 2 a.m. gives one `error:` line, exit status 2, and
leaves every file that was there byte for byte as it was (and adds none).

Each case lays out files in a fresh folder, hashes every path under it, runs the CLI there as a
user would, and hashes again. Cases that need the ALFWorld games are marked ``games``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

MARKER = "mpr-output.json"
EVAL_HEADER = {"type": "header", "agent": "expert", "split": "valid_unseen", "seed": 0, "max_actions": 30}
SUMMARY = {"config": {"agent": "expert"}, "episodes_in_summary": 1, "summary": {"all": {"wins": 1}}}


def jsonl(*records) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


# files laid out before a case: path -> bytes (a file) or None (an empty folder)
USER_FOLDER = {"mine/config.json": b'{"lr": 0.1, "note": "my own run"}\n', "mine/weights.bin": b"\x00\x01"}
FOREIGN_30 = {"foreign.json": b'{"results": [1, 2, 3], "ok": 1}'}  # 30 bytes, no trailing newline
ROLLOUTS = {"R/rollouts.jsonl": jsonl({"type": "header", "policy": "expert", "split": "train"})}

CASES = [
    # -- episode records (--json) --------------------------------------------------------------
    ("json-foreign-no-newline", FOREIGN_30, ["eval", "--agent", "expert", "--limit", "1", "--json", "foreign.json"],
     "foreign.json is not an mpr episode file"),
    ("json-own-summary", {"run.summary.json": json.dumps(SUMMARY, indent=2).encode() + b"\n"},
     ["eval", "--agent", "expert", "--limit", "1", "--json", "run.summary.json"], "is not an mpr episode file"),
    ("json-foreign-with-newline", {"notes.jsonl": b'{"a": 1}\n{"b": 2}\n'},
     ["eval", "--agent", "expert", "--json", "notes.jsonl"], "notes.jsonl is not an mpr episode file"),
    ("json-directory", {"d/x.txt": b"x"}, ["eval", "--agent", "expert", "--json", "d"], "--json d is a folder"),
    ("json-under-a-file", FOREIGN_30, ["eval", "--agent", "expert", "--json", "foreign.json/x.jsonl"],
     "foreign.json is a file, not a folder"),
    ("json-empty-file", {"empty.jsonl": b""}, ["eval", "--agent", "expert", "--json", "empty.jsonl"],
     "empty.jsonl is not an mpr episode file"),
    ("json-binary", {"pic.jsonl": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"},
     ["eval", "--agent", "expert", "--json", "pic.jsonl"], "pic.jsonl is not an mpr episode file"),
    ("json-corrupt-line", {"r.jsonl": jsonl(EVAL_HEADER) + b"garbage\n"},
     ["eval", "--agent", "expert", "--json", "r.jsonl"], "r.jsonl line 2 is not an mpr episode record (not JSON)"),
    ("json-foreign-line", {"r.jsonl": jsonl(EVAL_HEADER, {"task_id": "x"})},
     ["eval", "--agent", "expert", "--json", "r.jsonl"], "line 2 is not an mpr episode record"),
    # a torn last line is repaired only in a file of the same settings: here it stays torn
    ("json-other-settings-torn", {"r.jsonl": jsonl({**EVAL_HEADER, "agent": "random"}) + b'{"type": "epi'},
     ["eval", "--agent", "expert", "--json", "r.jsonl"], "was written by a run with different settings (agent)"),
    ("json-foreign-summary", {"r.summary.json": b'{"mine": true}\n'},
     ["eval", "--agent", "expert", "--json", "r.jsonl"], "r.summary.json exists and is not an evaluation summary"),
    # -- output folders (--out, --tree) ------------------------------------------------------------
    ("train-into-user-folder", {**USER_FOLDER, **ROLLOUTS},
     ["train", "policy", "--sft", "--demos", "R", "--out", "mine", "--preset", "tiny"],
     "--out mine is not empty and was not written by mpr"),
    ("prm-into-user-folder", {**USER_FOLDER, **ROLLOUTS},
     ["train", "prm", "--rollouts", "R", "--out", "mine", "--preset", "tiny"], "--out mine is not empty"),
    ("rollout-into-user-folder", USER_FOLDER, ["rollout", "--policy", "random", "--limit", "1", "--out", "mine"],
     "--out mine is not empty and was not written by mpr"),
    ("rollout-out-is-a-file", FOREIGN_30, ["rollout", "--policy", "random", "--out", "foreign.json"],
     "--out foreign.json is a file, not a folder"),
    ("rollout-into-other-mpr-output", {f"b/{MARKER}": b'{"mpr": "output", "kind": "bench"}\n', "b/x": b"1"},
     ["rollout", "--policy", "random", "--out", "b"], "--out b holds mpr bench output, not rollouts"),
    ("rollout-into-foreign-records", {"R2/rollouts.jsonl": b"id,score\n1,0.5\n"},
     ["rollout", "--policy", "random", "--out", "R2"], "--out R2 is not empty and was not written by mpr"),
    ("train-out-is-a-file", {**FOREIGN_30, **ROLLOUTS},
     ["train", "world", "--rollouts", "R", "--out", "foreign.json", "--preset", "tiny"], "is a file, not a folder"),
    ("bench-into-user-folder", USER_FOLDER, ["bench", "RECIPE", "--out", "mine"], "--out mine is not empty"),
    # -- inputs (--demos, --rollouts, checkpoints) -------------------------------------------------
    ("demos-missing", {}, ["train", "policy", "--sft", "--demos", "nope", "--out", "P", "--preset", "tiny"],
     "rollouts dir nope does not exist"),
    ("demos-not-rollouts", USER_FOLDER, ["train", "policy", "--sft", "--demos", "mine", "--out", "P",
                                         "--preset", "tiny"], "mine holds no rollouts.jsonl"),
    ("rollouts-foreign-records", {"R/rollouts.jsonl": b"id,score\n1,0.5\n"},
     ["train", "prm", "--rollouts", "R", "--out", "P", "--preset", "tiny"], "is not an mpr episode file"),
    ("rollouts-edited-line", {"R/rollouts.jsonl": jsonl({"type": "header"}, {"type": "episode", "task_id": 3})},
     ["train", "prm", "--rollouts", "R", "--out", "P", "--preset", "tiny"],
     "R/rollouts.jsonl line 2 is not an mpr episode record (its fields are not an episode's)"),
    ("policy-not-a-checkpoint", USER_FOLDER, ["eval", "--agent", "policy", "--policy", "mine", "--limit", "1"],
     "--policy mine: not an mpr checkpoint"),
    ("prm-missing-checkpoint", {}, ["eval", "--agent", "prm", "--prm", "nope", "--limit", "1"],
     "--prm nope: no such checkpoint directory"),
    ("policy-is-a-file", FOREIGN_30, ["eval", "--agent", "policy", "--policy", "foreign.json", "--limit", "1"],
     "--policy foreign.json: no such checkpoint directory"),
    ("checkpoint-metadata-corrupt", {"ck/mpr-checkpoint.json": b"garbage\n"},
     ["eval", "--agent", "policy", "--policy", "ck", "--limit", "1"], "--policy ck: mpr-checkpoint.json is corrupt"),
    ("iterate-into-user-folder", USER_FOLDER, ["train", "iterate", "--policy", "random", "--out", "mine"],
     "--out mine is not empty and was not written by mpr"),
    ("data-dir-is-a-file", FOREIGN_30, ["tasks", "--data-dir", "foreign.json"], "no ALFWorld games at foreign.json"),
    # -- recipes, presets, overrides -----------------------------------------------------------------
    ("recipe-missing", {}, ["bench", "nope.yaml"], "config file not found: nope.yaml"),
    ("recipe-not-yaml", {"r.yaml": b"arms: [\n"}, ["bench", "r.yaml"], "r.yaml: not valid YAML"),
    ("recipe-a-list", {"r.yaml": b"- 1\n- 2\n"}, ["bench", "r.yaml"], "top level must be a mapping"),
    ("recipe-unknown-key", {"r.yaml": b"name: x\nnope: 1\n"}, ["bench", "r.yaml"], "unknown key(s) 'nope'"),
    ("recipe-no-name", {"r.yaml": b"split: valid_seen\n"}, ["bench", "r.yaml"], "missing key(s) 'name'"),
    ("recipe-wrong-type", {"r.yaml": b"name: x\nmax_actions: ten\n"}, ["bench", "r.yaml"],
     "max_actions must be an integer, got 'ten'"),
    ("recipe-split-a-number", {"r.yaml": b"name: x\nsplit: 3\n"}, ["bench", "r.yaml"], "split must be a string"),
    ("recipe-unknown-split", {"r.yaml": b"name: x\nsplit: test\n"}, ["bench", "r.yaml"], "unknown split 'test'"),
    ("recipe-arms-shape", {"r.yaml": b"name: x\narms: 5\n"}, ["bench", "r.yaml"], "arms must be a list of mappings"),
    ("recipe-arm-a-number", {"r.yaml": b"name: x\narms: [3]\n"}, ["bench", "r.yaml"], "each of arms must be a mapping"),
    ("recipe-arm-budget", {"r.yaml": b"name: x\narms: [{planner: beam, budget: many}]\n"}, ["bench", "r.yaml"],
     "arms: budget must be an integer, got 'many'"),
    ("recipe-arm-planner", {"r.yaml": b"name: x\narms: [{planner: warp}]\n"}, ["bench", "r.yaml"],
     "r.yaml: arms: arm planner must be one of"),
    ("recipe-baselines-string", {"r.yaml": b"name: x\nbaselines: walkthrough\n"}, ["bench", "r.yaml"],
     "baselines must be a list of names"),
    ("recipe-models-shape", {"r.yaml": b"name: x\nmodels: 3\n"}, ["bench", "r.yaml"], "models must be a mapping"),
    ("preset-unknown", ROLLOUTS, ["train", "policy", "--sft", "--demos", "R", "--out", "P", "--preset", "big"],
     "unknown preset 'big'"),
    ("config-not-yaml", {**ROLLOUTS, "c.yaml": b"policy: [\n"},
     ["train", "policy", "--sft", "--demos", "R", "--out", "P", "--config", "c.yaml"], "c.yaml: not valid YAML"),
    ("config-unknown-section", {**ROLLOUTS, "c.yaml": b"polcy: {lr: 0.1}\n"},
     ["train", "policy", "--sft", "--demos", "R", "--out", "P", "--config", "c.yaml"], "unknown section(s) 'polcy'"),
    ("set-unknown-key", ROLLOUTS, ["train", "policy", "--sft", "--demos", "R", "--out", "P", "--set", "lrr=1"],
     "unknown key(s) 'lrr'"),
    ("set-not-a-number", ROLLOUTS, ["train", "policy", "--sft", "--demos", "R", "--out", "P", "--set", "lr=fast"],
     "lr must be a number, got 'fast'"),
    ("set-not-a-bool", ROLLOUTS, ["train", "policy", "--sft", "--demos", "R", "--out", "P", "--set", "lora=maybe"],
     "lora must be true or false, got 'maybe'"),
    # -- data ------------------------------------------------------------------------------------------
    ("data-from-missing", {}, ["data", "prepare", "--from", "nope.tar.xz", "--data-dir", "games"],
     "--from source not found: nope.tar.xz"),
    ("data-from-not-an-archive", {"fake.tar.xz": b"hello\n"}, ["data", "prepare", "--from", "fake.tar.xz",
                                                               "--data-dir", "games"], "not a tar archive"),
    ("data-from-empty-folder", {"src": None}, ["data", "prepare", "--from", "src", "--data-dir", "games"],
     "src holds no json_2.1.1/ folder"),
    # -- flags (click's own errors are one line too) -------------------------------------------------
    ("unknown-option", {}, ["eval", "--agnet", "expert"], "No such option '--agnet'"),
    ("not-an-integer", {}, ["eval", "--limit", "ten"], "Invalid value for '--limit'"),
    ("missing-option", {}, ["train", "policy", "--sft"], "Missing option '--out'"),
    ("unknown-command", {}, ["evaluate"], "No such command 'evaluate'"),
    ("bad-choice", {}, ["eval", "--planner", "astar"], "Invalid value for '--planner'"),
    ("unknown-agent", {}, ["eval", "--agent", "nobody"], "unknown agent 'nobody'"),
    ("limit-zero", {}, ["eval", "--limit", "0"], "--limit must be >= 1"),
    ("unknown-split", {}, ["tasks", "--split", "test"], "unknown split 'test'"),
]

GAME_CASES = [
    ("tree-into-user-folder", USER_FOLDER, ["plan", "--task", "TASK", "--tree", "mine"],
     "--tree mine is not empty and was not written by mpr"),
    ("unknown-task", {}, ["plan", "--task", "valid_unseen/nope/trial"], "unknown task"),
]


def lay_out(root: Path, files: dict[str, bytes | None]) -> None:
    for name, content in files.items():
        path = root / name
        if content is None:
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)


def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root``: a file's sha256, or "dir"."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


def run_case(tmp_path: Path, files: dict[str, bytes | None], args: list[str], fragment: str) -> None:
    lay_out(tmp_path, files)
    before = snapshot(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPR_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "mpr", *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-1500:]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-1500:]
    assert fragment in lines[0], lines[0]
    assert snapshot(tmp_path) == before, "a pre-existing file changed, or something was written"


def _resolve(args: list[str], **names: str) -> list[str]:
    return [names.get(a, a) for a in args]


@pytest.mark.parametrize("name, files, args, fragment", CASES, ids=[c[0] for c in CASES])
def test_hostile_input_is_one_line_and_changes_nothing(name, files, args, fragment, tmp_path):
    recipe = str(Path(__file__).resolve().parent.parent / "bench" / "configs" / "quick.yaml")
    run_case(tmp_path, files, _resolve(args, RECIPE=recipe), fragment)


@pytest.mark.games
@pytest.mark.parametrize("name, files, args, fragment", GAME_CASES, ids=[c[0] for c in GAME_CASES])
def test_hostile_input_with_games_is_one_line_and_changes_nothing(name, files, args, fragment, tmp_path,
                                                                   valid_unseen):
    run_case(tmp_path, files, _resolve(args, TASK=valid_unseen[0].id), fragment)


def test_the_table_catches_a_changed_file(tmp_path):
    """The check itself can fail: a command that writes is caught by the snapshot."""
    lay_out(tmp_path, {"a.txt": b"x"})
    before = snapshot(tmp_path)
    (tmp_path / "a.txt").write_bytes(b"y")
    assert snapshot(tmp_path) != before


@pytest.mark.games
def test_folders_from_before_markers_are_still_resumed(expert_rollouts, tmp_path):
    """A rollouts folder mpr wrote before output markers existed is proven by its records' header:
    it resumes (nothing to do) and gets its marker; a copy with a foreign records file does not."""
    import shutil

    from mpr.alfworld.env import EnvConfig
    from mpr.errors import MprError
    from mpr.training.rollout import RolloutConfig, rollout

    old = tmp_path / "old"
    shutil.copytree(expert_rollouts, old)
    (old / MARKER).unlink()
    config = RolloutConfig(split="train", limit=3, workers=0, env=EnvConfig(), policy="expert")
    said: list[str] = []
    summary = rollout(config, old, progress=False, echo=said.append)
    assert summary["rollouts_run_now"] == 0 and any("3 of 3 rollouts already recorded" in m for m in said)
    assert json.loads((old / MARKER).read_text()) == {"mpr": "output", "kind": "rollouts"}
    (old / MARKER).unlink()
    (old / "rollouts.jsonl").write_text("id,score\n")
    before = snapshot(old)
    with pytest.raises(MprError, match="not empty and was not written by mpr"):
        rollout(config, old, progress=False, echo=said.append)
    assert snapshot(old) == before


@pytest.mark.models
def test_checkpoints_from_before_markers_are_still_recognised(tiny_chain, tmp_path):
    """A finished checkpoint without an output marker (trained before markers) is proven by its
    mpr-checkpoint.json: the same command says it is already trained and changes nothing."""
    import shutil

    from tests.conftest import mpr

    old = tmp_path / "P"
    shutil.copytree(tiny_chain / "P", old)
    (old / MARKER).unlink(missing_ok=True)
    before = snapshot(old)
    out = mpr("train", "prm", "--rollouts", tiny_chain / "R", "--out", old, "--preset", "tiny", "--no-progress")
    assert "already trained" in out.stdout
    assert {k: v for k, v in snapshot(old).items() if k != MARKER} == before
