"""Planners on toy domains with known optima, their invariances, and the pieces they share."""

from __future__ import annotations

import math

import pytest
from mpr.planners.beam import BeamConfig, BeamPlanner, aggregate
from mpr.planners.best_of_n import BestOfNConfig, BestOfNPlanner
from mpr.planners.greedy import GreedyPlanner
from mpr.planners.mcts import MCTSConfig, MCTSPlanner
from mpr.planners.search import Models
from toyplan import (
    TRAP_GOAL,
    TrapPolicy,
    TrapScorer,
    TrapWorld,
    TreePolicy,
    TreeScorer,
    TreeWorld,
    position,
    root,
    tree_root,
)

from mpr.core import Planner


def trap_models(cache=True):
    return Models(TrapPolicy(), TrapWorld(), TrapScorer(), cache=cache)


def tree_models(cache=True, seed=0):
    return Models(TreePolicy(3, seed), TreeWorld(), TreeScorer(seed), cache=cache)


PLANNERS = {
    "greedy": lambda m: GreedyPlanner(m),
    "best-of-n": lambda m: BestOfNPlanner(m, BestOfNConfig(n=3)),
    "beam": lambda m: BeamPlanner(m, BeamConfig(width=2, depth=3, candidates=3)),
    "mcts": lambda m: MCTSPlanner(m, MCTSConfig(simulations=24, leaves_per_iter=4, candidates=3, max_depth=4)),
}


def play_trap(planner: Planner, steps: int = 3) -> tuple[str, ...]:
    """The receding-horizon loop on the trap domain (the toy world model is exact there)."""
    state, world = root(), TrapWorld()
    for _ in range(steps):
        (decision,) = planner([state])
        sim = world.predict([state], [decision.action])[0]
        ((admissible, won),) = world.outcomes([state], [decision.action], [sim])
        state = state.after(decision.action, sim, admissible)
        if won:
            break
    return position(state)


# -- known optima ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["beam", "mcts"])
def test_lookahead_planners_find_the_goal_of_the_trap(name):
    planner = PLANNERS[name](trap_models())
    assert planner([root()])[0].action == "path"
    assert play_trap(planner) == TRAP_GOAL


@pytest.mark.parametrize("name", ["greedy", "best-of-n"])
def test_planners_without_lookahead_take_the_bait(name):
    planner = PLANNERS[name](trap_models())
    assert planner([root()])[0].action == "bait"
    assert play_trap(planner)[0] == "bait"


def test_best_of_n_picks_the_highest_scored_proposal():
    (d,) = BestOfNPlanner(trap_models(), BestOfNConfig(n=3))([root()])
    assert d.action == "bait" and d.value == pytest.approx(0.6)
    assert [a for a, _ in d.alternatives] == ["bait", "path", "wait"]


def test_beam_aggregates():
    assert aggregate([0.2, 0.8], "last") == 0.8
    assert aggregate([0.2, 0.8], "min") == 0.2
    assert aggregate([0.2, 0.8], "mean") == pytest.approx(0.5)
    assert aggregate([0.2, 0.8], "discounted", 0.5) == pytest.approx((0.2 + 0.5 * 0.8) / 1.5)
    # with "min", the goal path (0.5, 0.55, 1.0) beats the bait (0.6, 0.1, ...) as well
    planner = BeamPlanner(trap_models(), BeamConfig(width=3, depth=3, candidates=3, aggregate="min"))
    assert planner([root()])[0].action == "path"


def test_beam_of_depth_one_is_best_of_n():
    beam = BeamPlanner(tree_models(), BeamConfig(width=4, depth=1, candidates=3))
    bon = BestOfNPlanner(tree_models(), BestOfNConfig(n=3))
    roots = [tree_root(f"t{i}") for i in range(5)]
    assert [(d.action, d.value) for d in beam(roots)] == [(d.action, d.value) for d in bon(roots)]


def test_mcts_value_of_a_won_leaf_is_one():
    planner = MCTSPlanner(trap_models(), MCTSConfig(simulations=40, leaves_per_iter=1, candidates=3))
    state = root().after("path", "path", ("step", "rest")).after("step", "path/step", ("open door", "knock"))
    (d,) = planner([state])
    assert d.action == "open door" and d.value == pytest.approx(1.0)


# -- one model call per phase per iteration ---------------------------------------------------------


def test_beam_makes_one_call_per_phase_per_depth_for_all_roots():
    m = tree_models(cache=False)
    roots = [tree_root(f"t{i}") for i in range(6)]
    BeamPlanner(m, BeamConfig(width=2, depth=3, candidates=3))(roots)
    assert (m.policy.calls, m.scorer.calls, m.world.calls) == (3, 3, 2)
    assert m.policy.batches == [6, 12, 12] and m.scorer.batches == [18, 36, 36] and m.world.batches == [12, 12]


def test_mcts_batches_leaves_across_roots_and_iterations():
    roots = [tree_root(f"t{i}") for i in range(4)]
    m = tree_models(cache=False)
    MCTSPlanner(m, MCTSConfig(simulations=12, leaves_per_iter=4, candidates=3, max_depth=6))(roots)
    # root expansion (propose + score), then one predict + propose + score per iteration
    iterations = m.world.calls
    assert m.policy.calls == m.scorer.calls == iterations + 1
    assert iterations <= 6 and max(m.world.batches) > 4  # several roots and leaves per call
    single = tree_models(cache=False)
    MCTSPlanner(single, MCTSConfig(simulations=12, leaves_per_iter=1, candidates=3, max_depth=6))(roots)
    assert single.world.calls == 12 > iterations


# -- invariances ----------------------------------------------------------------------------------------


def decisions(results):
    return [(d.action, round(d.value, 12), tuple((a, round(v, 12)) for a, v in d.alternatives), d.stats.nodes)
            for d in results]


@pytest.mark.parametrize("name", list(PLANNERS))
def test_batched_equals_one_root_at_a_time(name):
    roots = [tree_root(f"t{i}") for i in range(5)]
    batched = PLANNERS[name](tree_models())(roots)
    single = [PLANNERS[name](tree_models())([r])[0] for r in roots]
    assert decisions(batched) == decisions(single)


@pytest.mark.parametrize("name", list(PLANNERS))
def test_cached_equals_uncached(name):
    roots = [tree_root(f"t{i}") for i in range(4)] + [tree_root("t0")]  # a repeated root: cache hits
    cached_models = tree_models(cache=True)
    cached = PLANNERS[name](cached_models)(roots)
    uncached_models = tree_models(cache=False)
    uncached = PLANNERS[name](uncached_models)(roots)
    assert decisions(cached) == decisions(uncached)
    if name != "greedy":
        assert cached_models.scorer.items < uncached_models.scorer.items
        assert sum(d.stats.cache_hits for d in cached) > 0


def test_memo_persists_across_decisions():
    m = tree_models()
    planner = BeamPlanner(m, BeamConfig(width=2, depth=3, candidates=3))
    (d,) = planner([tree_root("t0")])
    before = m.scorer.items
    (d2,) = planner([tree_root("t0")])
    assert m.scorer.items == before and d2.stats.cache_hits > 0 and d2.action == d.action


# -- leaves_per_iter=1 is sequential MCTS: an independent reference implementation ---------------------


def reference_mcts(policy, world, scorer, state, simulations, c_puct, candidates, max_depth, gamma):
    """Textbook sequential PUCT, one model call per item, recursion instead of batches."""
    def expand(s):
        acts = policy.propose_scored([s], candidates)[0]
        top = max(lp for _, lp in acts)
        w = [math.exp(lp - top) for _, lp in acts]
        return [{"a": a, "p": x / sum(w), "q": scorer.score([s], [a])[0], "n": 0, "w": 0.0, "child": None}
                for (a, _), x in zip(acts, w)]

    def mean(e):
        return e["w"] / e["n"] if e["n"] else e["q"]

    def simulate(s, edges, depth):
        total = sum(e["n"] for e in edges)
        best = max(range(len(edges)), key=lambda k: (mean(edges[k]) + c_puct * edges[k]["p"] * math.sqrt(1 + total)
                                                    / (1 + edges[k]["n"]), -k))
        e = edges[best]
        if e["child"] is None:
            obs = world.predict([s], [e["a"]])[0]
            child = s.after(e["a"], obs, ("a0", "a1", "a2"))
            kids = expand(child)
            e["child"] = {"state": child, "edges": kids, "value": gamma * max(k["q"] for k in kids),
                          "final": depth + 1 >= max_depth}
            v = e["child"]["value"]
        elif e["child"]["final"]:
            v = e["child"]["value"]
        else:
            v = gamma * simulate(e["child"]["state"], e["child"]["edges"], depth + 1)
        e["n"] += 1
        e["w"] += v
        return v

    edges = expand(state)
    for _ in range(simulations):
        simulate(state, edges, 0)
    return [(e["a"], e["n"], round(mean(e), 12)) for e in edges]


@pytest.mark.parametrize("seed,gamma", [(0, 1.0), (1, 0.9), (2, 1.0)])
def test_one_leaf_per_iteration_reproduces_sequential_mcts(seed, gamma):
    cfg = MCTSConfig(simulations=40, leaves_per_iter=1, candidates=3, c_puct=1.5, max_depth=3, gamma=gamma)
    planner = MCTSPlanner(tree_models(cache=False, seed=seed), cfg, record_tree=True)
    (d,) = planner([tree_root("r")])
    edges = [n for n in d.tree["nodes"] if n["parent"] == 0]
    ours = [(n["action"], n["visits"], round(n["value"], 12)) for n in edges]
    ref = reference_mcts(TreePolicy(3, seed), TreeWorld(), TreeScorer(seed), tree_root("r"), 40, 1.5, 3, 3, gamma)
    assert sorted(ours) == sorted(ref)
    assert d.action == max(ref, key=lambda x: (x[1], x[2]))[0]


def test_more_leaves_per_iteration_still_finds_the_trap_goal():
    for leaves in (1, 2, 8):
        planner = MCTSPlanner(trap_models(), MCTSConfig(simulations=32, leaves_per_iter=leaves, candidates=3))
        assert play_trap(planner) == TRAP_GOAL


# -- stats --------------------------------------------------------------------------------------------------


def test_plan_stats_add_up_over_roots():
    m = tree_models(cache=False)
    roots = [tree_root(f"t{i}") for i in range(3)]
    out = BeamPlanner(m, BeamConfig(width=2, depth=2, candidates=3))(roots)
    assert all(d.stats.model_calls == 5 for d in out)  # propose+score at 2 depths, predict once
    assert sum(d.stats.requests for d in out) == m.policy.items + m.scorer.items + m.world.items
    assert all(d.stats.nodes == 3 + 6 for d in out)
    assert all(0 <= d.stats.model_seconds <= d.stats.seconds for d in out)


def test_tree_records_every_scored_action():
    (d,) = BeamPlanner(trap_models(), BeamConfig(width=2, depth=3, candidates=3), record_tree=True)([root()])
    nodes = d.tree["nodes"]
    assert nodes[0]["parent"] is None and d.tree["chosen"] == "path"
    assert {n["action"] for n in nodes if n["parent"] == 0} == {"bait", "path", "wait"}
    assert any(n["action"] == "open door" and n["q"] == 1.0 for n in nodes)
