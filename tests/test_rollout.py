"""`mpr rollout`: records, exploration options, resume after a real kill."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from mpr.training.rollout import (
    RECORDS,
    RolloutConfig,
    load_rollouts,
    reset_prefix,
    transitions,
)

from mpr.alfworld.data import list_tasks, load_walkthrough
from mpr.errors import MprError
from mpr.run.episodes import record_differences

MPR = [sys.executable, "-m", "mpr"]


def records(path):
    """Episode records keyed by (task, repeat)."""
    out = {}
    for line in (path / RECORDS).read_text().splitlines()[1:]:
        d = json.loads(line)
        out[(d["task_id"], d.get("repeat", 0))] = d
    return out


def test_rollout_records_every_transition_with_admissible_lists(random_rollouts):
    episodes = load_rollouts(random_rollouts)
    assert len(episodes) == 6 and {e.repeat for e in episodes} == {0, 1}
    for ep in episodes:
        assert len(ep.admissible) == ep.num_actions + 1
        steps = list(transitions(ep))
        assert len(steps) == ep.num_actions and steps[-1].done
        assert all(step.action in step.state.admissible for step in steps[ep.prefix:])
    summary = json.loads((random_rollouts / "summary.json").read_text())
    assert summary["episodes"] == 6 and summary["transitions"] == sum(e.num_actions for e in episodes)


def test_reset_half_replays_a_walkthrough_prefix(random_rollouts, games_root):
    episodes = load_rollouts(random_rollouts)
    started_inside = [e for e in episodes if e.prefix > 0]
    assert started_inside, "with reset_half=0.5 and 6 rollouts some should start from a walkthrough state"
    tasks = {t.id: t for t in list_tasks("train", limit=3)}
    for ep in started_inside:
        walkthrough = load_walkthrough(tasks[ep.task_id])
        assert [t.action for t in ep.turns[: ep.prefix]] == walkthrough[: ep.prefix]


def test_reset_prefix_is_seeded_and_bounded():
    config = RolloutConfig(reset_half=0.5, seed=1)
    prefixes = [reset_prefix(config, f"train/g/{i}", 0, 8) for i in range(200)]
    assert prefixes == [reset_prefix(config, f"train/g/{i}", 0, 8) for i in range(200)]
    assert 60 < sum(p > 0 for p in prefixes) < 140 and all(0 <= p <= 7 for p in prefixes)
    assert reset_prefix(RolloutConfig(), "train/g/1", 0, 8) == 0


def test_training_refuses_valid_unseen_and_missing_dirs(tmp_path, expert_rollouts):
    with pytest.raises(MprError, match="does not exist"):
        load_rollouts(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MprError, match="not a rollouts dir"):
        load_rollouts(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    text = (expert_rollouts / RECORDS).read_text().replace('"train/', '"valid_unseen/')
    (bad / RECORDS).write_text(text)
    with pytest.raises(MprError, match="valid_unseen"):
        load_rollouts(bad)


def test_killed_rollout_resumes_to_the_same_records(games_root, tmp_path):
    args = ["rollout", "--policy", "random", "--split", "train", "--limit", "3", "--repeats", "2", "--epsilon",
            "0.2", "--reset-half", "0.5", "--seed", "5", "--workers", "0", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    full = tmp_path / "full"
    subprocess.run(MPR + args + ["--out", str(full)], check=True, env=env, capture_output=True)
    cut = tmp_path / "cut"
    proc = subprocess.Popen(MPR + args + ["--out", str(cut)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:  # kill it as soon as two episodes are recorded
        if (cut / RECORDS).exists() and len((cut / RECORDS).read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len((cut / RECORDS).read_text().splitlines()) - 1
    assert 2 <= done_before < 6, "the kill should land mid-run"
    again = subprocess.run(MPR + args + ["--out", str(cut)], check=True, env=env, capture_output=True, text=True)
    assert f"{done_before} of 6 rollouts already recorded" in again.stdout
    assert record_differences(records(cut), records(full)) == []
    assert len((cut / RECORDS).read_text().splitlines()) == 7  # header + 6 episodes, none duplicated


def test_rollout_refuses_other_settings_in_the_same_dir(expert_rollouts):
    from mpr.training.rollout import rollout

    from mpr.alfworld.env import EnvConfig

    with pytest.raises(MprError, match="different settings"):
        rollout(RolloutConfig(policy="expert", split="train", limit=3, workers=0, epsilon=0.5, env=EnvConfig()),
                expert_rollouts, progress=False, echo=lambda _m: None)


@pytest.mark.games
def test_branch_rollouts_replay_a_recorded_rollout_then_take_another_action(random_rollouts, tmp_path):
    """--branch-from: each branch replays its source to a policy step, reaches the same state
    (digest), takes a different action there, and records the replayed turns as its prefix."""
    from mpr.training.rollout import rollout

    from mpr.alfworld.env import EnvConfig

    config = RolloutConfig(policy="random", split="train", limit=3, repeats=1, workers=0, seed=5,
                           branch_from=str(random_rollouts), env=EnvConfig())
    rollout(config, tmp_path / "branches", progress=False, echo=lambda _m: None)
    sources = {}
    for ep in load_rollouts(random_rollouts):
        sources.setdefault(ep.task_id, []).append(ep)
    branches = load_rollouts(tmp_path / "branches")
    assert len(branches) == 3
    for ep in branches:
        src = sorted(sources[ep.task_id], key=lambda e: e.repeat)[ep.repeat % len(sources[ep.task_id])]
        assert src.prefix <= ep.prefix < src.num_actions
        assert [t.action for t in ep.turns[:ep.prefix]] == [t.action for t in src.turns[:ep.prefix]]
        assert ep.states()[ep.prefix].digest() == src.states()[ep.prefix].digest()
        assert ep.turns[ep.prefix].action != src.turns[ep.prefix].action
    with pytest.raises(MprError, match="reset-half"):
        RolloutConfig(branch_from=str(random_rollouts), reset_half=0.5)
