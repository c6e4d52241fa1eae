import dataclasses

import pytest

from mpr.core import State, Turn
from mpr.run.episodes import EpisodeResult


def test_state_is_immutable_and_after_returns_new_state():
    s0 = State("t", "goal", "room", admissible=("look",))
    s1 = s0.after("look", "a room", admissible=("go to x",), expert_action="go to x")
    assert s0.turns == () and s1.turns == (Turn("look", "a room"),)
    assert s1.observation == "a room" and s0.observation == "room"
    assert s1.num_actions == 1 and s1.admissible == ("go to x",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s0.goal = "other"  # type: ignore[misc]


def test_state_identity_is_task_and_history_only():
    a = State("t", "g", "room", admissible=("x",), expert_action="x")
    b = State("t", "g", "room", admissible=(), expert_action=None)
    assert a == b and hash(a) == hash(b)
    assert a.after("look", "o") != a.after("look", "other")


def test_episode_result_json_round_trip():
    r = EpisodeResult("t", "pick_and_place_simple", True, 2, 1.0, "g", "i",
                      (Turn("a", "o"), Turn("b", "p")), 1.5, 1.0, 0.1, None, (0.0, 0.5))
    assert EpisodeResult.from_json(r.to_json()) == r
