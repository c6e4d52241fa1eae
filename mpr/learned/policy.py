"""The LLM policy: candidate actions from a language model, batched across states.

Two modes:

* ``score``: rank the state's admissible actions by the log-probability the model gives
  `` <action>`` after the policy prompt (one ``Engine.score`` call for all states). Returns
  the top ``min(n, #admissible)`` actions. States with no known admissible actions (simulated
  ones) are sampled instead.
* ``score-sample``: rank as in ``score``, then draw ``n`` actions (with replacement) from
  softmax(log-prob / temperature). The draw is seeded per (seed, state), so it does not depend
  on how states are batched — rollouts with it are reproducible and resumable exactly.
* ``sample``: sample ``n`` answers per state (one ``Engine.generate`` call) and parse each into
  an admissible action (exact, then normalized match). A miss keeps the parsed text — the game
  answers "Nothing happens." — or ``look`` when nothing was parsed; misses are counted.

``steer_prob``: steered exploration — with this probability (seeded per state) a state is
prompted with the exploration system prompt instead of the usual one.

``prompt_format``: "chat" (the prompts above) or "transcript" (a policy trained on whole episodes:
the state's transcript with no system prompt and no admissible list; candidates are scored as the
action segment continuing it, and sample mode writes the action after ``\n> ``; see
``mpr.lm.prompts``). A policy checkpoint says which format it was trained on.
"""

from __future__ import annotations

import logging
import math
import random
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mpr.config import require
from mpr.core import FALLBACK_ACTION, State
from mpr.lm.engine import Engine, SamplingConfig, SegmentScoring, tokenizer_of
from mpr.lm.prompts import (
    TRANSCRIPT_PROMPT_END,
    ChatFormat,
    action_continuation,
    action_segment,
    fitted_transcript,
    parse_action,
    policy_prompt,
)

log = logging.getLogger(__name__)

MODES = ("score", "score-sample", "sample")
PROMPT_FORMATS = ("chat", "transcript")


RANK_BY = ("auto", "action", "prefix")
"""How score mode orders the admissible actions: "action" by each action's own log-prob; "prefix"
word by word — the first word whose admissible completions carry the most probability, then the
next word among those, and so on (see ``prefix_order``); "auto": prefix for transcript policies
(imitating an exploring expert splits the mass of `go to` over ~20 places, so by action a
transcript policy says the never-split `look` forever; docs/training.md, "The default policy"),
action for chat prompts."""


def prefix_order(actions: Sequence[str], logprobs: Sequence[float]) -> list[int]:
    """Indices of ``actions`` best first, word by word: ``actions[i]`` ranks above ``actions[j]`` when,
    at the first word where they differ, the admissible actions continuing ``i``'s prefix carry more
    probability (summed) than those continuing ``j``'s; the action's own log-prob breaks ties.

    Why: an imitated explorer spreads its probability over many equivalent actions (``go to`` twenty
    receptacles, ``take`` either of two mugs), so the single most probable action is often the one
    that was never split ("look") although the policy would almost surely go somewhere. Ranking by
    prefix mass first picks what the policy would do ("go"), then where; it is greedy decoding
    restricted to the admissible actions, with whole words as steps."""
    if not actions:
        return []
    top = max(logprobs)
    weights = [math.exp(v - top) for v in logprobs]
    words = [tuple(a.split()) for a in actions]
    mass: dict[tuple[str, ...], float] = {}
    for w, q in zip(words, weights):
        for k in range(1, len(w) + 1):
            mass[w[:k]] = mass.get(w[:k], 0.0) + q
    return sorted(range(len(actions)),
                  key=lambda i: (tuple(-mass[words[i][:k]] for k in range(1, len(words[i]) + 1)), -logprobs[i]))


@dataclass(frozen=True)
class PolicyConfig:
    mode: str = "score"
    temperature: float = 0.7
    top_p: float = 0.95
    max_new_tokens: int = 48
    seed: int = 0
    length_normalize: bool = False
    steer_prob: float = 0.0
    prompt_format: str = "chat"
    rank_by: str = "auto"

    def __post_init__(self) -> None:
        require(self.rank_by in RANK_BY, f"rank_by must be one of {RANK_BY}, got {self.rank_by!r}")
        require(self.mode in MODES, f"policy mode must be one of {MODES}, got {self.mode!r}")
        require(0 <= self.steer_prob <= 1, f"steer_prob must be in [0, 1], got {self.steer_prob}")
        require(self.prompt_format in PROMPT_FORMATS,
                f"prompt_format must be one of {PROMPT_FORMATS}, got {self.prompt_format!r}")
        require(self.prompt_format == "chat" or self.steer_prob == 0,
                "steered exploration needs the chat prompt format (its system prompt)")
        SamplingConfig(self.temperature, self.top_p, self.max_new_tokens)  # validates the sampling fields

    @property
    def ranking(self) -> str:
        """``rank_by`` with "auto" resolved for this prompt format: "action" or "prefix"."""
        if self.rank_by != "auto":
            return self.rank_by
        return "prefix" if self.prompt_format == "transcript" else "action"


class LLMPolicy:
    """``propose(states, n)[i]``: candidate actions for ``states[i]`` from one batched model call per mode."""

    def __init__(self, engine: Engine, config: PolicyConfig = PolicyConfig()):
        self.engine = engine
        self.config = config
        self.chat = ChatFormat.from_tokenizer(tokenizer_of(engine))
        self.parse_misses = 0
        self.parsed = 0
        self.steered = 0
        self._calls = 0

    def counters(self) -> dict[str, int]:
        return {"parse_misses": self.parse_misses, "parsed": self.parsed}

    def prompt(self, state: State, mode: str) -> str:
        if self.config.prompt_format == "transcript":
            return "".join(self.transcript(state)) + (TRANSCRIPT_PROMPT_END if mode == "sample" else "")
        return policy_prompt(state, self.chat, mode, self.engine.count_tokens, self.engine.config.max_length,
                             explore=self._steered(state))

    def transcript(self, state: State) -> list[str]:
        """The segments of ``state``'s transcript, cut to the engine's context (see mpr.lm.prompts)."""
        return fitted_transcript(state, self.engine)

    def _rng(self, state: State, salt: str) -> random.Random:
        return random.Random(zlib.crc32(f"{salt}:{self.config.seed}:{state.digest()}".encode()))

    def _steered(self, state: State) -> bool:
        p = self.config.steer_prob
        steered = p > 0 and self._rng(state, "steer").random() < p
        self.steered += steered
        return steered

    def propose(self, states: Sequence[State], n: int = 1) -> list[list[str]]:
        return [[a for a, _ in row] for row in self.propose_scored(states, n)]

    def propose_scored(self, states: Sequence[State], n: int = 1) -> list[list[tuple[str, float]]]:
        """``propose`` with each action's log-probability under the policy (the planners' priors);
        sampled answers (mode "sample", or states without admissible actions) get 0.0."""
        out: list[list[tuple[str, float]]] = [[] for _ in states]
        ranking = self.config.mode in ("score", "score-sample")
        scored = [i for i, s in enumerate(states) if ranking and s.admissible]
        sampled = [i for i in range(len(states)) if i not in set(scored)]
        if scored:
            ranked = self.rank([states[i] for i in scored])
            for i, r in zip(scored, ranked):
                if self.config.mode == "score":
                    out[i] = r[:n]
                else:
                    logprob = dict(r)
                    out[i] = [(a, logprob[a]) for a in self._draw(states[i], r, n)]
        if sampled:
            for i, acts in zip(sampled, self._sample([states[i] for i in sampled], n)):
                out[i] = [(a, 0.0) for a in acts]
        return out

    def rank(self, states: Sequence[State]) -> list[list[tuple[str, float]]]:
        """Admissible actions of each state with their log-probs, best first (stable on ties)."""
        scores = self._score_admissible(states)
        ranked = []
        for s, sc in zip(states, scores):
            vals = [x.mean_logprob if self.config.length_normalize else x.logprob for x in sc]
            if self.config.ranking == "prefix":
                order = prefix_order(s.admissible, vals)
            else:
                order = sorted(range(len(vals)), key=lambda k: -vals[k])
            ranked.append([(s.admissible[k], vals[k]) for k in order])
        return ranked

    def _score_admissible(self, states: Sequence[State]) -> list[list[Any]]:
        """One score call: each state's admissible actions as continuations of its prompt."""
        if self.config.prompt_format == "chat":
            return self.engine.score([self.prompt(s, "score") for s in states],
                                     [[action_continuation(a) for a in s.admissible] for s in states])
        cands = [[action_segment(a) for a in s.admissible] for s in states]
        segments = [self.transcript(s) for s in states]
        if isinstance(self.engine, SegmentScoring):
            return self.engine.score_segments(segments, cands)
        return self.engine.score(["".join(seg) for seg in segments], cands)

    def _draw(self, state: State, ranked: list[tuple[str, float]], n: int) -> list[str]:
        """``n`` draws from softmax(log-prob / temperature) over the ranked actions (argmax at T=0)."""
        t = self.config.temperature
        if t == 0:
            return [ranked[0][0]] * n
        top = max(v for _, v in ranked)
        weights = [math.exp((v - top) / t) for _, v in ranked]
        return self._rng(state, "draw").choices([a for a, _ in ranked], weights=weights, k=n)

    def _sample(self, states: Sequence[State], n: int) -> list[list[str]]:
        c = self.config
        stop = ("\n",) if c.prompt_format == "transcript" else ("\n\n", "<|im_end|>")
        sampling = SamplingConfig(c.temperature, c.top_p, c.max_new_tokens, stop=stop,
                                  seed=c.seed + self._calls)
        self._calls += 1
        gens = self.engine.generate([self.prompt(s, "sample") for s in states], n, sampling)
        out = []
        for s, row in zip(states, gens):
            acts = []
            for g in row:
                parsed = parse_action(g.text, s.admissible)
                self.parsed += 1
                if not parsed.matched:
                    self.parse_misses += 1
                    log.debug("unparsable policy output for %s: %r", s.task_id, g.text[:80])
                acts.append(parsed.action or FALLBACK_ACTION)
            out.append(acts)
        return out
