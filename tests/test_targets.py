"""AgentPRM targets on hand-computed trajectories."""

import math

import pytest
from mpr.training.rollout import transitions
from mpr.training.targets import (
    discounted_returns,
    mc_state_values,
    mc_targets,
    rescale_unit,
    shaped_targets,
)

from mpr.core import Turn
from mpr.run.episodes import EpisodeResult


def episode(actions, won, task="train/t/1", repeat=0, prefix=0):
    turns = tuple(Turn(a, f"after {a}") for a in actions)
    return EpisodeResult(task, "pick_and_place_simple", won, len(turns), 1.0 if won else 0.0, "goal", "start",
                         turns, 0.0, 0.0, 0.0, repeat=repeat, prefix=prefix)


def by_key(targets):
    return {(len(t.state.turns), t.action): t for t in targets}


def test_discounted_returns_start_at_each_step():
    assert discounted_returns([0, 0, 1], 0.5) == [0.25, 0.5, 1.0]
    assert discounted_returns([1, 0, 2], 0.5) == [1.5, 1.0, 2.0]


def test_q_targets_discount_from_the_step_and_merge_identical_pairs():
    g = 0.9
    won = episode(["a", "b", "c"], True)  # returns: g^2, g, 1
    lost = episode(["a", "x"], False, repeat=1)  # same first (state, action) as `won`, returns 0
    t = by_key(mc_targets([won, lost], g))
    assert math.isclose(t[(0, "a")].value, (g**2 + 0) / 2)  # merged: mean over both trajectories
    assert t[(0, "a")].count == 2 and t[(0, "a")].success == 0.5
    assert math.isclose(t[(1, "b")].value, g)  # discounted from step 1, not from the episode start
    assert math.isclose(t[(2, "c")].value, 1.0)
    assert t[(1, "x")].value == 0.0
    assert len(t) == 4


def test_walkthrough_prefix_turns_get_no_targets():
    ep = episode(["w1", "w2", "p1"], True, prefix=2)
    targets = mc_targets([ep], 0.5)
    assert [(len(t.state.turns), t.action, t.value) for t in targets] == [(2, "p1", 1.0)]


def test_rescale_keeps_unit_range_and_maps_others_into_it():
    assert rescale_unit([0.0, 0.25, 1.0]) == [0.0, 0.25, 1.0]
    assert rescale_unit([-1.0, 0.0, 2.0]) == [0.0, 1 / 3, 1.0]
    assert rescale_unit([]) == []


def test_state_values_merge_over_actions():
    g = 0.5
    v = {len(t.state.turns): t for t in mc_state_values([episode(["a", "b"], True), episode(["x"], False, repeat=1)], g)}
    assert math.isclose(v[0].value, (0.5 + 0.0) / 2) and v[0].action == ""
    assert v[1].value == 1.0


def test_shaped_targets_use_one_batched_reference_call():
    g = 0.5
    ep = episode(["a", "b"], True)
    calls = []

    def v_ref(states):
        calls.append(len(states))
        return [0.1 * len(s.turns) for s in states]  # V(s0)=0, V(s1)=0.1, V(s2)=0.2

    raw = by_key(shaped_targets([ep], v_ref, g, rescale=False))
    assert calls == [3]
    assert math.isclose(raw[(0, "a")].value, 0 + g * 0.1 - 0.0)
    assert math.isclose(raw[(1, "b")].value, g**1 * 1.0 + 0.0 - 0.1)  # terminal next state: V = 0


def test_transitions_carry_reward_on_the_last_step_only():
    steps = list(transitions(episode(["a", "b"], True)))
    assert [(s.action, s.reward, s.done, s.won) for s in steps] == [("a", 0.0, False, False), ("b", 1.0, True, True)]
    assert steps[1].state == steps[0].next_state


@pytest.mark.parametrize("gamma", [0.5, 1.0])
def test_a_lone_winning_step_has_target_one(gamma):
    assert mc_targets([episode(["a"], True)], gamma)[0].value == 1.0
