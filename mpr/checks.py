"""Contracts as code: one ``check_*`` per noun of :mod:`mpr.core`, for anyone who writes a component.

Each checker calls the component's batched verb on the states it is given and raises
:class:`ContractError` (an ``AssertionError``) naming the broken rule; it returns nothing when the
component keeps the contract. What every checker holds a component to:

* the verb takes lists and returns a list aligned with them (an empty batch gives an empty list);
* the items have the documented types;
* with ``deterministic=True`` (the default for the pure ones): one batched call equals one call per
  item, and a second call equals the first — what lets planners memoize and batch freely;
* the optional verbs it declares (:class:`mpr.core.ScoredPolicy`, :class:`mpr.core.OutcomeModel`,
  :class:`mpr.core.Counted`) keep their own contracts.

Floats are compared within ``tolerance`` (batch layouts move model outputs; see
``mpr.run.episodes.VALUE_REL_TOL``), everything discrete exactly. Used by the tests on every
component mpr ships; ``check_env`` drives a real (stateful) env, so give it games it can reset.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from mpr.core import (
    Counted,
    Env,
    OutcomeModel,
    Planner,
    PlanResult,
    Policy,
    ScoredPolicy,
    Scorer,
    State,
    TimeStep,
    WorldModel,
)


class ContractError(AssertionError):
    """A component broke a rule of its interface."""


def _require(ok: bool, what: str) -> None:
    if not ok:
        raise ContractError(what)


def _close(a: float, b: float, tolerance: float) -> bool:
    return math.isclose(a, b, rel_tol=tolerance, abs_tol=tolerance)


def _aligned(name: str, out: Any, inputs: Sequence[Any]) -> None:
    _require(isinstance(out, list), f"{name} must return a list, got {type(out).__name__}")
    _require(len(out) == len(inputs), f"{name} returned {len(out)} results for {len(inputs)} inputs")


def check_counters(component: Any) -> None:
    """A :class:`mpr.core.Counted` component's ``counters()`` is a dict of str -> int."""
    if isinstance(component, Counted):
        c = component.counters()
        _require(isinstance(c, dict) and all(isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
                                             for k, v in c.items()), f"counters() must map str to int, got {c!r}")


def check_policy(policy: Policy, states: Sequence[State], n: int = 2, deterministic: bool = True) -> None:
    """``propose(states, n)[i]`` is a list of at most ``n`` actions (strings) for ``states[i]``, at
    least one where the state has admissible commands."""
    _require(isinstance(policy, Policy), f"{type(policy).__name__} has no propose(states, n)")
    _aligned("propose", policy.propose([], n), [])
    rows = policy.propose(list(states), n)
    _aligned("propose", rows, states)
    for s, row in zip(states, rows):
        _require(isinstance(row, list) and all(isinstance(a, str) for a in row),
                 f"propose must give a list of str per state, got {row!r}")
        _require(len(row) <= n, f"propose gave {len(row)} actions, more than n={n}")
        _require(bool(row) or not s.admissible, "propose gave no action for a state with admissible commands")
    if isinstance(policy, ScoredPolicy):
        scored = policy.propose_scored(list(states), n)
        _aligned("propose_scored", scored, states)
        for row in scored:
            _require(all(isinstance(a, str) and isinstance(lp, float) for a, lp in row),
                     f"propose_scored must give (action, logprob) pairs, got {row!r}")
    if deterministic:
        _require(policy.propose(list(states), n) == rows, "propose is not deterministic: a second call differs")
        _require([policy.propose([s], n)[0] for s in states] == rows, "propose batched != one state at a time")
    check_counters(policy)


def check_world_model(world: WorldModel, states: Sequence[State], actions: Sequence[str],
                      deterministic: bool = True) -> None:
    """``predict(states, actions)[i]`` is the observation (a string) after ``actions[i]`` in
    ``states[i]``; an :class:`mpr.core.OutcomeModel` describes each step as (admissible, won)."""
    _require(isinstance(world, WorldModel), f"{type(world).__name__} has no predict(states, actions)")
    _require(len(states) == len(actions), "give one action per state")
    _aligned("predict", world.predict([], []), [])
    observations = world.predict(list(states), list(actions))
    _aligned("predict", observations, states)
    _require(all(isinstance(o, str) for o in observations), f"predict must give strings, got {observations!r}")
    if isinstance(world, OutcomeModel):
        facts = world.outcomes(list(states), list(actions), observations)
        _aligned("outcomes", facts, states)
        for adm, won in facts:
            _require(isinstance(adm, tuple) and all(isinstance(a, str) for a in adm) and isinstance(won, bool),
                     f"outcomes must give (tuple of str, bool) pairs, got {(adm, won)!r}")
    if deterministic:
        single = [world.predict([s], [a])[0] for s, a in zip(states, actions)]
        _require(single == observations, "predict batched != one pair at a time")
    check_counters(world)


def check_scorer(scorer: Scorer, states: Sequence[State], actions: Sequence[str], tolerance: float = 1e-3) -> None:
    """``score(states, actions)[i]`` is a finite float estimating Q(states[i], actions[i]); batched
    and one-at-a-time calls agree within ``tolerance``."""
    _require(isinstance(scorer, Scorer), f"{type(scorer).__name__} has no score(states, actions)")
    _require(len(states) == len(actions), "give one action per state")
    _aligned("score", scorer.score([], []), [])
    values = scorer.score(list(states), list(actions))
    _aligned("score", values, states)
    _require(all(isinstance(v, float) and math.isfinite(v) for v in values), f"score must give finite floats, got {values!r}")
    single = [scorer.score([s], [a])[0] for s, a in zip(states, actions)]
    _require(all(_close(a, b, tolerance) for a, b in zip(values, single)),
             f"score batched != one pair at a time: {values} vs {single}")


def check_planner(make: Callable[[], Planner], roots: Sequence[State], deterministic: bool = True,
                  tolerance: float = 1e-3) -> None:
    """``planner(roots)[i]`` is a :class:`mpr.core.PlanResult` for ``roots[i]`` whose action is a
    string. ``make`` builds a fresh planner (and models), so memos do not carry over: with
    deterministic models, deciding all roots at once equals deciding each alone."""
    planner = make()
    _require(isinstance(planner, Planner), f"{type(planner).__name__} is not callable on roots")
    _aligned("planner", planner([]), [])
    results = planner(list(roots))
    _aligned("planner", results, roots)
    for r in results:
        _require(isinstance(r, PlanResult) and isinstance(r.action, str),
                 f"a planner must return PlanResults with a str action, got {r!r}")
        _require(all(isinstance(a, str) and isinstance(v, float) for a, v in r.alternatives),
                 f"alternatives must be (action, value) pairs, got {r.alternatives!r}")
    if deterministic:
        single = [make()([root])[0] for root in roots]
        _require([r.action for r in results] == [r.action for r in single], "planner batched != one root at a time")
        _require(all(_close(a.value, b.value, tolerance) for a, b in zip(results, single)),
                 "planner values batched != one root at a time")


def check_env(env: Env, task_ids: Sequence[str], steps: int = 2) -> None:
    """``reset`` and ``step`` return TimeSteps aligned with their requests, one game per slot; an
    admissible action is accepted; ``submit`` + ``poll`` answer every request. Plays ``steps``
    actions in each of ``min(len(task_ids), env.num_slots)`` slots, then closes nothing (the caller
    owns the env)."""
    _require(isinstance(env, Env), f"{type(env).__name__} lacks part of the Env protocol")
    ids = list(task_ids)[: env.num_slots]
    _require(bool(ids), "give at least one task id")
    slots = list(range(len(ids)))
    first = env.reset(ids, slots)
    _aligned("reset", first, ids)
    for ts in first:
        _require(isinstance(ts, TimeStep) and ts.error is None, f"reset failed: {ts!r}")
        _require(isinstance(ts.observation, str) and bool(ts.admissible), "a reset game must say what is admissible")
    current = first
    for _ in range(steps):
        live = [i for i, ts in enumerate(current) if not ts.done]
        if not live:
            break
        actions = [current[i].admissible[0] for i in live]
        out = env.step(actions, [slots[i] for i in live])
        _aligned("step", out, actions)
        _require(all(isinstance(ts, TimeStep) and ts.error is None for ts in out), f"step failed: {out!r}")
        for i, ts in zip(live, out):
            current[i] = ts
    if current[0].done:  # slot 0's game ended: start it again for the submit/poll round
        current[0] = env.reset([ids[0]], [slots[0]])[0]
    env.submit([current[0].admissible[0]], [slots[0]])
    answers: dict[int, TimeStep] = {}
    while not answers:
        answers.update(env.poll(timeout=60))
    _require(set(answers) == {slots[0]} and isinstance(answers[slots[0]], TimeStep),
             f"poll must answer the submitted slot, got {answers!r}")
