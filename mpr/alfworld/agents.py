"""Reference policies that need no model: walkthrough, handcoded expert, random.

They implement :class:`mpr.core.Policy` and are pure functions of the state
(plus a seed), so batched calls equal one-at-a-time calls and results do not
depend on how episodes are spread over workers.

* ``walkthrough``: replays the game file's winning command list (an upper bound).
* ``expert``: ALFWorld's handcoded expert, whose next action the real env
  reports in ``State.expert_action``.
* ``random``: uniform over the admissible commands, seeded per (seed, task, step).

When a policy has nothing to offer (the walkthrough is exhausted, the expert
gave no action), it falls back to ``look`` and counts it in ``fallbacks``.
"""

from __future__ import annotations

import logging
import random
import zlib
from collections.abc import Sequence

from mpr.alfworld.data import load_walkthrough, resolve_task
from mpr.core import FALLBACK_ACTION, State
from mpr.errors import MprError

log = logging.getLogger(__name__)

class _CountingFallback:
    def __init__(self) -> None:
        self.fallbacks = 0

    def counters(self) -> dict[str, int]:
        return {"fallbacks": self.fallbacks}

    def _fallback(self, state: State, why: str) -> str:
        self.fallbacks += 1
        log.info("%s: %s at step %d; falling back to %r", type(self).__name__, why, state.num_actions, FALLBACK_ACTION)
        return FALLBACK_ACTION


class WalkthroughPolicy(_CountingFallback):
    """Plays the game's stored walkthrough, one command per step."""

    def __init__(self, data_dir: str | None = None):
        super().__init__()
        self.data_dir = data_dir
        self._walkthroughs: dict[str, list[str]] = {}

    def propose(self, states: Sequence[State], n: int = 1) -> list[list[str]]:
        return [[self._next(s)] * n for s in states]

    def _next(self, state: State) -> str:
        if state.task_id not in self._walkthroughs:
            self._walkthroughs[state.task_id] = load_walkthrough(resolve_task(state.task_id, self.data_dir))
        plan = self._walkthroughs[state.task_id]
        if state.num_actions < len(plan):
            return plan[state.num_actions]
        return self._fallback(state, "walkthrough exhausted")


class ExpertPolicy(_CountingFallback):
    """ALFWorld's handcoded expert (its action is computed by the env and carried in the state)."""

    def propose(self, states: Sequence[State], n: int = 1) -> list[list[str]]:
        return [[s.expert_action or self._fallback(s, "no expert action")] * n for s in states]


class RandomPolicy(_CountingFallback):
    """Uniformly random admissible commands, a pure function of (seed, task id, step)."""

    def __init__(self, seed: int = 0):
        super().__init__()
        self.seed = seed

    def propose(self, states: Sequence[State], n: int = 1) -> list[list[str]]:
        return [self._sample(s, n) for s in states]

    def _sample(self, state: State, n: int) -> list[str]:
        if not state.admissible:
            return [self._fallback(state, "no admissible commands known")] * n
        rng = random.Random(zlib.crc32(f"{self.seed}:{state.task_id}:{state.num_actions}".encode()))
        return [rng.choice(state.admissible) for _ in range(n)]


REFERENCE_AGENTS = ("walkthrough", "expert", "random")
"""The agents that need no model, by name (the bench's baselines)."""


def make_policy(name: str, seed: int = 0, data_dir: str | None = None):
    """A builtin reference policy by name."""
    if name == "walkthrough":
        return WalkthroughPolicy(data_dir)
    if name == "expert":
        return ExpertPolicy()
    if name == "random":
        return RandomPolicy(seed)
    raise MprError(f"unknown agent {name!r}; choose one of: {', '.join(REFERENCE_AGENTS)}")
