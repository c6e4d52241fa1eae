"""`mpr bench`: a small recipe end to end (report, plots, resume), budgets, intervals, bad recipes."""

from __future__ import annotations

import json

import pytest
from conftest import REPO, mpr

from mpr.app.benchmark import (
    ArmConfig,
    bar_colors,
    load_recipe,
    summarize_episodes_file,
    wilson,
)


def test_wilson_interval_by_hand():
    lo, hi = wilson(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    assert wilson(0, 6)[0] == 0.0 and wilson(0, 6)[1] == pytest.approx(0.3903, abs=1e-4)
    assert wilson(0, 0) == (0.0, 0.0)


def test_budgets_map_to_matching_planner_settings():
    assert ArmConfig("best-of-n", budget=16).planner_settings() == {"n": 16}
    # beam: C + (D-1)·W·C scored pairs; mcts: C + S·C
    assert ArmConfig("beam", budget=16, width=2, candidates=4).planner_settings()["depth"] == 3
    assert ArmConfig("beam", budget=4, width=2, candidates=4).planner_settings()["depth"] == 1
    assert ArmConfig("mcts", budget=16, candidates=4).planner_settings()["simulations"] == 3
    assert ArmConfig("mcts", budget=32, candidates=4).name == "mcts@32"


def test_shipped_recipes_load():
    for name in ("quick", "paper"):
        config = load_recipe(REPO / "bench" / "configs" / f"{name}.yaml")
        assert config.name == name and config.arms and config.models.build == "tiny"
    assert load_recipe(REPO / "bench/configs/paper.yaml").games_per_type is None  # all 134 games


@pytest.fixture(scope="module")
def small_bench(tiny_chain, tmp_path_factory):
    d = tmp_path_factory.mktemp("bench")
    recipe = d / "small.yaml"
    c = tiny_chain
    recipe.write_text(f"""
name: small
description: CI run of the harness.
split: valid_seen
games_per_type: 1
max_actions: 2
workers: 2
models: {{policy: {c / 'PI'}, prm: {c / 'P'}, world: {c / 'W'}}}
baselines: [walkthrough, random]
arms:
  - {{planner: greedy}}
  - {{planner: best-of-n, budget: 3}}
  - {{planner: beam, budget: 6, width: 1, candidates: 3}}
  - {{planner: mcts, budget: 6, candidates: 3, leaves_per_iter: 2}}
""")
    first = mpr("bench", recipe, "--out", d / "out", "--no-progress").stdout
    return recipe, d / "out", first


def test_bench_writes_report_plots_and_records(small_bench):
    _, out, stdout = small_bench
    for name in ("config.json", "summary.json", "report.md", "episodes.jsonl", "success_vs_compute.png",
                 "per_type.png"):
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    arms = summary["arms"]
    assert list(arms) == ["walkthrough", "random", "greedy", "best-of-n@3", "beam@6", "mcts@6"]
    assert all(a["episodes"] == 6 for a in arms.values())
    assert arms["beam@6"]["tokens_per_decision"] > arms["greedy"]["tokens_per_decision"] > 0
    assert summary["arm_settings"]["mcts@6"]["simulations"] == 1
    report = (out / "report.md").read_text()
    assert "| beam@6 |" in report and "95%" in report and "pick_two_obj_and_place" in report
    assert "mcts@6" in stdout


def test_summary_is_recomputed_from_the_episode_records(small_bench):
    _, out, _ = small_bench
    summary = json.loads((out / "summary.json").read_text())
    assert summarize_episodes_file(out / "episodes.jsonl") == summary["arms"]


def test_rerunning_resumes(small_bench):
    recipe, out, _ = small_bench
    before = (out / "episodes.jsonl").read_text()
    again = mpr("bench", recipe, "--out", out, "--no-progress").stdout
    assert again.count("0 episodes run now, 6 already recorded") == 6
    assert (out / "episodes.jsonl").read_text() == before


def test_only_the_named_arms_run_and_the_report_keeps_every_recorded_arm(small_bench, tmp_path):
    recipe, out, _ = small_bench
    again = mpr("bench", recipe, "--out", out, "--no-progress", "--arms", "greedy,walkthrough", "--threads", "1").stdout
    assert "[1/2] walkthrough" in again and "[2/2] greedy" in again and "mcts@6" not in again.split("# mpr bench")[0]
    assert again.count("0 episodes run now, 6 already recorded") == 2
    assert len(json.loads((out / "summary.json").read_text())["arms"]) == 6
    # a fresh results dir: the report holds only what has been recorded
    fresh = mpr("bench", recipe, "--out", tmp_path / "fresh", "--no-progress", "--arms", "walkthrough").stdout
    assert "6 episodes run now, 0 already recorded" in fresh
    assert list(json.loads((tmp_path / "fresh" / "summary.json").read_text())["arms"]) == ["walkthrough"]
    proc = mpr("bench", recipe, "--out", out, "--arms", "greedy,astar@3", ok=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "unknown arm(s) astar@3" in lines[0], proc.stderr[-500:]


def test_bad_recipes_are_one_clear_line(tmp_path):
    cases = {
        "name: x\nbogus: 1\n": "unknown key(s) 'bogus'",
        "name: x\narms: [{planner: greedy, budjet: 3}]\n": "unknown key(s) 'budjet'",
        "name: x\narms: [{planner: astar}]\n": "arm planner must be one of",
        "name: x\nmodels: {policy: p}\n": "give policy, prm and world checkpoints",
        "name: x\nbaselines: [oracle]\n": "unknown baseline",
        "name: x\nworkers: 0\n": "workers must be >= 1",
    }
    for i, (text, message) in enumerate(cases.items()):
        path = tmp_path / f"r{i}.yaml"
        path.write_text(text)
        proc = mpr("bench", path, "--out", tmp_path / "o", ok=False)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], (text, proc.stderr[-500:])
    proc = mpr("bench", tmp_path / "missing.yaml", ok=False)
    assert proc.returncode == 2 and "not found" in proc.stderr


@pytest.mark.parametrize("arms", [1, 4, 11, 20])
def test_per_type_bars_get_one_colour_per_arm(arms):
    # the paper report has 11 arms; matplotlib's default cycle would repeat the first colour for the 11th
    assert len(set(bar_colors(arms))) == arms
