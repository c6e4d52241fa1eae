"""Prompt rendering (shared prefixes, truncation, parsing) and the LLM policy on the tiny model."""

import pytest

from mpr.core import State
from mpr.errors import ConfigError
from mpr.learned.policy import LLMPolicy, PolicyConfig
from mpr.lm.prompts import ChatFormat, normalize_action, parse_action, policy_prompt

ADMISSIBLE = ("go to desk 1", "go to shelf 1", "look", "inventory", "take mug 1 from desk 1")


def make_state(turns=0):
    s = State("t", "put a mug in desk.", "You are in the middle of a room.", admissible=ADMISSIBLE)
    for k in range(turns):
        s = s.after(f"go to shelf {k}", f"You arrive at shelf {k}. On the shelf {k}, you see nothing.", ADMISSIBLE)
    return s


def test_siblings_share_the_prompt_prefix_up_to_their_last_turn():
    chat = ChatFormat.chatml()
    parent = make_state(2)
    a = policy_prompt(parent.after("look", "obs A", ADMISSIBLE), chat)
    b = policy_prompt(parent.after("inventory", "obs B", ADMISSIBLE), chat)
    shared = policy_prompt(parent, chat).split("\n\nAdmissible actions")[0]
    assert a.startswith(shared) and b.startswith(shared) and a != b


def test_truncation_keeps_task_initial_and_latest_turns():
    chat = ChatFormat.chatml()
    state = make_state(20)
    count = len  # characters as a stand-in token counter
    full = policy_prompt(state, chat)
    cut = policy_prompt(state, chat, count_tokens=count, max_tokens=len(full) - 300)
    assert len(cut) <= len(full) - 300
    assert "Your task is to: put a mug in desk." in cut and "You are in the middle of a room." in cut
    assert "shelf 19" in cut and "> go to shelf 0\n" not in cut and "earlier turns omitted]" in cut
    assert policy_prompt(state, chat, count_tokens=count, max_tokens=len(full)) == full


def test_score_mode_prompt_ends_with_action_prefix():
    assert policy_prompt(make_state(), ChatFormat.chatml(), "score").endswith("ACTION:")


@pytest.mark.parametrize("output, action, matched", [
    ("REASON: the mug is there.\nACTION: take mug 1 from desk 1", "take mug 1 from desk 1", True),
    ("REASON: x\nACTION:  Go To Desk 1.", "go to desk 1", True),
    ("go to shelf 1\nmore text", "go to shelf 1", True),
    ("ACTION: fly away", "fly away", False),
    ("", "", False),
])
def test_parse_action(output, action, matched):
    parsed = parse_action(output, ADMISSIBLE)
    assert (parsed.action, parsed.matched) == (action, matched)


def test_normalize_action():
    assert normalize_action('  > "Go  to Desk 1." ') == "go to desk 1"


def test_score_policy_ranks_admissible_actions_batched_like_single(tiny_engine):
    policy = LLMPolicy(tiny_engine, PolicyConfig(mode="score"))
    states = [make_state(0), make_state(3)]
    batched = policy.propose(states, 3)
    assert all(len(r) == 3 and set(r) <= set(ADMISSIBLE) and len(set(r)) == 3 for r in batched)
    assert batched == [policy.propose([s], 3)[0] for s in states]
    ranked = policy.rank(states[:1])[0]
    assert [a for a, _ in ranked[:3]] == batched[0]
    assert [v for _, v in ranked] == sorted((v for _, v in ranked), reverse=True)
    assert len(policy.propose(states[:1], 10)[0]) == len(ADMISSIBLE)  # at most the admissible actions


def test_sample_policy_counts_parse_misses(tiny_engine):
    policy = LLMPolicy(tiny_engine, PolicyConfig(mode="sample", max_new_tokens=8))
    out = policy.propose([make_state(0), make_state(1)], 4)
    assert [len(r) for r in out] == [4, 4] and all(a for r in out for a in r)
    assert policy.parsed == 8 and 0 <= policy.parse_misses <= 8
    # An untrained model almost never writes an admissible action.
    assert policy.parse_misses >= 1


def test_states_without_admissible_actions_are_sampled(tiny_engine):
    policy = LLMPolicy(tiny_engine, PolicyConfig(mode="score", max_new_tokens=4))
    simulated = State("t", "g", "room")
    (row,) = policy.propose([simulated], 2)
    assert len(row) == 2 and policy.parsed == 2


def test_policy_config_is_validated():
    with pytest.raises(ConfigError):
        PolicyConfig(mode="beam")
    with pytest.raises(ConfigError):
        PolicyConfig(top_p=2.0)


def test_score_sample_draws_are_seeded_per_state_not_per_batch(tiny_engine):
    states = [make_state(k) for k in range(4)]
    # A high temperature flattens the untrained model's peaked distribution, so draws vary.
    policy = LLMPolicy(tiny_engine, PolicyConfig(mode="score-sample", temperature=100.0, seed=3))
    batched = policy.propose(states, 5)
    single = [policy.propose([s], 5)[0] for s in reversed(states)][::-1]
    assert batched == single
    assert all(a in ADMISSIBLE for row in batched for a in row)
    other = LLMPolicy(tiny_engine, PolicyConfig(mode="score-sample", temperature=100.0, seed=4)).propose(states, 5)
    assert other != batched  # another seed, other draws
    greedy = LLMPolicy(tiny_engine, PolicyConfig(mode="score-sample", temperature=0.0)).propose(states, 2)
    top = LLMPolicy(tiny_engine, PolicyConfig(mode="score")).propose(states, 1)
    assert [row[0] for row in greedy] == [row[0] for row in top]


def test_steered_exploration_swaps_the_system_prompt(tiny_engine):
    from mpr.lm.prompts import EXPLORE_SYSTEM

    state = make_state(1)
    always = LLMPolicy(tiny_engine, PolicyConfig(steer_prob=1.0))
    assert EXPLORE_SYSTEM in always.prompt(state, "score") and always.steered == 1
    never = LLMPolicy(tiny_engine, PolicyConfig(steer_prob=0.0))
    assert EXPLORE_SYSTEM not in never.prompt(state, "score") and never.steered == 0
    half = LLMPolicy(tiny_engine, PolicyConfig(steer_prob=0.5))
    for k in range(40):
        half.prompt(make_state(k), "score")
    assert 8 < half.steered < 32
    with pytest.raises(ConfigError):
        PolicyConfig(steer_prob=1.5)
