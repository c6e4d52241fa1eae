"""What every planner shares: the three models behind one metered, memoized front.

``Models`` wraps a policy, a world model and a scorer. Each of its verbs is one batched call of
the underlying model (or none, when the memo answers everything):

* ``propose(states, n, owners)`` -> ``list[list[Candidate]]``: distinct candidate actions with a
  prior log-probability (0.0 for policies that give none);
* ``predict(states, actions, owners)`` -> ``list[Sim]``: the simulated next state, with the
  commands admissible there and whether the game would be won;
* ``score(states, actions, owners)`` -> ``list[float]``: Q(s, a) from the scorer.

``owners[i]`` names the root that request ``i`` serves; ``begin(num_roots)`` / ``stats()``
attribute calls, tokens and model time to roots (see :class:`mpr.core.PlanStats`). The memo
keys are (state, action) for predictions and scores and (state, n) for proposals; ``State``
equality covers the whole history, so a memo hit is the same question asked again. With
deterministic models cached == uncached (tested).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mpr.core import (
    EngineBacked,
    OutcomeModel,
    PlanStats,
    Policy,
    ScoredPolicy,
    Scorer,
    State,
    WorldModel,
    check_aligned,
)
from mpr.errors import MprError

log = logging.getLogger(__name__)

MEMO_LIMIT = 200_000
"""Entries per memo before it is cleared (a long eval must not grow without bound)."""


@dataclass(frozen=True)
class Candidate:
    action: str
    logprob: float = 0.0  # the policy's log-probability of the action (its prior); 0.0 when unknown


@dataclass(frozen=True)
class Sim:
    """A simulated step's outcome: the child state (with its admissible commands) and a win flag
    (only world models that know the game, like the oracle, ever set it)."""

    state: State
    won: bool = False


def propose_scored(policy: Policy, states: Sequence[State], n: int) -> list[list[tuple[str, float]]]:
    """``policy.propose_scored`` when the policy is a :class:`mpr.core.ScoredPolicy` (actions with
    log-probs), else ``propose`` with log-prob 0.0 for every action."""
    if isinstance(policy, ScoredPolicy):
        return policy.propose_scored(states, n)
    return [[(a, 0.0) for a in row] for row in policy.propose(states, n)]


def simulate(world: WorldModel, states: Sequence[State], actions: Sequence[str]) -> list[Sim]:
    """One ``world.predict`` call, then the child states. A :class:`mpr.core.OutcomeModel` describes
    its outcomes (admissible commands, won) itself — the oracle from the game, the learned model from
    ALFWorld's grammar; children of any other world model get no admissible commands and no win."""
    observations = world.predict(states, actions)
    check_aligned("WorldModel.predict", observations, states)
    if isinstance(world, OutcomeModel):
        facts = world.outcomes(states, actions, observations)
        check_aligned("OutcomeModel.outcomes", facts, states)
    else:
        facts = [((), False)] * len(states)
    return [Sim(s.after(a, o, adm), won) for s, a, o, (adm, won) in zip(states, actions, observations, facts)]


class _Ledger:
    """Per-root accounting of one planner call."""

    def __init__(self, num_roots: int):
        self.num_roots = num_roots
        self.calls = 0
        self.started = time.perf_counter()
        self.requests = [0] * num_roots
        self.hits = [0] * num_roots
        self.nodes = [0] * num_roots
        self.prompt_tokens = [0.0] * num_roots
        self.generated_tokens = [0.0] * num_roots
        self.model_seconds = [0.0] * num_roots


class Models:
    """The policy, world model and scorer a planner uses; metered and (``cache=True``) memoized."""

    def __init__(self, policy: Policy, world: WorldModel | None = None, scorer: Scorer | None = None,
                 cache: bool = True):
        self.policy, self.world, self.scorer, self.cache = policy, world, scorer, cache
        self._proposals: dict[tuple[State, int], list[Candidate]] = {}
        self._sims: dict[tuple[State, str], Sim] = {}
        self._scores: dict[tuple[State, str], float] = {}
        self._engines = {id(m.engine): m.engine for m in (policy, world, scorer)
                         if isinstance(m, EngineBacked) and hasattr(m.engine, "stats")}
        self._ledger = _Ledger(0)

    # -- accounting -------------------------------------------------------------------------
    def begin(self, num_roots: int) -> list[int]:
        """Start accounting for a planner call over ``num_roots`` roots; returns their owner ids."""
        self._ledger = _Ledger(num_roots)
        for memo in (self._proposals, self._sims, self._scores):
            if len(memo) > MEMO_LIMIT:
                memo.clear()
        return list(range(num_roots))

    def add_nodes(self, owners: Sequence[int]) -> None:
        for o in owners:
            self._ledger.nodes[o] += 1

    def stats(self) -> list[PlanStats]:
        """One PlanStats per root of the call started by ``begin``."""
        led = self._ledger
        seconds = time.perf_counter() - led.started
        total = sum(led.requests) or 1
        share = [r / total if sum(led.requests) else 1 / max(1, led.num_roots) for r in led.requests]
        return [PlanStats(model_calls=led.calls, requests=led.requests[i], prompt_tokens=round(led.prompt_tokens[i]),
                          generated_tokens=round(led.generated_tokens[i]), nodes=led.nodes[i], cache_hits=led.hits[i],
                          seconds=seconds * share[i], model_seconds=led.model_seconds[i])
                for i in range(led.num_roots)]

    def _tokens(self) -> tuple[int, int]:
        return (sum(e.stats.prompt_tokens for e in self._engines.values()),
                sum(e.stats.generated_tokens for e in self._engines.values()))

    def _call(self, fn: Callable[[], Any], owners: Sequence[int]) -> Any:
        """Run one batched model call and charge its time and tokens to ``owners`` (one per item)."""
        led = self._ledger
        before, t0 = self._tokens(), time.perf_counter()
        out = fn()
        seconds, after = time.perf_counter() - t0, self._tokens()
        led.calls += 1
        n = len(owners)
        for o in owners:
            led.requests[o] += 1
            led.model_seconds[o] += seconds / n
            led.prompt_tokens[o] += (after[0] - before[0]) / n
            led.generated_tokens[o] += (after[1] - before[1]) / n
        return out

    def _memoized(self, memo: dict, keys: list, owners: Sequence[int], compute: Callable[[list[int]], list]) -> list:
        """Answer ``keys`` from ``memo``; the misses (deduplicated) go to ``compute`` in one call."""
        if len(owners) != len(keys):
            raise ValueError("owners and requests differ in length")
        todo: dict[Any, int] = {}
        for i, k in enumerate(keys):
            if self.cache and (k in memo or k in todo):  # asked before, or twice in this call
                self._ledger.hits[owners[i]] += 1
            else:
                todo[k if self.cache else i] = i
        if todo:
            idx = list(todo.values())
            results = self._call(lambda: compute(idx), [owners[i] for i in idx])
            if self.cache:
                memo.update(zip(todo.keys(), results))
            else:
                fresh = dict(zip(idx, results))
                return [fresh[i] for i in range(len(keys))]
        return [memo[k] for k in keys]

    # -- the three verbs ---------------------------------------------------------------------
    def propose(self, states: Sequence[State], n: int, owners: Sequence[int]) -> list[list[Candidate]]:
        """Up to ``n`` distinct candidates per state (first occurrence kept, prior = its log-prob)."""
        def compute(idx: list[int]) -> list[list[Candidate]]:
            rows = propose_scored(self.policy, [states[i] for i in idx], n)
            check_aligned("Policy.propose", rows, idx)
            out = []
            for row in rows:
                seen: dict[str, float] = {}
                for a, lp in row:
                    seen.setdefault(a, lp)
                out.append([Candidate(a, lp) for a, lp in seen.items()])
            return out

        return self._memoized(self._proposals, [(s, n) for s in states], owners, compute)

    def predict(self, states: Sequence[State], actions: Sequence[str], owners: Sequence[int]) -> list[Sim]:
        if self.world is None:
            raise MprError("this planner needs a world model (--world CKPT, or the default model)")
        world = self.world
        return self._memoized(self._sims, list(zip(states, actions)), owners,
                              lambda idx: simulate(world, [states[i] for i in idx], [actions[i] for i in idx]))

    def score(self, states: Sequence[State], actions: Sequence[str], owners: Sequence[int]) -> list[float]:
        if self.scorer is None:
            raise MprError("this planner needs a scorer (--prm CKPT, or the default judge)")
        scorer = self.scorer

        def compute(idx: list[int]) -> list[float]:
            out = scorer.score([states[i] for i in idx], [actions[i] for i in idx])
            check_aligned("Scorer.score", out, idx)
            return [float(v) for v in out]

        return self._memoized(self._scores, list(zip(states, actions)), owners, compute)


def first_best(values: Sequence[float]) -> int:
    """Index of the largest value; ties go to the earliest (the policy's order)."""
    best = 0
    for i, v in enumerate(values):
        if v > values[best]:
            best = i
    return best
