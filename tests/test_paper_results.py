"""The committed `paper` bench report: its summary and tables are recomputed from its own episode records."""

from __future__ import annotations

import json

from conftest import REPO

from mpr.benchmark import load_recipe, summarize_episodes_file

PAPER = REPO / "bench" / "results" / "paper"


def committed_summary() -> dict:
    return json.loads((PAPER / "summary.json").read_text())


def test_paper_summary_is_recomputed_from_its_episodes():
    summary = committed_summary()
    assert summarize_episodes_file(PAPER / "episodes.jsonl") == summary["arms"]  # same code, same floats


def test_paper_run_arms_played_all_134_games():
    recipe = load_recipe(REPO / "bench" / "configs" / "paper.yaml")
    arms = committed_summary()["arms"]
    names = list(recipe.baselines) + [a.name for a in recipe.arms]
    # the report holds complete arms only, in recipe order: every baseline and planner, pending arms named in the doc
    assert list(arms) == [n for n in names if n in arms]
    assert set(recipe.baselines) | {"greedy", "best-of-n@8", "beam@8", "mcts@8"} <= set(arms)
    pending = [n for n in names if n not in arms]
    report = (REPO / "docs" / "bench-paper.md").read_text()
    if pending:  # a report written while the run goes on says which arms it lacks
        assert f"still running: {', '.join(pending)}" in report
    else:
        assert "still running" not in report
    by_arm: dict[str, set[str]] = {}
    for line in (PAPER / "episodes.jsonl").read_text().splitlines():
        d = json.loads(line)
        assert d["task_id"].startswith("valid_unseen/") and d["num_actions"] <= recipe.max_actions
        assert d["task_id"] not in by_arm.setdefault(d["arm"], set())  # each game once per arm
        by_arm[d["arm"]].add(d["task_id"])
    assert {len(games) for games in by_arm.values()} == {134}
    assert arms["walkthrough"]["wins"] == 134
    for name, s in arms.items():
        assert {"success_rate", "episodes", "model_calls", "tokens"} <= set(s), name


def test_paper_report_shows_the_recomputed_rates():
    report = (REPO / "docs" / "bench-paper.md").read_text()
    for name, s in committed_summary()["arms"].items():
        lo, hi = s["ci95"]
        assert f"| {name} |" in report, name
        assert f"{100 * s['success_rate']:.1f} ({100 * lo:.1f}–{100 * hi:.1f})" in report, name
