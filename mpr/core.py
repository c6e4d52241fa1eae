"""The shared vocabulary: immutable states and the five batched interfaces.

Five nouns, one batched verb each::

    Env.step(actions)            -> list[TimeStep]       (the real, stateful game; outer loop only)
    Policy.propose(states, n)    -> list[list[str]]      (n candidate actions per state)
    WorldModel.predict(states, actions) -> list[str]     (next observation per (state, action))
    Scorer.score(states, actions) -> list[float]         (Q(s, a) per pair)
    Planner(roots)               -> list[PlanResult]     (one decision per root state)

Every verb takes lists and returns a list aligned with its input. Planners only
ever see pure values (``State``) and the pure ``WorldModel``; the stateful
``Env`` is driven by the receding-horizon loop in :mod:`mpr.run.episodes`.

Optional verbs are declared here too, as protocols a component may also implement
(checked with ``isinstance``; never looked up by name):

    ScoredPolicy.propose_scored(states, n) -> list[list[(action, logprob)]]  (priors for MCTS)
    OutcomeModel.outcomes(states, actions, observations) -> list[(admissible, won)]
    Counted.counters()                -> dict[str, int]      (fallbacks, misses, ... for summaries)
    Closable.close()                                           (release processes / engines)
    EngineBacked.engine                                        (its model engine, metered by planners)
    Labelled.label                                             (a name results show, e.g. the oracle's)

``mpr.checks`` holds one ``check_*`` function per noun that tests a component against
these contracts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

MAX_EPISODE_ACTIONS = 30
"""The seed paper's cap on actions per ALFWorld episode."""

FALLBACK_ACTION = "look"
"""What a policy says when it has nothing to offer (always admissible in ALFWorld, changes nothing)."""


@dataclass(frozen=True)
class Turn:
    """One action and the observation it produced."""

    action: str
    observation: str


@dataclass(frozen=True)
class State:
    """An immutable agent state: the task plus everything that happened so far.

    Equality and hashing use ``task_id``, ``goal``, ``initial`` and ``turns``
    only — the full history, which is what models condition on. ``admissible``
    (the commands the game accepts here) and ``expert_action`` are facts the
    real environment reveals about a state; simulated states may leave them empty.
    """

    task_id: str
    goal: str
    initial: str
    turns: tuple[Turn, ...] = ()
    admissible: tuple[str, ...] = field(default=(), compare=False)
    expert_action: str | None = field(default=None, compare=False)

    @property
    def observation(self) -> str:
        """The latest observation (the initial one before any action)."""
        return self.turns[-1].observation if self.turns else self.initial

    @property
    def num_actions(self) -> int:
        return len(self.turns)

    def digest(self) -> str:
        """A stable content hash of what models see (task, goal, initial observation, turns);
        equal states have equal digests across processes and runs (unlike ``hash``)."""
        h = hashlib.sha1()
        for part in (self.task_id, self.goal, self.initial, *(x for t in self.turns for x in (t.action, t.observation))):
            h.update(part.encode())
            h.update(b"\0")
        return h.hexdigest()

    def after(
        self,
        action: str,
        observation: str,
        admissible: Sequence[str] = (),
        expert_action: str | None = None,
    ) -> State:
        """The state reached by taking ``action`` and seeing ``observation``."""
        return replace(
            self,
            turns=self.turns + (Turn(action, observation),),
            admissible=tuple(admissible),
            expert_action=expert_action,
        )


@dataclass(frozen=True)
class TimeStep:
    """What the real environment returns from ``reset`` and ``step``.

    ``error`` is set (and ``done`` is True) when the game could not produce a
    step — a crashed or hung worker — so callers can count and report it
    instead of crashing.
    """

    observation: str
    admissible: tuple[str, ...] = ()
    reward: float = 0.0
    done: bool = False
    won: bool = False
    expert_action: str | None = None
    goal: str = ""
    error: str | None = None


@runtime_checkable
class Env(Protocol):
    """A batch of real games, one per slot. Stateful; used by the outer loop only.

    ``step(actions, slots)`` plays ``actions[i]`` in slot ``slots[i]`` and returns
    TimeSteps aligned with ``actions``; an action may be ``mpr.alfworld.env.Reset(task_id)``
    to start a game in that slot, and ``reset(task_ids, slots)`` is a shorthand.
    ``slots`` defaults to ``range(len(...))``.

    ``submit(actions, slots)`` + ``poll()`` are the same requests without waiting
    for all of them: ``poll`` returns ``{slot: TimeStep}`` for the answers that are in
    (at least one while any is outstanding). The episode loop uses them so a slow
    reset never holds the other slots back.
    """

    num_slots: int

    def reset(self, task_ids: Sequence[str], slots: Sequence[int] | None = None) -> list[TimeStep]: ...

    def step(self, actions: Sequence[Any], slots: Sequence[int] | None = None) -> list[TimeStep]: ...

    def submit(self, actions: Sequence[Any], slots: Sequence[int]) -> None: ...

    def poll(self, timeout: float | None = None) -> dict[int, TimeStep]: ...

    def close(self) -> None: ...


@runtime_checkable
class Policy(Protocol):
    """Proposes candidate actions. ``propose(states, n)[i]`` has ``n`` actions for ``states[i]``."""

    def propose(self, states: Sequence[State], n: int = 1) -> list[list[str]]: ...


@runtime_checkable
class WorldModel(Protocol):
    """Predicts observations. ``predict(states, actions)[i]`` follows ``actions[i]`` in ``states[i]``."""

    def predict(self, states: Sequence[State], actions: Sequence[str]) -> list[str]: ...


@runtime_checkable
class Scorer(Protocol):
    """Scores state-action pairs. ``score(states, actions)[i]`` estimates Q(states[i], actions[i])."""

    def score(self, states: Sequence[State], actions: Sequence[str]) -> list[float]: ...


@runtime_checkable
class ScoredPolicy(Protocol):
    """A policy that also gives each proposal its log-probability (MCTS uses them as priors; without
    this verb a planner treats every proposal as equally likely)."""

    def propose_scored(self, states: Sequence[State], n: int = 1) -> list[list[tuple[str, float]]]: ...


@runtime_checkable
class OutcomeModel(Protocol):
    """A world model that describes its predicted steps: ``outcomes(states, actions, observations)[i]``
    is ``(admissible commands after the step, whether the game is won)``. Planners give children of a
    world model without it no admissible commands and no win."""

    def outcomes(self, states: Sequence[State], actions: Sequence[str],
                 observations: Sequence[str]) -> list[tuple[tuple[str, ...], bool]]: ...


@runtime_checkable
class Counted(Protocol):
    """A component that counts its fallbacks and misses: ``counters()`` maps a name to a count
    (summaries report them as ``<part>_<name>``)."""

    def counters(self) -> dict[str, int]: ...


@runtime_checkable
class Closable(Protocol):
    """A component holding processes or engines that ``close()`` releases."""

    def close(self) -> None: ...


@runtime_checkable
class EngineBacked(Protocol):
    """A component that runs on a model engine (``mpr.lm.engine.Engine``) and exposes it as ``engine``:
    planners meter its calls and tokens, and the composition root shares one engine per base model."""

    engine: Any


@runtime_checkable
class Labelled(Protocol):
    """A component with a name to show beside its results (the oracle world model says it is one)."""

    label: str


@dataclass(frozen=True)
class PlanStats:
    """Compute spent on one decision, so planners can be compared at equal budgets.

    A planner call decides many roots with shared batched model calls: ``model_calls`` is the
    number of batched calls the decision took part in; ``requests`` its own (state, action) or
    state items in them; tokens, ``model_seconds`` and ``seconds`` are the call's totals split
    over roots in proportion to their requests (so they add up over roots); ``nodes`` are the
    root's own search nodes; ``cache_hits`` requests answered from the planner's memo.
    """

    model_calls: int = 0
    requests: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    nodes: int = 0
    cache_hits: int = 0
    seconds: float = 0.0
    model_seconds: float = 0.0


@dataclass(frozen=True)
class PlanResult:
    """A planner's decision for one root: the action, its value, alternatives and cost."""

    action: str
    value: float = 0.0
    alternatives: tuple[tuple[str, float], ...] = ()
    stats: PlanStats = PlanStats()
    tree: Any = field(default=None, compare=False)  # the search tree as JSON-able dict, when recorded


@runtime_checkable
class Planner(Protocol):
    """Decides one action per root state: ``planner(roots)[i]`` is the decision for ``roots[i]``."""

    def __call__(self, roots: Sequence[State]) -> list[PlanResult]: ...


def check_aligned(name: str, outputs: Sequence, inputs: Sequence) -> None:
    """Enforce the list-length contract of the batched verbs."""
    if len(outputs) != len(inputs):
        raise ValueError(f"{name} returned {len(outputs)} results for {len(inputs)} inputs")
