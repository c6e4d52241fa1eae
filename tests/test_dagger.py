"""DAgger: learner episodes labelled by the handcoded expert, and the SFT sequences that train toward
the labels (training.transcripts.encode_relabeled)."""

from __future__ import annotations

import dataclasses

import pytest

from mpr.core import Turn
from mpr.lm.prompts import action_segment, transcript, transcript_skip
from mpr.run.episodes import EpisodeResult
from mpr.training.transcripts import disagreements, encode_episodes, encode_relabeled


def byte_ids(text: str) -> list[int]:
    return list(text.encode())


def labelled_episode(actions, labels, obs_len: int = 20) -> EpisodeResult:
    """A learner episode: ``actions`` taken, ``labels[t]`` the expert's action in state t."""
    turns = tuple(Turn(a, f"You arrive at {a[6:]}. " + "x" * obs_len) for a in actions)
    return EpisodeResult("train/g", "pick", False, len(turns), 0.0, "put a mug in desk", "You are in a room.",
                         turns, 0.0, 0.0, 0.0, expert_actions=tuple(labels) + (None,))


def trained_text(w) -> str:
    return "".join(chr(i) for i, m in zip(w.ids, w.action_mask) if m)


def test_labels_survive_the_record_and_reach_the_states():
    ep = labelled_episode(["go to shelf 1", "go to shelf 2"], ["go to shelf 1", "take mug 1 from shelf 1"])
    back = EpisodeResult.from_json(ep.to_json())
    assert back.expert_actions == ep.expert_actions
    assert [s.expert_action for s in back.states()] == ["go to shelf 1", "take mug 1 from shelf 1", None]
    unlabelled = dataclasses.replace(ep, expert_actions=())
    assert "expert_actions" not in unlabelled.to_json()  # records without labels are unchanged
    assert [s.expert_action for s in unlabelled.states()] == [None, None, None]


def test_agreeing_actions_train_in_place_and_each_disagreement_branches_to_the_label():
    actions = ["go to shelf 1", "go to shelf 2", "go to shelf 3", "go to shelf 4"]
    labels = ["go to shelf 1", "take mug 1 from shelf 1", "go to shelf 3", "go to desk 1"]
    ep = labelled_episode(actions, labels)
    states = ep.states()
    assert disagreements(states) == [1, 3]
    main, *branches = encode_relabeled(states, byte_ids)
    assert main.turns == (0, 2)
    assert trained_text(main) == action_segment("go to shelf 1") + action_segment("go to shelf 3")
    assert [b.turns for b in branches] == [(1,), (3,)]
    for b, t in zip(branches, (1, 3)):
        # the branch is exactly what the learner decided from, then the expert's action, which alone is trained
        assert bytes(b.ids).decode() == transcript(states[t]) + action_segment(labels[t])
        assert trained_text(b) == action_segment(labels[t])
        assert not any(b.observation_mask)
    assert len(encode_relabeled(states, byte_ids, max_branches=1)) == 2  # one branch


def test_branches_are_cut_the_way_inference_cuts_the_state():
    n = 30
    ep = labelled_episode([f"go to shelf {t}" for t in range(n)], ["look"] * n, obs_len=40)
    states = ep.states()
    budget, reserve = 1200, 30
    windows = encode_relabeled(states, byte_ids, budget, reserve, max_branches=n)
    branches = [w for w in windows if len(w.turns) == 1 and trained_text(w) == action_segment("look")]
    assert len(branches) == len(windows) == n  # nothing agreed: the windows of what happened train nothing
    for b in branches:
        (t,) = b.turns
        skip = transcript_skip(states[t], len, budget, reserve)
        assert bytes(b.ids).decode() == transcript(states[t], skip) + action_segment("look")
        assert len(b.ids) <= budget


def test_only_the_policy_relabels_and_a_replayed_prefix_never_branches():
    ep = labelled_episode(["go to shelf 1", "go to shelf 2"], ["look", "look"])
    plain = encode_episodes([ep], byte_ids, 10_000)
    assert [w.turns for w in plain] == [(0, 1)]  # the world model and the PRM read what happened
    relabelled = encode_episodes([ep], byte_ids, 10_000, relabel=True)
    assert [w.turns for w in relabelled] == [(0,), (1,)]
    prefixed = encode_episodes([dataclasses.replace(ep, prefix=1)], byte_ids, 10_000, relabel=True)
    assert [w.turns for w in prefixed] == [(1,)]


def test_demo_steps_take_the_label_where_there_is_one():
    from mpr.training.policy import demo_steps

    ep = labelled_episode(["go to shelf 1", "go to shelf 2"], ["look", None])
    adm = (("look", "go to shelf 1", "go to shelf 2"),) * 3
    steps = demo_steps([dataclasses.replace(ep, admissible=adm)])
    assert [(s.num_actions, a) for s, a in steps] == [(0, "look")]  # the unlabelled state is left out


@pytest.mark.games
def test_a_rollout_with_expert_labels_records_the_expert_in_every_state(tmp_path, valid_unseen):
    from mpr.training.rollout import RolloutConfig, load_rollouts, rollout

    config = RolloutConfig(policy="random", split="valid_seen", limit=1, expert_labels=True, workers=0)
    rollout(config, tmp_path / "r", progress=False, echo=lambda _m: None)
    (ep,) = load_rollouts(tmp_path / "r")
    assert len(ep.expert_actions) == ep.num_actions + 1 and ep.expert_actions[-1] is None
    assert ep.expert_actions[0] == "look"  # the expert's first move
    labels = [a for a in ep.expert_actions[:-1] if a is not None]
    assert len(labels) >= ep.num_actions // 2
    assert all(a in adm for a, adm in zip(ep.expert_actions, ep.admissible) if a is not None and a != "look")


def test_branches_are_spread_over_the_disagreements():
    from mpr.training.transcripts import spread

    assert spread(list(range(10)), 3) == [0, 4, 9] and spread([1, 2], 5) == [1, 2] and spread([3, 4], 0) == []
    n = 12
    ep = labelled_episode([f"go to shelf {t}" for t in range(n)], ["look"] * n)
    branches = encode_relabeled(ep.states(), byte_ids, max_branches=4)
    assert [b.turns for b in branches] == [(0,), (4,), (7,), (11,)]
