"""The transcript format (one append-only text per episode) and whole-episode training sequences."""

from __future__ import annotations

import pytest

from mpr.core import State
from mpr.lm.prompts import (
    TRANSCRIPT_BLOCK,
    action_segment,
    observation_segment,
    transcript,
    transcript_head,
    transcript_segments,
    transcript_skip,
)
from mpr.training.transcripts import bucket, decision_mask, decision_offset, encode_states, padding_share


def byte_ids(text: str) -> list[int]:
    return list(text.encode())


def episode(n: int, obs_len: int = 20) -> list[State]:
    s = State("t", "put a mug in desk", "You are in the middle of a room.")
    states = [s]
    for t in range(n):
        s = s.after(f"go to shelf {t}", f"You arrive at shelf {t}. " + "x" * obs_len)
        states.append(s)
    return states


def test_a_state_is_a_byte_prefix_of_every_later_state_and_of_its_children():
    states = episode(6)
    texts = [transcript(s) for s in states]
    assert all(b.startswith(a) for a, b in zip(texts, texts[1:]))
    child = states[3].after("look", "Nothing happens.")
    assert transcript(child) == texts[3] + action_segment("look") + observation_segment("Nothing happens.", child.goal)
    assert transcript(states[0]) == transcript_head(states[0])
    assert "Admissible" not in texts[-1] and "REASON" not in texts[-1]


def test_segments_alternate_actions_and_observations():
    s = episode(3)[-1]
    segs = transcript_segments(s)
    assert len(segs) == 1 + 2 * 3 and segs[1] == "\n> go to shelf 0\n" and segs[2].startswith("You arrive")
    cut = transcript_segments(s, skip=2)
    assert len(cut) == 1 + 1 + 2 and cut[1] == "\n[2 earlier turns omitted]" and cut[2] == "\n> go to shelf 2\n"


def test_cuts_come_in_blocks_and_keep_the_head():
    states = episode(40)
    count = len
    budget = 900
    skips = [transcript_skip(s, count, budget) for s in states]
    assert skips == sorted(skips) and skips[0] == 0 and skips[-1] > 0
    assert all(k % TRANSCRIPT_BLOCK == 0 for k in skips)
    assert all(len(transcript(s, k)) <= budget for s, k in zip(states, skips))
    assert all(transcript(s, k).startswith(transcript_head(s)) for s, k in zip(states, skips))
    # the cut changes at most once per block of turns: a stable cached prefix in between
    changes = sum(a != b for a, b in zip(skips, skips[1:]))
    assert changes <= len(states) // TRANSCRIPT_BLOCK
    assert transcript_skip(states[5], None, None) == 0


def test_an_episode_is_one_sequence_tagged_by_segment():
    states = episode(4)
    (e,) = encode_states(states, byte_ids)
    assert bytes(e.ids).decode() == transcript(states[-1])
    assert len(e.action_ends) == len(e.turns) == 4 and e.turns == (0, 1, 2, 3)
    text = bytes(e.ids).decode()
    actions = "".join(chr(i) for i, m in zip(e.ids, e.action_mask) if m)
    assert actions == "".join(action_segment(f"go to shelf {t}") for t in range(4))
    observed = "".join(chr(i) for i, m in zip(e.ids, e.observation_mask) if m)
    assert observed == "".join(s.turns[-1].observation for s in states[1:])
    assert all(text[k] == "\n" and e.action_mask[k] for k in e.action_ends)  # the newline closing each action
    assert not any(a and o for a, o in zip(e.action_mask, e.observation_mask))


def test_replayed_prefix_is_context_not_target():
    (e,) = encode_states(episode(4), byte_ids, first_trained=2)
    assert e.turns == (2, 3)
    actions = "".join(chr(i) for i, m in zip(e.ids, e.action_mask) if m)
    assert actions == action_segment("go to shelf 2") + action_segment("go to shelf 3")


def test_long_episodes_become_windows_that_each_turn_was_decided_from():
    states = episode(30, obs_len=40)
    budget, reserve = 1200, 30
    windows = encode_states(states, byte_ids, max_tokens=budget, reserve=reserve)
    assert len(windows) > 1
    assert [t for w in windows for t in w.turns] == list(range(30))  # every action trained exactly once
    for w in windows:
        text = bytes(w.ids).decode()
        for end, turn in zip(w.action_ends, w.turns):
            skip = transcript_skip(states[turn], len, budget, reserve)
            decided_from = transcript(states[turn], skip) + action_segment(states[turn + 1].turns[-1].action)
            assert text[: end + 1] == decided_from


def test_bucketing_groups_similar_lengths_within_the_budget():
    lengths = [100, 900, 120, 880, 95, 400, 410, 2000]
    batches = bucket(lengths, 1000)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(max(lengths[i] for i in b) * len(b) <= 1000 or len(b) == 1 for b in batches)
    assert padding_share(lengths, batches) < padding_share(lengths, [list(range(len(lengths)))])
    assert padding_share([5, 5], [[0, 1]]) == 0.0


@pytest.mark.models
def test_segment_ids_decode_to_the_transcript_with_a_real_tokenizer(tiny_engine):
    states = episode(5)
    (e,) = encode_states(states, tiny_engine.encode)
    assert tiny_engine.tokenizer.decode(list(e.ids)) == transcript(states[-1])
    # the ids of a state are a prefix of the ids of the next one: nothing is encoded twice
    (shorter,) = encode_states(states[:4], tiny_engine.encode)
    assert e.ids[: len(shorter.ids)] == shorter.ids


@pytest.mark.models
def test_segment_scoring_is_batch_invariant_and_matches_joined_ids(tiny_engine):
    states = episode(3)
    segs = [transcript_segments(s) for s in states]
    cands = [[action_segment("look"), action_segment("go to desk 1")]] * len(states)
    batched = tiny_engine.score_segments(segs, cands)
    single = [tiny_engine.score_segments([s], [c])[0] for s, c in zip(segs, cands)]
    flat = lambda rows: [x.logprob for r in rows for x in r]  # noqa: E731
    assert flat(batched) == pytest.approx(flat(single), abs=1e-4)
    ids = [[t for seg in s for t in tiny_engine.encode(seg)] for s in segs]
    reference = tiny_engine._score_ids(ids, [[tiny_engine.encode(c) for c in cs] for cs in cands])
    assert flat(batched) == pytest.approx(flat(reference), abs=1e-4)


def test_the_decision_mask_marks_each_trained_actions_first_word():
    states = episode(3)
    states.append(states[-1].after("take mug 1 from shelf 2", "You pick up the mug 1 from the shelf 2."))
    (window,) = encode_states(states, byte_ids)
    offset = decision_offset(byte_ids)
    assert offset == len("\n> ")  # bytes: the marker, then the verb's first letter
    mask = decision_mask(window, offset)
    assert len(mask) == len(window)
    assert bytes(t for t, m in zip(window.ids, mask) if m).decode() == "gggt"
    assert all(window.action_mask[i] for i, m in enumerate(mask) if m)
    untrained = encode_states(states, byte_ids, first_trained=2)[0]  # a replayed prefix: no decisions
    assert bytes(t for t, m in zip(untrained.ids, decision_mask(untrained, offset)) if m).decode() == "gt"


@pytest.mark.models
def test_transcript_loss_is_the_action_loss_plus_the_weighted_text_loss(tiny_model_dir):
    """Checked against transformers' own label-masked loss, once on the action tokens and once on
    the rest: lm_weight 0 is the action loss alone, lm_weight w adds w times the rest's mean."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mpr.training.common import pad_right
    from mpr.training.policy import transcript_loss
    from mpr.training.sft import IGNORE

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    encode = lambda text: tok(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    windows = encode_states(episode(4), encode) + encode_states(episode(2, obs_len=3), encode)
    ids, mask = pad_right([w.ids for w in windows], tok.pad_token_id)

    offset = decision_offset(encode)
    decisions = lambda w: decision_mask(w, offset)  # noqa: E731

    def reference(keep, marks=lambda w: w.action_mask) -> float:
        labels, _ = pad_right([[t if keep(a) else IGNORE for t, a in zip(w.ids, marks(w))] for w in windows],
                              tok.pad_token_id, fill=IGNORE)
        return float(model(input_ids=ids, attention_mask=mask, labels=labels).loss)

    with torch.no_grad():
        action, text = reference(lambda a: a), reference(lambda a: not a)
        verbs = reference(lambda d: d, decisions)
        alone, n = transcript_loss(model, windows, tok.pad_token_id)
        mixed, _ = transcript_loss(model, windows, tok.pad_token_id, lm_weight=0.5)
        decided, _ = transcript_loss(model, windows, tok.pad_token_id, decision_weight=2.0, decisions=decisions)
    assert n == int(mask.sum())
    assert float(alone) == pytest.approx(action, rel=1e-4)
    assert float(mixed) == pytest.approx(action + 0.5 * text, rel=1e-4)
    assert text > 0 and float(mixed) > float(alone)
    assert float(decided) == pytest.approx(action + 2.0 * verbs, rel=1e-4) and verbs != pytest.approx(action)


@pytest.mark.models
def test_transcript_policy_keeps_the_policy_contract(tiny_engine):
    from mpr.checks import check_policy
    from mpr.learned.policy import LLMPolicy, PolicyConfig

    adm = ("go to desk 1", "look", "inventory")
    states = [s.after("look", "A room.", adm) for s in episode(3)]
    for mode in ("score", "score-sample"):
        check_policy(LLMPolicy(tiny_engine, PolicyConfig(mode=mode, prompt_format="transcript", seed=2)), states)
    sampled = LLMPolicy(tiny_engine, PolicyConfig(mode="sample", prompt_format="transcript", max_new_tokens=6))
    check_policy(sampled, states, n=2, deterministic=False)
    assert sampled.prompt(states[0], "sample").endswith("\n> ")


@pytest.mark.models
def test_whole_episode_sft_trains_a_policy_that_plays(expert_rollouts, tmp_path):
    from tests.conftest import mpr

    from mpr.lm.checkpoints import load_checkpoint

    out = tmp_path / "PI"
    mpr("train", "policy", "--sft", "--demos", expert_rollouts, "--out", out, "--preset", "tiny",
        "--set", "prompt_format=transcript", "--no-progress")
    meta = load_checkpoint(out, "policy").meta
    m = meta["metrics"]
    assert meta["prompt_format"] == "transcript" and m["train_sequences"] >= 1 and m["train_examples"] >= 5
    assert 0 <= m["padding_share"] < 1 and m["steps"] >= 1
    again = mpr("train", "policy", "--sft", "--demos", expert_rollouts, "--out", out, "--preset", "tiny",
                "--set", "prompt_format=transcript", "--no-progress")
    assert "already trained" in again.stdout
    played = mpr("eval", "--agent", "policy", "--policy", out, "--split", "valid_seen", "--limit", 2,
                 "--max-actions", 3, "--workers", 0, "--no-progress")
    assert "ran 2 episodes" in played.stdout


@pytest.mark.models
def test_cache_carried_across_turns_equals_encoding_in_full(tiny_model_dir):
    """Turn after turn, and for siblings of one state, scoring that continues cached transcripts
    gives the scores of encoding every prompt in full (fp32, within 1e-4), and computes fewer tokens."""
    from mpr.lm.engine import EngineConfig
    from mpr.lm.hf_engine import HFEngine

    config = dict(model=str(tiny_model_dir), dtype="fp32", threads=1, batch_size=8, max_length=2048)
    cached = HFEngine(EngineConfig(**config))
    full = HFEngine(EngineConfig(**config, transcript_cache_tokens=0))
    states = episode(6)
    siblings = [states[3].after(a, "Nothing happens.") for a in ("look", "inventory")]
    cands = [action_segment(a) for a in ("look", "go to desk 1", "take mug 1 from desk 1")] + [""]
    flat = lambda rows: [x.logprob for r in rows for x in r]  # noqa: E731
    for batch in [[s] for s in states] + [siblings, siblings]:
        segs = [transcript_segments(s) for s in batch]
        assert flat(cached.score_segments(segs, [cands] * len(batch))) == pytest.approx(
            flat(full.score_segments(segs, [cands] * len(batch))), abs=1e-4)
    assert cached.transcripts.hits >= len(states) + 1  # every turn after the first, and the siblings
    assert cached.stats.prompt_tokens < 0.5 * full.stats.prompt_tokens
