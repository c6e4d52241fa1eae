"""The reference results committed under docs/results are recomputed from their own episode files."""

import json
from pathlib import Path

import pytest

from mpr.run.episodes import EpisodeResult, summarize, summary_json

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "results"


@pytest.mark.parametrize("split, name, agent, count", [
    ("valid_unseen", "walkthrough", "walkthrough", 134), ("valid_unseen", "expert", "expert", 134),
    ("valid_unseen", "random", "random", 134), ("valid_unseen", "llm_zero_shot_sample", "llm", 20),
    ("valid_seen", "policy_pi0_tiny", "policy", 60), ("valid_seen", "policy_pi1_tiny_rft", "policy", 60),
    ("valid_unseen", "policy_pi0_v2_tiny", "policy", 134), ("valid_seen", "policy_pi0_v2_tiny", "policy", 140),
    ("valid_unseen", "policy_pi0_v2_tiny_g500", "policy", 134), ("valid_unseen", "policy_pi0_v2_tiny_g1500", "policy", 134),
    ("valid_unseen", "policy_pi0_v3_tiny_lm1_g1500", "policy", 134),
    ("valid_unseen", "policy_pi0_v3_tiny_lm1_dagger", "policy", 134),
    ("valid_unseen", "policy_pi0_v4_tiny_lm1_all_e8", "policy", 134),
    ("valid_unseen", "bon8_pi0_v4_prm_e8", "policy", 134),
    ("valid_unseen", "policy_pi0_v4_dw4", "policy", 134), ("valid_unseen", "policy_pi0_v4_sampled", "policy", 134),
    ("valid_unseen", "bon8_pi0_v4_prm_b1", "policy", 134), ("valid_unseen", "bon8s_pi0_v4_prm_b1", "policy", 134),
    ("valid_unseen", "bon8s_pi0_v4_prm_e8", "policy", 134), ("valid_unseen", "bon8s_pi0_v4_iprm_e8", "policy", 134),
    ("valid_unseen", "policy-default", "policy", 134), ("valid_seen", "policy-default", "policy", 140),
])
def test_summary_matches_its_episodes(split, name, agent, count):
    lines = [json.loads(line) for line in (RESULTS / split / f"{name}.jsonl").read_text().splitlines()]
    assert lines[0]["type"] == "header" and lines[0]["agent"] == agent
    episodes = [EpisodeResult.from_json(d) for d in lines[1:]]
    assert len({e.task_id for e in episodes}) == len(episodes) == count
    assert all(e.won == (e.reward == 1.0) and e.num_actions == len(e.turns) <= 30 for e in episodes)
    assert all(e.task_id.startswith(f"{split}/") for e in episodes)
    saved = json.loads((RESULTS / split / f"{name}.summary.json").read_text())["summary"]
    assert summary_json(summarize(episodes)) == saved  # same code, same floats: exact
    if agent == "walkthrough":
        assert saved["all"]["wins"] == 134
