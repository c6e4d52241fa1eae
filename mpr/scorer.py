"""The process reward model as a ``Scorer``: ``score(states, actions)[i]`` = Q(states[i], actions[i]).

One ``Engine.value`` call per ``score`` call. AgentPRM checkpoints (kind ``prm``) output
sigmoid(logit) in [0, 1] (a discounted success estimate); InversePRM checkpoints output the raw
logit Q(s, a). Inputs are rendered by :func:`mpr.prompts.prm_text`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from mpr.core import State, check_aligned
from mpr.engine import Engine, EngineConfig
from mpr.prompts import prm_text


class PRMScorer:
    def __init__(self, engine: Engine, output: str = "sigmoid"):
        if output not in ("sigmoid", "raw"):
            raise ValueError(f"output must be 'sigmoid' or 'raw', got {output!r}")
        self.engine, self.output = engine, output

    @classmethod
    def from_checkpoint(cls, path: str, engine: EngineConfig | None = None) -> PRMScorer:
        import dataclasses

        from mpr.checkpoints import SCORER_KINDS, load_checkpoint
        from mpr.engine import make_engine

        ckpt = load_checkpoint(path, *SCORER_KINDS, flag="--prm")
        config = dataclasses.replace(engine or EngineConfig(), model=str(ckpt.path))
        return cls(make_engine(config), "raw" if ckpt.kind == "inverse-prm" else "sigmoid")

    def score(self, states: Sequence[State], actions: Sequence[str]) -> list[float]:
        if len(states) != len(actions):
            raise ValueError("score: states and actions differ in length")
        texts = [prm_text(s, a, self.engine.count_tokens, self.engine.config.max_length) for s, a in zip(states, actions)]
        raw = self.engine.value(texts)
        out = raw if self.output == "raw" else [sigmoid(v) for v in raw]
        check_aligned("Scorer", out, states)
        return out


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

    def propose(self, states: Sequence[State], n: int = 1) -> list[list[str]]:
        flat = [(i, a) for i, s in enumerate(states) for a in s.admissible]
        scores = self.scorer.score([states[i] for i, _ in flat], [a for _, a in flat]) if flat else []
        ranked: list[list[tuple[float, int, str]]] = [[] for _ in states]
        for k, ((i, a), v) in enumerate(zip(flat, scores)):
            ranked[i].append((-v, k, a))
        out = []
        for r in ranked:
            if not r:
                self.fallbacks += 1
                out.append(["look"] * n)
            else:
                out.append([a for _, _, a in sorted(r)[:n]])
        return out
