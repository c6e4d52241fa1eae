"""The reference results committed under docs/results are recomputed from their own episode files."""

import json
from pathlib import Path

import pytest

from mpr.episodes import EpisodeResult, summarize, summary_json

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "results" / "valid_unseen"


@pytest.mark.parametrize("name, agent, count", [
    ("walkthrough", "walkthrough", 134), ("expert", "expert", 134), ("random", "random", 134),
    ("llm_zero_shot_sample", "llm", 20),
])
def test_summary_matches_its_episodes(name, agent, count):
    lines = [json.loads(line) for line in (RESULTS / f"{name}.jsonl").read_text().splitlines()]
    assert lines[0]["type"] == "header" and lines[0]["agent"] == agent
    episodes = [EpisodeResult.from_json(d) for d in lines[1:]]
    assert len({e.task_id for e in episodes}) == len(episodes) == count
    assert all(e.won == (e.reward == 1.0) and e.num_actions == len(e.turns) <= 30 for e in episodes)
    saved = json.loads((RESULTS / f"{name}.summary.json").read_text())["summary"]
    assert summary_json(summarize(episodes)) == saved  # same code, same floats: exact
    if agent == "walkthrough":
        assert saved["all"]["wins"] == 134
