"""The committed `paper` bench report: its summary and tables are recomputed from its own episode records."""

from __future__ import annotations

import copy
import importlib.util
import json

import pytest
from conftest import REPO

from mpr.app.benchmark import (
    _file,
    episodes_by_arm,
    load_recipe,
    select_arms,
    summarize_episodes_file,
)
from mpr.errors import ConfigError

PAPER = REPO / "bench" / "results" / "paper"


def paper_report():
    """bench/paper_report.py, the script that writes docs/bench-paper.md (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location("paper_report", REPO / "bench" / "paper_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def recipe_arms(recipe) -> list[str]:
    return [name for name, _ in select_arms(recipe, None)]


def committed_summary() -> dict:
    return json.loads((PAPER / "summary.json").read_text())


def test_paper_summary_is_recomputed_from_its_episodes():
    summary = committed_summary()
    assert summarize_episodes_file(PAPER / "episodes.jsonl") == summary["arms"]  # same code, same floats


def test_paper_run_arms_played_all_134_games():
    recipe = load_recipe(REPO / "bench" / "configs" / "paper.yaml")
    arms = committed_summary()["arms"]
    # the run is complete: every baseline and planner arm of the recipe, in recipe order, and no pending note
    assert list(arms) == recipe_arms(recipe)
    assert "still running" not in (REPO / "docs" / "bench-paper.md").read_text()
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


def test_paper_page_is_what_the_script_renders_from_the_records():
    # every number and claim on the page comes from the committed records; a hand edit or a stale page fails here
    assert paper_report().render_from_files(PAPER) == (REPO / "docs" / "bench-paper.md").read_text()


def test_paper_page_refuses_prose_the_records_contradict():
    report = paper_report()
    summary = committed_summary()
    models = json.loads((PAPER / "models.json").read_text())
    by_arm = episodes_by_arm(PAPER / "episodes.jsonl")
    recipe = load_recipe(REPO / "bench" / "configs" / "paper.yaml")
    assert "nothing wins" in report.render(recipe, summary, models, by_arm)
    won = copy.deepcopy(summary)
    won["arms"]["greedy"]["wins"] = 1  # the page's text explains a run in which no model-driven arm won
    with pytest.raises(ConfigError, match="greedy"):
        report.render(recipe, won, models, by_arm)
    short = copy.deepcopy(summary)
    short["arms"]["greedy"]["episodes"] = 133
    with pytest.raises(ConfigError, match="complete arms only"):
        report.render(recipe, short, models, by_arm)


def test_paper_refresh_keeps_complete_arms_and_names_the_rest(tmp_path):
    # a run's working files rebuilt from the committed records: one arm cut short, as by a kill mid-run
    report = paper_report()
    by_arm = episodes_by_arm(PAPER / "episodes.jsonl")
    (tmp_path / "arms").mkdir()
    for arm, episodes in by_arm.items():
        kept = episodes[:100] if arm == "greedy" else episodes
        lines = [{"type": "header", "agent": arm}] + [e.to_json() for e in kept]
        (tmp_path / "arms" / f"{_file(arm)}.jsonl").write_text(
            "".join(json.dumps(line) + "\n" for line in lines))
    models = json.loads((PAPER / "models.json").read_text())
    (tmp_path / "models" / "demos").mkdir(parents=True)
    (tmp_path / "models" / "demos" / "summary.json").write_text(json.dumps(models["demos"]))
    for kind in ("policy", "prm", "world"):
        (tmp_path / "models" / kind).mkdir()
        checkpoint = {"kind": kind, "header": {"train": models[kind]["train"]}, "metrics": models[kind]["metrics"]}
        (tmp_path / "models" / kind / "mpr-checkpoint.json").write_text(json.dumps(checkpoint))
    recipe = load_recipe(REPO / "bench" / "configs" / "paper.yaml")
    pending = report.refresh(tmp_path)
    assert pending == [n for n in recipe_arms(recipe) if n == "greedy" or n not in by_arm]
    refreshed = json.loads((tmp_path / "summary.json").read_text())
    assert refreshed["arms"] == {n: s for n, s in committed_summary()["arms"].items() if n != "greedy"}
    assert json.loads((tmp_path / "models.json").read_text()) == models
    page = report.render_from_files(tmp_path)
    assert f"still running: {', '.join(pending)}" in page and "| greedy |" not in page
