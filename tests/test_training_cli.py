"""The training chain from the command line, exactly as a user runs it (--preset tiny)."""

import json

import pytest
from conftest import mpr


@pytest.fixture(scope="module")
def chain(tiny_chain):
    return tiny_chain


def test_each_stage_leaves_a_checkpoint_that_plan_and_eval_load(chain):
    for name, kind in (("P", "prm"), ("W", "world"), ("PI", "policy")):
        assert json.loads((chain / name / "mpr-checkpoint.json").read_text())["kind"] == kind
    world = json.loads((chain / "W" / "mpr-checkpoint.json").read_text())
    assert world["header"]["train"]["device"] == "cpu"  # --device is the TrainConfig field, recorded
    task = mpr("tasks", "--split", "valid_seen", "--limit", 1).stdout.split()[0]
    out = mpr("plan", "--task", task, "--agent", "policy", "--policy", chain / "PI", "--world", chain / "W",
              "--max-actions", 2).stdout
    assert "world model:" in out and "world model predicted" in out
    out = mpr("eval", "--agent", "prm", "--prm", chain / "P", "--split", "valid_seen", "--limit", 1,
              "--max-actions", 2, "--workers", 0, "--no-progress").stdout
    assert "all" in out and "1" in out


def test_bad_training_input_is_one_clear_line(chain, tmp_path):
    cases = [
        (["train", "prm", "--rollouts", tmp_path / "missing", "--out", tmp_path / "x"], "does not exist"),
        (["train", "prm", "--rollouts", chain / "R", "--out", tmp_path / "x", "--set", "learning_rate=1"], "unknown key"),
        (["train", "prm", "--rollouts", chain / "R", "--out", tmp_path / "x", "--preset", "nope"], "unknown preset"),
        (["eval", "--agent", "policy", "--policy", chain / "W", "--limit", 1], "is a 'world' checkpoint"),
        (["eval", "--agent", "prm", "--prm", chain / "PI", "--limit", 1], "is a 'policy' checkpoint"),
        (["eval", "--agent", "policy", "--policy", chain / "R", "--limit", 1], "not an mpr checkpoint"),
        (["train", "world", "--rollouts", chain / "R", "--out", chain / "P"], "already holds a 'prm' checkpoint"),
        (["train", "policy", "--rft", "--rollouts", chain / "R", "--prm", chain / "P", "--out", tmp_path / "y"],
         "needs --rollouts, --prm and --init"),
    ]
    for args, message in cases:
        proc = mpr(*args, ok=False)
        assert proc.returncode == 2, (args, proc.stderr[-500:])
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], (args, proc.stderr[-500:])


def test_training_on_a_gpu_that_is_not_there_is_one_clear_line(chain, tmp_path):
    no_gpu = {"CUDA_VISIBLE_DEVICES": ""}  # what a GPU box looks like without its GPU
    for extra in (["--device", "cuda"], ["--preset", "gpu"], ["--set", "device=cuda"]):
        proc = mpr("train", "prm", "--rollouts", chain / "R", "--out", tmp_path / "x", *extra, ok=False, env=no_gpu)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, (extra, proc.stderr[-500:])
        assert "--device cuda: torch sees no CUDA device" in lines[0], (extra, lines)
        assert not (tmp_path / "x").exists()  # refused before anything is written


def test_train_all_runs_every_stage_once_and_resumes_as_a_no_op(games_root, tmp_path):
    out = tmp_path / "chain"
    args = ("train", "all", "--preset", "tiny", "--demos-limit", 2, "--workers", 0, "--set", "max_steps=2",
            "--out", out, "--no-progress")
    first = mpr(*args).stdout
    stages = ["demos", "pi0", "rollouts", "branches", "prm", "world"]
    for k, stage in enumerate(stages, 1):
        assert f"[{k}/6] {stage}:" in first
    record = json.loads((out / "chain.json").read_text())
    assert list(record["stages"]) == stages
    assert 0 < record["stages"]["branches"]["result"]["episodes"] <= 4  # one branch per rolled-out game
    assert record["stages"]["demos"]["result"]["episodes"] == 2 and record["stages"]["pi0"]["result"]["steps"] == 2
    for name, kind in (("pi0", "policy"), ("prm", "prm"), ("world", "world")):
        assert json.loads((out / name / "mpr-checkpoint.json").read_text())["kind"] == kind
    rollouts = (out / "rollouts" / "rollouts.jsonl").read_bytes()
    again = mpr(*args).stdout
    assert again.count("already trained") == 3  # π₀, PRM and world model; the rollouts resume as complete
    assert (out / "rollouts" / "rollouts.jsonl").read_bytes() == rollouts
    assert json.loads((out / "chain.json").read_text())["stages"]["rollouts"]["result"]["rollouts_run_now"] == 0
    proc = mpr("train", "prm", "--rollouts", out / "rollouts", "--out", tmp_path / "p", "--preset", "cpu", ok=False)
    assert proc.returncode == 2 and "base: pi0 is the π₀ of `mpr train all`" in proc.stderr
