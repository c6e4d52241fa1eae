"""Toy planning domains with known optima: deterministic policy, world model and scorer.

A state's position is the tuple of actions taken; the world model's observation is the name of
the node reached. Every model counts its batched calls and items, so tests can check that
planners make one call per phase per iteration.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Sequence

from mpr.core import State

# The trap: "bait" looks best to the scorer (0.6) but leads to a dead end; the only goal is
# reached by path -> step -> open door. Best-of-N (no lookahead) takes the bait.
TRAP: dict[tuple[str, ...], dict[str, float]] = {
    (): {"bait": 0.6, "path": 0.5, "wait": 0.2},
    ("bait",): {"climb": 0.1, "dig": 0.05},
    ("bait", "climb"): {"climb": 0.1},
    ("bait", "dig"): {"dig": 0.05},
    ("path",): {"step": 0.55, "rest": 0.3},
    ("path", "rest"): {"step": 0.3},
    ("path", "step"): {"open door": 1.0, "knock": 0.4},
    ("path", "step", "knock"): {"open door": 0.9},
    ("wait",): {"wait": 0.2},
}
TRAP_GOAL = ("path", "step", "open door")


def position(state: State) -> tuple[str, ...]:
    return tuple(t.action for t in state.turns)


def root(task_id: str = "toy") -> State:
    return State(task_id, goal="reach the goal", initial="start", admissible=tuple(TRAP[()]))


class Counting:
    def __init__(self) -> None:
        self.calls = 0
        self.items = 0
        self.batches: list[int] = []

    def _count(self, n: int) -> None:
        self.calls += 1
        self.items += n
        self.batches.append(n)


class TrapPolicy(Counting):
    """Proposes the node's actions in table order with uniform log-probs."""

    def propose(self, states: Sequence[State], n: int = 1) -> list[list[str]]:
        return [[a for a, _ in row] for row in self.propose_scored(states, n)]

    def propose_scored(self, states: Sequence[State], n: int = 1) -> list[list[tuple[str, float]]]:
        self._count(len(states))
        return [[(a, 0.0) for a in list(TRAP.get(position(s), {}))[:n]] for s in states]


class TrapWorld(Counting):
    def predict(self, states: Sequence[State], actions: Sequence[str]) -> list[str]:
        self._count(len(states))
        return ["/".join(position(s) + (a,)) for s, a in zip(states, actions)]

    def outcomes(self, states, actions, observations):
        return [(tuple(TRAP.get(position(s) + (a,), {})), position(s) + (a,) == TRAP_GOAL)
                for s, a in zip(states, actions)]


class TrapScorer(Counting):
    def score(self, states: Sequence[State], actions: Sequence[str]) -> list[float]:
        self._count(len(states))
        return [TRAP.get(position(s), {}).get(a, 0.0) for s, a in zip(states, actions)]


# -- random trees: seeded priors and scores, for invariance tests ---------------------------------


def _u(*parts: object) -> float:
    return random.Random(zlib.crc32("|".join(map(str, parts)).encode())).random()


class TreePolicy(Counting):
    """``branching`` actions per node (``a0``, ``a1``, ...) with seeded log-probs, best first."""

    def __init__(self, branching: int = 3, seed: int = 0):
        super().__init__()
        self.branching, self.seed = branching, seed

    def propose(self, states, n=1):
        return [[a for a, _ in row] for row in self.propose_scored(states, n)]

    def propose_scored(self, states, n=1):
        self._count(len(states))
        out = []
        for s in states:
            acts = [(f"a{k}", -3 * _u(self.seed, "prior", s.task_id, position(s), k)) for k in range(self.branching)]
            out.append(sorted(acts, key=lambda x: -x[1])[:n])
        return out


class TreeWorld(Counting):
    def predict(self, states, actions):
        self._count(len(states))
        return [f"{s.task_id}:{'/'.join(position(s) + (a,))}" for s, a in zip(states, actions)]


class TreeScorer(Counting):
    def __init__(self, seed: int = 0):
        super().__init__()
        self.seed = seed

    def score(self, states, actions):
        self._count(len(states))
        return [_u(self.seed, "q", s.task_id, position(s), a) for s, a in zip(states, actions)]


def tree_root(task_id: str) -> State:
    return State(task_id, goal="toy", initial=f"{task_id}:start", admissible=("a0", "a1", "a2"))
