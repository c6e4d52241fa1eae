"""Append-only episode records and resumable evaluation on real ALFWorld games."""

import json

import pytest

from mpr.core import Turn
from mpr.errors import MprError
from mpr.run.episodes import EpisodeResult, EpisodeStore, summarize
from mpr.run.evaluation import EvalConfig, evaluate

HEADER = {"agent": "walkthrough", "split": "valid_unseen", "seed": 0, "max_actions": 30}


def _result(task_id, won=True, error=None, task_type="pick_and_place_simple"):
    return EpisodeResult(task_id, task_type, won, 1, float(won), "g", "i", (Turn("a", "o"),), 0.1, 0.1, 0.0, error)


def test_store_resumes_and_drops_a_torn_last_line(tmp_path):
    path = tmp_path / "ep.jsonl"
    store = EpisodeStore(path, HEADER)
    store.add(_result("t1"))
    store.add(_result("t2", won=False, error="timeout"))
    with open(path, "a") as f:
        f.write('{"type": "episode", "task_id": "t3", "wo')  # killed mid-write
    again = EpisodeStore(path, HEADER)
    assert set(again.results) == {"t1", "t2"}
    assert again.is_finished("t1") and not again.is_finished("t2")  # errored episodes are retried
    again.add(_result("t2"))
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line.get("task_id") for line in lines] == [None, "t1", "t2", "t2"]
    assert EpisodeStore(path, HEADER).is_finished("t2")


def test_store_refuses_a_file_from_other_settings(tmp_path):
    path = tmp_path / "ep.jsonl"
    EpisodeStore(path, HEADER)
    with pytest.raises(MprError, match="different settings.*agent"):
        EpisodeStore(path, {**HEADER, "agent": "random"})
    (tmp_path / "other.jsonl").write_text('{"x": 1}\n')
    with pytest.raises(MprError, match="not an mpr episode file"):
        EpisodeStore(tmp_path / "other.jsonl", HEADER)


def test_summary_counts_errors_as_failures():
    rows = summarize([_result("a"), _result("b", won=False, error="timeout"),
                      _result("c", task_type="look_at_obj_in_light")])
    assert rows["all"].episodes == 3 and rows["all"].wins == 2 and rows["all"].errors == 1
    assert rows["pick_and_place_simple"].success_rate == 0.5
    assert list(rows) == ["pick_and_place_simple", "look_at_obj_in_light", "all"]


def _comparable(path):
    """Episode records without timings, in file order."""
    out = []
    for line in path.read_text().splitlines():
        d = json.loads(line)
        for k in ("seconds", "env_seconds", "plan_seconds"):
            d.pop(k, None)
        d.get("compute", {}).pop("model_seconds", None)
        out.append(d)
    return out


def test_killed_eval_resumes_to_the_same_records(games_root, tmp_path):
    config = EvalConfig(agent="random", split="valid_unseen", limit=4, workers=0, seed=7)
    full = tmp_path / "full.jsonl"
    evaluate(config, full, progress=False, echo=lambda _: None)
    # Simulate a kill after two episodes, with the third one half-written.
    lines = full.read_text().splitlines(keepends=True)
    cut = tmp_path / "cut.jsonl"
    cut.write_text("".join(lines[:3]) + lines[3][:40])
    printed: list[str] = []
    summary = evaluate(config, cut, progress=False, echo=printed.append)
    assert any("2 of 4 episodes already recorded" in p for p in printed)
    assert summary["episodes_run_now"] == 2 and summary["episodes_in_summary"] == 4
    assert _comparable(cut) == _comparable(full)


def test_random_agent_is_deterministic_per_seed(games_root, tmp_path):
    def run(seed, name):
        evaluate(EvalConfig(agent="random", limit=2, workers=0, seed=seed, env=_short()), tmp_path / name,
                 progress=False, echo=lambda _: None)
        return [d.get("turns") for d in _comparable(tmp_path / name)[1:]]

    assert run(1, "a.jsonl") == run(1, "b.jsonl")
    assert run(1, "a2.jsonl") != run(2, "c.jsonl")


def _short():
    from mpr.alfworld.env import EnvConfig

    return EnvConfig(max_actions=8, expert=False)


def _record(values, actions=("a",), **extra):
    r = _result("t1")
    d = r.to_json()
    d.update(values=list(values), turns=[[a, "o"] for a in actions], **extra)
    return d


def test_record_comparison_is_exact_on_discrete_content_and_tolerant_on_values():
    from mpr.run.episodes import VALUE_ABS_TOL, record_differences

    a = {("t1", 0): _record([-14.28594, 0.5], seconds=1.0)}
    # the AMD EPYC's bf16 batch-layout noise (4e-4), other timings: the same episode
    b = {("t1", 0): _record([-14.28636, 0.5], seconds=9.0, plan_seconds=3.0)}
    assert record_differences(a, b) == []
    far = {("t1", 0): _record([-14.28594 + 10 * VALUE_ABS_TOL, 0.5])}
    assert "values" in record_differences(a, far)[0]
    other_action = {("t1", 0): _record([-14.28594, 0.5], actions=("b",))}
    assert "beyond values" in record_differences(a, other_action)[0]
    shorter = {("t1", 0): _record([-14.28594])}
    assert record_differences(a, shorter)
    assert "only in one run" in record_differences(a, {})[0]
    # values near a rounding boundary no longer flip: 0.123455 vs 0.123454 rounded to 5 places differ
    assert record_differences({1: _record([0.123455])}, {1: _record([0.123454])}) == []
