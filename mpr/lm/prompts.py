"""Every prompt mpr sends to a model is rendered here, so siblings share byte-identical prefixes.

A state renders as: the task, then the history of (action, observation) turns, then the
current observation and the admissible actions. Two states that differ only in their last
turn render to strings whose common prefix covers everything before that turn, which is what
lets engines reuse KV caches across siblings.

Policy prompt (the seed paper's format): the model answers ``REASON: ... ACTION: ...``.
For ranking actions by log-probability ("score" mode) the assistant turn is pre-filled up to
``ACTION:`` and each admissible action is scored as the continuation `` <action>``.

Truncation rule: when a prompt would exceed the token budget, whole turns are dropped from the
oldest end of the history (never the task, the initial room description, the current
observation or the action list), and a line ``[N earlier turns omitted]`` marks the cut.

Transcripts (``transcript_segments``): one append-only text per episode that policy, world model
and PRM all read, with no system prompt and no admissible list::

    Your task is to: <goal>\n<initial observation>      the head
    \n> <action>\n                                       an action segment (what a policy writes)
    <observation>                                        an observation segment (what a world model writes)
    ...

The text of a state is a byte prefix of the text of every state after it and of every simulated
child, and each segment is tokenized on its own (ids are concatenated), so token ids already
computed for a state are never computed again: training sequences, scoring and a KV cache carried
across turns all see the same ids. Candidate actions are scored as ``action_segment(a)``, which
ends with the newline that closes the action. Truncation (``transcript_skip``) keeps the head and
drops the oldest turns in blocks, so the kept text stays a stable prefix for many turns at a time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mpr.core import State

POLICY_SYSTEM = (
    "You are an agent in a household text game. Each turn, think briefly about what to do, then pick exactly "
    "one of the admissible actions. Answer in the form:\nREASON: <one sentence>\nACTION: <an admissible action>"
)
# Steered exploration (the seed paper's exploration option): with some probability a rollout
# policy sees this system prompt instead, nudging it off its usual choices.
EXPLORE_SYSTEM = (
    "You are an agent in a household text game, exploring. Prefer actions you have not tried yet in this game: "
    "visit unexplored places, open closed receptacles, examine new objects. Answer in the form:\n"
    "REASON: <one sentence>\nACTION: <an admissible action>"
)
WORLD_SYSTEM = (
    "You simulate a household text game. Given the task, the history and the player's next action, "
    "write exactly the observation the game prints next."
)
PRM_HEADER = "Rate the last action."
# The zero-shot judge (the default scorer when no PRM is trained): an instruct LM answers
# whether the action helps; Q = P(yes) / (P(yes) + P(no)).
JUDGE_SYSTEM = "You judge a player of a household text game."
JUDGE_QUESTION = "Does the last action bring the player closer to completing the task? Answer yes or no."
JUDGE_ANSWERS = (" yes", " no")
REASON_PREFIX = "REASON:"
ACTION_PREFIX = "ACTION:"
CHATML = ("<|im_start|>", "<|im_end|>")
SCORE_REASON = f"{REASON_PREFIX} choose the best admissible action."


@dataclass(frozen=True)
class ChatFormat:
    """How chat messages become text for one tokenizer: ``render(messages) -> str`` with the
    generation prompt appended. Built from the tokenizer's chat template when it has one."""

    render: Callable[[list[dict[str, str]]], str]

    @staticmethod
    def chatml() -> ChatFormat:
        def render(messages: list[dict[str, str]]) -> str:
            body = "".join(f"{CHATML[0]}{m['role']}\n{m['content']}{CHATML[1]}\n" for m in messages)
            return body + f"{CHATML[0]}assistant\n"

        return ChatFormat(render)

    @staticmethod
    def from_tokenizer(tokenizer: object) -> ChatFormat:
        if getattr(tokenizer, "chat_template", None):
            def render(messages: list[dict[str, str]]) -> str:
                return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)  # type: ignore[attr-defined]

            return ChatFormat(render)
        return ChatFormat.chatml()


def render_turns(state: State, skip: int = 0) -> str:
    """Task, initial observation and history, oldest first; ``skip`` drops the oldest turns."""
    lines = [f"Your task is to: {state.goal}", "", f"Observation: {state.initial}"]
    if skip:
        lines.append(f"[{skip} earlier turns omitted]")
    for turn in state.turns[skip:]:
        lines += [f"> {turn.action}", f"Observation: {turn.observation}"]
    return "\n".join(lines)


def render_admissible(actions: Sequence[str]) -> str:
    return "Admissible actions: " + ", ".join(actions) if actions else "Admissible actions: (unknown)"


def render_turns_with_action(state: State, action: str, skip: int = 0) -> str:
    """The history plus the action about to be taken (world-model and PRM inputs)."""
    return f"{render_turns(state, skip)}\n> {action}"


def policy_user_message(state: State, skip: int = 0) -> str:
    return f"{render_turns(state, skip)}\n\n{render_admissible(state.admissible)}\nWhat is your next action?"


def policy_prompt(
    state: State,
    chat: ChatFormat,
    mode: str = "sample",
    count_tokens: Callable[[str], int] | None = None,
    max_tokens: int | None = None,
    explore: bool = False,
) -> str:
    """The policy prompt for ``state`` (``explore``: the steered-exploration system prompt).

    mode "sample": ends where the model starts writing (it should answer ``REASON: ... ACTION: ...``).
    mode "score": ends with ``ACTION:`` so candidates are scored as `` <action>`` continuations.
    With ``count_tokens`` and ``max_tokens``, the oldest turns are dropped until it fits.
    """
    if mode not in ("sample", "score"):
        raise ValueError(f"mode must be 'sample' or 'score', got {mode!r}")
    suffix = "" if mode == "sample" else f"{SCORE_REASON}\n{ACTION_PREFIX}"

    def render(skip: int) -> str:
        messages = [{"role": "system", "content": EXPLORE_SYSTEM if explore else POLICY_SYSTEM},
                    {"role": "user", "content": policy_user_message(state, skip)}]
        return chat.render(messages) + suffix

    return fit(render, len(state.turns), count_tokens, max_tokens)


def policy_target(action: str) -> str:
    """The assistant answer a policy is fine-tuned to give for ``action``. A "sample"-mode prompt
    plus this text starts with the "score"-mode prompt, so SFT trains both modes at once."""
    return f"{SCORE_REASON}\n{ACTION_PREFIX}{action_continuation(action)}"


def world_prompt(state: State, action: str, chat: ChatFormat, count_tokens: Callable[[str], int] | None = None,
                 max_tokens: int | None = None) -> str:
    """The world-model prompt: the model continues it with the next observation, then end-of-turn."""
    def render(skip: int) -> str:
        messages = [{"role": "system", "content": WORLD_SYSTEM},
                    {"role": "user", "content": render_turns_with_action(state, action, skip)}]
        return chat.render(messages)

    return fit(render, len(state.turns), count_tokens, max_tokens)


def judge_prompt(state: State, action: str, chat: ChatFormat, count_tokens: Callable[[str], int] | None = None,
                 max_tokens: int | None = None) -> str:
    """The zero-shot judge's prompt; the answers in ``JUDGE_ANSWERS`` are scored after it."""
    def render(skip: int) -> str:
        messages = [{"role": "system", "content": JUDGE_SYSTEM},
                    {"role": "user", "content": f"{render_turns_with_action(state, action, skip)}\n\n{JUDGE_QUESTION}"}]
        return chat.render(messages) + "Answer:"

    return fit(render, len(state.turns), count_tokens, max_tokens)


def prm_text(state: State, action: str, count_tokens: Callable[[str], int] | None = None,
             max_tokens: int | None = None) -> str:
    """The process reward model's input for (state, action); its scalar head reads the last token.
    ``action=""`` renders the state alone (reference value models)."""
    def render(skip: int) -> str:
        body = render_turns(state, skip) + (f"\n> {action}" if action else "")
        return f"{PRM_HEADER}\n{body}"

    return fit(render, len(state.turns), count_tokens, max_tokens)


def fit(render: Callable[[int], str], num_turns: int, count_tokens: Callable[[str], int] | None,
        max_tokens: int | None) -> str:
    """``render(skip)`` with the smallest ``skip`` (oldest turns dropped) that fits the budget."""
    text = render(0)
    if count_tokens is None or max_tokens is None or count_tokens(text) <= max_tokens:
        return text
    lo, hi = 1, num_turns  # binary search on the number of dropped turns
    best = render(num_turns)
    while lo <= hi:
        mid = (lo + hi) // 2
        candidate = render(mid)
        if count_tokens(candidate) <= max_tokens:
            best, hi = candidate, mid - 1
        else:
            lo = mid + 1
    return best


# -- transcripts -----------------------------------------------------------------------------------

TRANSCRIPT_BLOCK = 8
"""Turns dropped at a time when a transcript must be cut (see ``transcript_skip``)."""
TRANSCRIPT_RESERVE = 32
"""Tokens a policy's transcript keeps free for the action scored or written after it; training
cuts its windows by the same rule."""
TRANSCRIPT_PROMPT_END = "\n> "
"""What a policy that writes its action (sample mode) continues: the start of an action segment."""


def transcript_head(state: State) -> str:
    """The part of a transcript that never changes: the task and the first observation."""
    return f"Your task is to: {state.goal}\n{state.initial}"


def action_segment(action: str) -> str:
    """An action as the transcript writes it; also the continuation a candidate is scored as."""
    return f"\n> {action}\n"


def observation_segment(observation: str, goal: str) -> str:
    """An observation as the transcript writes it: what the game printed, then the task restated.
    The restatement puts the goal beside every decision, so a small model matches the object it
    sees (or the receptacle it is at) against the goal a few tokens back instead of hundreds; it
    costs ~34 tokens a turn with the ALFWorld tokenizer (+45% tokens per epoch, docs/training.md,
    "The default policy")."""
    return f"{observation}\n(task: {goal})"


def omitted_segment(turns: int) -> str:
    return f"\n[{turns} earlier turns omitted]"


def transcript_segments(state: State, skip: int = 0) -> list[str]:
    """The transcript of ``state`` as its segments: the head, (when ``skip`` > 0) the omission mark,
    then an action and an observation segment per turn after the first ``skip``. Their
    concatenation is the transcript; ``len == 1 + (skip > 0) + 2 * (len(turns) - skip)``."""
    out = [transcript_head(state)] + ([omitted_segment(skip)] if skip else [])
    for turn in state.turns[skip:]:
        out += [action_segment(turn.action), observation_segment(turn.observation, state.goal)]
    return out


def transcript(state: State, skip: int = 0) -> str:
    return "".join(transcript_segments(state, skip))


def transcript_skip(state: State, count_tokens: Callable[[str], int] | None, max_tokens: int | None,
                    reserve: int = 0, block: int = TRANSCRIPT_BLOCK) -> int:
    """How many of the oldest turns to drop so the transcript, plus ``reserve`` tokens for what is
    scored or generated after it, fits ``max_tokens``: the smallest multiple of ``block`` that fits
    (all turns when none does). Dropping whole blocks keeps the cut, and so the cached prefix, the
    same for up to ``block`` successive turns."""
    if count_tokens is None or max_tokens is None:
        return 0
    n = len(state.turns)
    for skip in range(0, n + block, block):
        skip = min(skip, n)
        if sum(map(count_tokens, transcript_segments(state, skip))) + reserve <= max_tokens or skip == n:
            return skip
    return n


def fitted_transcript(state: State, engine: Any, reserve: int = TRANSCRIPT_RESERVE) -> list[str]:
    """The segments of ``state``'s transcript cut to ``engine``'s context (``engine.config.max_length``),
    ``reserve`` tokens kept for what follows it: the cut whole-episode training uses. Tokens are
    counted segment by segment where the engine can (HF: from its memo, so a segment is tokenized once)."""
    count = getattr(engine, "count_segment_tokens", None) or engine.count_tokens
    return transcript_segments(state, transcript_skip(state, count, engine.config.max_length, reserve))


def action_continuation(action: str) -> str:
    """The text scored after a "score"-mode prompt."""
    return f" {action}"


_SPACES = re.compile(r"\s+")
_EDGES = re.compile(r"^[\s>\"'`]+|[\s.!;:,\"'`]+$")


def normalize_action(text: str) -> str:
    """Lowercase, collapse whitespace, strip quotes, trailing punctuation and a leading '>'."""
    text = _SPACES.sub(" ", text.strip().lower())
    return _EDGES.sub("", text)


@dataclass(frozen=True)
class ParsedAction:
    action: str  # the admissible action matched, or the raw parsed text on a miss
    matched: bool


def parse_action(output: str, admissible: Sequence[str]) -> ParsedAction:
    """Map model output to an admissible action: the text after the last ``ACTION:`` (or the
    first line if there is none), matched exactly, then after normalization."""
    i = output.rfind(ACTION_PREFIX)
    raw = output[i + len(ACTION_PREFIX):] if i != -1 else output
    raw = raw.strip().splitlines()[0].strip() if raw.strip() else ""
    if raw in admissible:
        return ParsedAction(raw, True)
    norm = normalize_action(raw)
    by_norm = {normalize_action(a): a for a in admissible}
    if norm in by_norm:
        return ParsedAction(by_norm[norm], True)
    return ParsedAction(norm, False)
