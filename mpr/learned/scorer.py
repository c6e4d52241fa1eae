"""The process reward model as a ``Scorer``: ``score(states, actions)[i]`` = Q(states[i], actions[i]).

One engine call per ``score`` call. AgentPRM checkpoints (kind ``prm``) output sigmoid(logit) in
[0, 1] (a discounted success estimate); InversePRM checkpoints output the raw logit Q(s, a).
Inputs: ``prompt_format`` "chat" renders :func:`mpr.lm.prompts.prm_text` (the value head reads its
last token); "transcript" (a PRM trained on whole episodes) reads the head at the last token of the
action segment after the state's transcript, cut as the policy cuts it — the position and the ids
it was trained on — with a state's candidates sharing one encoding of its transcript.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from mpr.core import FALLBACK_ACTION, Scorer, State, check_aligned
from mpr.errors import MprError
from mpr.lm.engine import Engine, EngineConfig, GroupedValues, SegmentValues, regroup, tokenizer_of
from mpr.lm.prompts import JUDGE_ANSWERS, ChatFormat, action_segment, fitted_transcript, judge_prompt, prm_text


class PRMScorer:
    def __init__(self, engine: Engine, output: str = "sigmoid", share_prefix: bool = True,
                 prompt_format: str = "chat"):
        if output not in ("sigmoid", "raw"):
            raise ValueError(f"output must be 'sigmoid' or 'raw', got {output!r}")
        if prompt_format not in ("chat", "transcript"):
            raise ValueError(f"prompt_format must be 'chat' or 'transcript', got {prompt_format!r}")
        if prompt_format == "transcript" and not isinstance(engine, SegmentValues):
            raise MprError("a transcript PRM needs an engine that values transcript segments (--backend hf)")
        self.engine, self.output, self.share_prefix, self.prompt_format = engine, output, share_prefix, prompt_format

    @classmethod
    def from_checkpoint(cls, path: str, engine: EngineConfig | None = None) -> PRMScorer:
        import dataclasses

        from mpr.lm.backends import make_engine
        from mpr.lm.checkpoints import SCORER_KINDS, load_checkpoint

        ckpt = load_checkpoint(path, *SCORER_KINDS, flag="--prm")
        config = dataclasses.replace(engine or EngineConfig(), model=str(ckpt.path))
        return cls(make_engine(config), "raw" if ckpt.kind == "inverse-prm" else "sigmoid",
                   prompt_format=ckpt.meta.get("prompt_format", "chat"))

    def score(self, states: Sequence[State], actions: Sequence[str]) -> list[float]:
        if len(states) != len(actions):
            raise ValueError("score: states and actions differ in length")
        if self.prompt_format == "transcript":
            raw = self._transcript_values(states, actions)
        else:
            texts = [prm_text(s, a, self.engine.count_tokens, self.engine.config.max_length)
                     for s, a in zip(states, actions)]
            raw = self._values(texts, actions)
        out = raw if self.output == "raw" else [sigmoid(v) for v in raw]
        check_aligned("Scorer", out, states)
        return out

    def _transcript_values(self, states: Sequence[State], actions: Sequence[str]) -> list[float]:
        """One ``value_segments`` call: the pairs grouped by state, each state's transcript once."""
        groups: dict[str, int] = {}
        firsts: list[State] = []
        conts: list[list[str]] = []
        where = []
        for s, a in zip(states, actions):
            g = groups.setdefault(s.digest(), len(groups))
            if g == len(firsts):
                firsts.append(s)
                conts.append([])
            where.append((g, len(conts[g])))
            conts[g].append(action_segment(a))
        values = self.engine.value_segments([fitted_transcript(s, self.engine) for s in firsts], conts)
        return [values[g][k] for g, k in where]

    def _values(self, texts: list[str], actions: Sequence[str]) -> list[float]:
        """Value-head outputs; siblings (same state, different actions) share one encoding of the state
        when the engine can do it (``value_groups``), else every text is encoded in full."""
        if not isinstance(self.engine, GroupedValues) or not self.share_prefix:
            return self.engine.value(texts)
        prefixes, conts, where = split_shared(texts, actions)
        values = self.engine.value_groups(prefixes, conts)
        return [values[g][k] for g, k in where]


class JudgeScorer:
    """A zero-shot scorer from any instruct LM: Q(s, a) = P(" yes") / (P(" yes") + P(" no")) when
    asked whether ``a`` brings the player closer to the goal. One ``Engine.score`` call per
    ``score`` call (both answers share their prompt). The default when no PRM is trained."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.chat = ChatFormat.from_tokenizer(tokenizer_of(engine))

    def score(self, states: Sequence[State], actions: Sequence[str]) -> list[float]:
        if len(states) != len(actions):
            raise ValueError("score: states and actions differ in length")
        prompts = [judge_prompt(s, a, self.chat, self.engine.count_tokens, self.engine.config.max_length - 4)
                   for s, a in zip(states, actions)]
        rows = self.engine.score(prompts, [list(JUDGE_ANSWERS)] * len(prompts))
        out = [sigmoid(yes.logprob - no.logprob) for yes, no in rows]
        check_aligned("Scorer", out, states)
        return out


def split_shared(texts: Sequence[str], actions: Sequence[str]) -> tuple[list[str], list[list[str]], list[tuple[int, int]]]:
    """Group PRM inputs by their text before `` <action>`` (siblings share it): (prefixes, continuations
    per prefix, each once, and for each input its (group, position)). An input that does not end in its
    action is a prefix of its own with an empty continuation."""
    index: dict[str, int] = {}  # prefix -> group
    positions: list[dict[str, int]] = []  # per group: continuation -> position
    where: list[tuple[int, int]] = []
    for text, action in zip(texts, actions):
        cut = len(text) - len(action) - 1 if action and text.endswith(" " + action) else len(text)
        prefix, cont = text[:cut], text[cut:]
        g = index.setdefault(prefix, len(index))
        if g == len(positions):
            positions.append({})
        where.append((g, positions[g].setdefault(cont, len(positions[g]))))  # the same pair twice: scored once
    return list(index), [list(p) for p in positions], where


def score_candidates(scorer: Scorer, states: Sequence[State], candidates: Sequence[Sequence[str]]) -> list[list[float]]:
    """``[i][j]``: the score of ``candidates[i][j]`` in ``states[i]`` — one ``score`` call for all pairs."""
    flat_states = [s for s, cs in zip(states, candidates) for _ in cs]
    flat_actions = [a for cs in candidates for a in cs]
    return regroup(scorer.score(flat_states, flat_actions) if flat_actions else [], candidates)


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


class ScorerPolicy:
    """A policy that ranks each state's admissible actions by a scorer (greedy on the PRM).

    ``propose(states, n)[i]``: the top ``n`` admissible actions of ``states[i]``; one ``score`` call
    for all states. States with no admissible list fall back to ``look`` (counted).
    """

    def __init__(self, scorer: "PRMScorer"):
        self.scorer = scorer
        self.fallbacks = 0

    def counters(self) -> dict[str, int]:
        return {"fallbacks": self.fallbacks}

    def propose(self, states: Sequence[State], n: int = 1) -> list[list[str]]:
        scores = score_candidates(self.scorer, states, [s.admissible for s in states])
        out = []
        for s, sc in zip(states, scores):
            if not sc:
                self.fallbacks += 1
                out.append([FALLBACK_ACTION] * n)
            else:  # best first; ties keep the admissible order
                order = sorted(range(len(sc)), key=lambda k: (-sc[k], k))
                out.append([s.admissible[k] for k in order[:n]])
        return out
