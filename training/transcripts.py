"""Whole-episode training data: one token sequence per episode (or per window of a long one).

An episode's transcript (:func:`mpr.lm.prompts.transcript_segments`) is encoded segment by segment
— the ids a cached engine computes turn after turn — and each token is tagged: action tokens carry
the policy's loss, observation tokens the world model's, and each action segment's last token is
where a PRM's value head reads Q(s, a). One forward pass over the sequence trains every step of the
episode, instead of one row per (state, action) that re-reads the whole history.

An episode that carries the handcoded expert's action in every state (DAgger: the learner played,
the expert labelled) trains toward the labels: the learner's transcript trains the actions the
expert agrees with, and each state where they differ adds a branch, the transcript up to that state
followed by the expert's action, which alone carries the loss (``encode_relabeled``).

Long episodes are cut the way inference cuts them (``transcript_skip``: the oldest turns dropped in
blocks): the turns that saw the same cut share one window, whose text is exactly what each of them
was decided from. ``bucket`` groups sequences of similar length so little compute goes to padding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mpr.core import State, Turn
from mpr.lm.prompts import TRANSCRIPT_RESERVE, transcript_segments, transcript_skip

Encode = Callable[[str], list[int]]


@dataclass(frozen=True)
class EncodedEpisode:
    """One training sequence. ``ids``: token ids, segment by segment; ``action_mask[i]`` /
    ``observation_mask[i]``: whether token i is in an action the policy chose / an observation the
    game printed after one; ``action_ends[k]``: the index of the last token of the k-th trained
    action, taken at turn ``turns[k]`` of the episode (len(action_ends) == len(turns))."""

    ids: tuple[int, ...]
    action_mask: tuple[bool, ...]
    observation_mask: tuple[bool, ...]
    action_ends: tuple[int, ...]
    turns: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.ids)


def encode_states(states: Sequence[State], encode: Encode, max_tokens: int | None = None, reserve: int = 0,
                  first_trained: int = 0) -> list[EncodedEpisode]:
    """The windows of one episode, given its states initial first (``states[t]`` is the state before
    action t; the last one is the final state). Actions before turn ``first_trained`` (a replayed
    walkthrough prefix) are context only. ``max_tokens``/``reserve``: the cut rule inference uses."""
    encode = _memoized(encode)  # every state's cut re-measures the same segments
    return [w for w in _windows(states[-1], _cuts(states, encode, max_tokens, reserve), encode, first_trained)
            if w.turns]


def _cuts(states: Sequence[State], encode: Encode, max_tokens: int | None, reserve: int) -> list[int]:
    """How many oldest turns inference drops at each decision state (``transcript_skip``)."""
    count = (lambda text: len(encode(text))) if max_tokens is not None else None
    return [transcript_skip(s, count, max_tokens, reserve) for s in states[:-1]]


def _windows(final: State, skips: Sequence[int], encode: Encode, first_trained: int,
             trainable: set[int] | None = None) -> list[EncodedEpisode]:
    """One window per distinct cut, training the turns decided under it (those in ``trainable``
    only, when given)."""
    windows = []
    for skip in sorted(set(skips)):
        turns = {t for t, k in enumerate(skips) if k == skip}
        trained = turns if trainable is None else turns & trainable
        windows.append(_encode_window(final, skip, max(turns) + 1, trained, encode, first_trained))
    return windows


def spread(items: Sequence[int], n: int) -> list[int]:
    """At most ``n`` of ``items``, evenly spaced, first and last included (deterministic)."""
    if len(items) <= n:
        return list(items)
    if n <= 1:
        return list(items[:n])
    return [items[round(i * (len(items) - 1) / (n - 1))] for i in range(n)]


def _memoized(encode: Encode) -> Encode:
    memo: dict[str, list[int]] = {}

    def cached(text: str) -> list[int]:
        if text not in memo:
            memo[text] = encode(text)
        return memo[text]

    return cached


def encode_episodes(episodes: Sequence[Any], encode: Encode, max_tokens: int, relabel: bool = False,
                    max_branches: int = 8) -> list[EncodedEpisode]:
    """The training sequences of recorded episodes (``mpr.run.episodes.EpisodeResult``), in order: each
    cut by the policy's own rule (``TRANSCRIPT_RESERVE`` tokens kept for the action), its replayed
    walkthrough prefix context only. ``relabel``: episodes with expert labels train toward them
    (``encode_relabeled``, at most ``max_branches`` branches each); the policy's data only."""
    out = []
    for ep in episodes:
        if relabel and ep.expert_actions:
            out += encode_relabeled(ep.states(), encode, max_tokens, TRANSCRIPT_RESERVE, ep.prefix, max_branches)
        else:
            out += encode_states(ep.states(), encode, max_tokens, TRANSCRIPT_RESERVE, first_trained=ep.prefix)
    return out


def disagreements(states: Sequence[State]) -> list[int]:
    """The turns where the action taken is not the expert's label (states without a label skipped)."""
    return [t for t, (s, nxt) in enumerate(zip(states, states[1:]))
            if s.expert_action is not None and nxt.turns[t].action != s.expert_action]


def encode_relabeled(states: Sequence[State], encode: Encode, max_tokens: int | None = None, reserve: int = 0,
                     first_trained: int = 0, max_branches: int = 8) -> list[EncodedEpisode]:
    """A labelled episode's sequences: its windows with only the turns whose action is the expert's
    label trained, then one branch per disagreement (at most ``max_branches``, spread evenly over
    the disagreements from ``first_trained`` on): state t's transcript (cut as inference cuts it) +
    the expert's action at t, the branch's only trained action (``turns == (t,)``). States with no
    label train nothing.

    Spread, not first: the expert explores in a random order, so early disagreements are mostly
    another order of the same search; a losing learner's later ones are where it loops or passes
    the goal object by, which is what the labels are for."""
    final = states[-1]
    encode = _memoized(encode)
    skips = _cuts(states, encode, max_tokens, reserve)
    agreed = {t for t, s in enumerate(states[:-1]) if s.expert_action == final.turns[t].action}
    windows = _windows(final, skips, encode, first_trained, agreed)
    branch_turns = spread([t for t in disagreements(states) if t >= first_trained], max_branches)
    for t in branch_turns:
        label = states[t].expert_action
        assert label is not None
        branch = State(final.task_id, final.goal, final.initial, final.turns[:t] + (Turn(label, ""),))
        windows.append(_encode_window(branch, skips[t], t + 1, {t}, encode, first_trained, last_observation=False))
    return [w for w in windows if w.turns]


def _encode_window(final: State, skip: int, end: int, trained: set[int], encode: Encode,
                   first_trained: int, last_observation: bool = True) -> EncodedEpisode:
    """Turns ``skip`` .. ``end - 1`` of the final state's transcript, as one tagged sequence
    (without the last turn's observation when ``last_observation`` is False)."""
    state = State(final.task_id, final.goal, final.initial, final.turns[:end])
    segments = transcript_segments(state, skip)
    if not last_observation:
        segments = segments[:-1]
    head = 2 if skip else 1
    ids: list[int] = []
    act: list[bool] = []
    obs: list[bool] = []
    ends, turns = [], []
    for k, segment in enumerate(segments):
        seg_ids = encode(segment)
        turn = skip + (k - head) // 2 if k >= head else -1
        is_action = k >= head and (k - head) % 2 == 0
        chosen = turn in trained and turn >= first_trained
        ids += seg_ids
        act += [is_action and chosen] * len(seg_ids)
        observed = _printed_tokens(seg_ids, state.turns[turn].observation, encode) if turn >= 0 else 0
        obs += [k >= head and not is_action and turn in trained and i < observed for i in range(len(seg_ids))]
        if is_action and chosen and seg_ids:
            ends.append(len(ids) - 1)
            turns.append(turn)
    return EncodedEpisode(tuple(ids), tuple(act), tuple(obs), tuple(ends), tuple(turns))


def decision_offset(encode: Encode) -> int:
    """How many tokens every action segment starts with before its first word (the ``\\n> ``
    marker, as this tokenizer splits it): the common prefix of two segments with different verbs."""
    from mpr.lm.prompts import action_segment

    a, b = encode(action_segment("look")), encode(action_segment("go to desk 1"))
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def decision_mask(window: EncodedEpisode, offset: int) -> list[bool]:
    """``mask[i]``: token i is the first word token of a trained action — ``offset`` tokens into
    each run of action tokens (``decision_offset``); len == len(window)."""
    acts = window.action_mask
    mask = [False] * len(window)
    for i, is_action in enumerate(acts):
        starts_run = is_action and (i == 0 or not acts[i - 1])
        if starts_run and i + offset < len(acts) and all(acts[i:i + offset + 1]):
            mask[i + offset] = True
    return mask


def _printed_tokens(segment_ids: list[int], observation: str, encode: Encode) -> int:
    """How many leading tokens of an observation segment are what the game printed (the world
    model's targets), not the task restated after it; all of them when the tokenizer merged the two."""
    printed = encode(observation)
    return len(printed) if segment_ids[: len(printed)] == printed else len(segment_ids)


def bucket(lengths: Sequence[int], max_batch_tokens: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (longest first) whose padded size —
    rows x longest row — stays within ``max_batch_tokens`` (a longer sequence gets a batch alone)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:
        if batches and lengths[batches[-1][0]] * (len(batches[-1]) + 1) <= max_batch_tokens:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def padding_share(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """The share of a padded batch's tokens that are padding, over all ``batches``."""
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    return 1 - sum(lengths) / padded if padded else 0.0


def bucketed(windows: Sequence[EncodedEpisode], max_batch_tokens: int) -> tuple[list[list[int]], str]:
    """``bucket`` over the windows' lengths, and a line saying what they hold (tokens, buckets, padding)."""
    lengths = [len(w) for w in windows]
    buckets = bucket(lengths, max_batch_tokens)
    return buckets, (f"{sum(lengths):,} tokens in {len(buckets)} buckets "
                     f"({100 * padding_share(lengths, buckets):.1f}% padding)")
