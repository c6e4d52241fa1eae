"""Planners on real ALFWorld games: the oracle world model, simulated admissible commands, and
whole episodes through `mpr plan` / `mpr eval` with the tiny models the training chain built."""

from __future__ import annotations

import json

import pytest
from conftest import mpr
from mpr.worldmodel.grammar import next_admissible

from mpr.run.episodes import read_episodes


@pytest.fixture(scope="module")
def task(games_root):
    from mpr.alfworld.data import list_tasks

    return list_tasks("valid_seen", limit=1)[0]


def test_oracle_predicts_the_real_game_exactly(task):
    from mpr.planners.greedy import GreedyPlanner
    from mpr.worldmodel.oracle import OracleWorldModel

    from mpr.alfworld.agents import WalkthroughPolicy
    from mpr.alfworld.env import EnvConfig, SerialEnv
    from mpr.run.episodes import run_episodes

    env = SerialEnv(1, EnvConfig(expert=False))
    try:
        (episode,) = run_episodes(env, GreedyPlanner(WalkthroughPolicy()), [task], record_admissible=True)
    finally:
        env.close()
    assert episode.won
    states = episode.states()
    oracle = OracleWorldModel(EnvConfig(expert=False))
    try:
        parents, actions = states[:-1], [t.action for t in episode.turns]
        # siblings out of history order, and the same question twice: still exact
        order = list(range(len(actions)))[::-1] + [0]
        predicted = oracle.predict([parents[i] for i in order], [actions[i] for i in order])
        facts = oracle.outcomes([parents[i] for i in order], [actions[i] for i in order], predicted)
    finally:
        oracle.close()
    for k, i in enumerate(order):
        assert predicted[k] == episode.turns[i].observation
        assert facts[k][0] == states[i + 1].admissible
        assert facts[k][1] == (i == len(actions) - 1)  # only the last step wins


def test_simulated_admissible_commands_contain_the_experts_next_action(expert_rollouts):
    _, episodes = read_episodes(expert_rollouts / "rollouts.jsonl")
    hits = total = 0
    overlap = 0.0
    for e in episodes.values():
        states = e.states()
        for t in range(len(states) - 2):
            turn = states[t + 1].turns[-1]
            simulated = set(next_admissible(states[t], turn.action, turn.observation))
            real = set(states[t + 1].admissible)
            hits += states[t + 2].turns[-1].action in simulated
            overlap += len(simulated & real) / len(simulated | real)
            total += 1
    assert total > 20
    assert hits / total >= 0.9  # 97% on 600 train walkthroughs (1,458 steps)
    assert overlap / total >= 0.8  # Jaccard with the real list: 0.91 there


PLANNER_FLAGS = {
    "greedy": [],
    # the top 4 (not 4 draws, which a confident tiny policy may make all alike): alternatives to print
    "best-of-n": ["--n", 4, "--policy-mode", "score"],
    "beam": ["--width", 2, "--depth", 2, "--candidates", 3],
    "mcts": ["--simulations", 6, "--leaves-per-iter", 3, "--candidates", 3, "--max-depth", 2],
}


@pytest.mark.parametrize("planner", list(PLANNER_FLAGS))
def test_a_real_episode_runs_with_each_planner_and_trained_tiny_models(planner, tiny_chain, task, tmp_path):
    c = tiny_chain
    out = mpr("plan", "--task", task.id, "--planner", planner, *PLANNER_FLAGS[planner], "--policy", c / "PI",
              "--prm", c / "P", "--world", c / "W", "--max-actions", 2, "--tree", tmp_path / "tree").stdout
    assert " 1. > " in out and " 2. > " in out and "after 2 actions" in out
    assert "planner compute:" in out
    if planner != "greedy":
        assert "alternatives:" in out and "(value " in out
        tree = json.loads((tmp_path / "tree" / "step-01.json").read_text())
        assert tree["nodes"][0]["parent"] is None and len(tree["nodes"]) > 1
        assert (tmp_path / "tree" / "step-01.png").stat().st_size > 1000
    if planner in ("beam", "mcts"):
        assert any(n.get("observation") for n in tree["nodes"][1:])  # simulated by the world model


def test_oracle_world_model_in_a_planned_episode(tiny_chain, task):
    out = mpr("plan", "--task", task.id, "--planner", "beam", "--width", 2, "--depth", 2, "--candidates", 3,
              "--policy", tiny_chain / "PI", "--prm", tiny_chain / "P", "--oracle-world", "--max-actions", 2).stdout
    assert "oracle (real game replay; an upper bound" in out
    assert "world model predicted 2 of 2 observations exactly" in out


def test_eval_batches_a_planner_across_parallel_episodes(tiny_chain, tmp_path):
    c = tiny_chain
    records = tmp_path / "beam.jsonl"
    args = ["eval", "--agent", "beam", "--width", 2, "--depth", 2, "--candidates", 3, "--policy", c / "PI",
            "--prm", c / "P", "--world", c / "W", "--split", "valid_seen", "--limit", 2, "--max-actions", 2,
            "--workers", 2, "--json", records, "--no-progress"]
    mpr(*args)
    header, episodes = read_episodes(records)
    assert header["planner"]["name"] == "beam" and header["planner"]["width"] == 2
    assert len(episodes) == 2 and all(e.num_actions == 2 for e in episodes.values())
    assert all(e.compute["decisions"] == 2 and e.compute["nodes"] > 0 for e in episodes.values())
    summary = json.loads(records.with_suffix(".summary.json").read_text())
    assert summary["compute_now"]["decisions"] == 4
    assert "resuming" in mpr(*args).stdout  # finished episodes are not replayed


def test_bad_planner_input_is_one_clear_line(tiny_chain, task):
    c = tiny_chain
    cases = [
        (["--planner", "beam", "--width", 0], "beam width must be >= 1"),
        (["--planner", "mcts", "--simulations", 0], "mcts simulations must be >= 1"),
        (["--planner", "beam", "--prm", c / "W"], "is a 'world' checkpoint"),
        (["--planner", "beam", "--prm", c / "P", "--world", c / "P"], "is a 'prm' checkpoint"),
        (["--agent", "nope"], "unknown agent 'nope'"),
    ]
    for flags, message in cases:
        proc = mpr("plan", "--task", task.id, "--policy", c / "PI", *flags, "--max-actions", 1, ok=False)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], (flags, proc.stderr[-800:])
