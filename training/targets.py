"""Training targets from recorded rollouts: AgentPRM Monte-Carlo Q targets, state values, shaping.

AgentPRM (the seed paper's Eq. 1): for every step t of every trajectory through (s, a),

    Q̂(s_t, a_t) = mean over those trajectories of  Σ_{k≥t} γ^{k−t} r_k

— discounted from the step itself, not from the start of the episode. Identical (state, action)
pairs (same task, same history, same action; :meth:`mpr.core.State.digest`) are merged by
averaging their returns. Targets are then mapped into [0, 1] (:func:`rescale_unit`).

Turns replayed from a walkthrough prefix (reset-50-50) were not chosen by the policy, so they get
no targets; the rollout's return is credited from the first policy step on.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from mpr.training.rollout import transitions

from mpr.core import State
from mpr.run.episodes import EpisodeResult


@dataclass(frozen=True)
class Target:
    """A regression target for Q(state, action) (``action == ""``: a state value V(state))."""

    state: State
    action: str
    value: float
    count: int  # how many trajectory steps were merged into it
    success: float  # fraction of those trajectories that were won


def discounted_returns(rewards: Sequence[float], gamma: float) -> list[float]:
    """G_t = Σ_{k≥t} γ^{k−t} r_k for every t (computed backwards)."""
    out, g = [0.0] * len(rewards), 0.0
    for t in range(len(rewards) - 1, -1, -1):
        g = rewards[t] + gamma * g
        out[t] = g
    return out


def rescale_unit(values: Sequence[float]) -> list[float]:
    """Map targets into [0, 1] with the fixed range [min(0, lo), max(1, hi)].

    Returns of 0/1 outcome rewards already lie in [0, 1] and are left unchanged (so a target keeps
    its meaning: a discounted success probability); shaped targets, which can be negative or exceed
    1, are shifted and scaled into [0, 1], preserving order.
    """
    if not values:
        return []
    lo, hi = min(0.0, min(values)), max(1.0, max(values))
    return [(v - lo) / (hi - lo) for v in values]


def _merge(items: Iterable[tuple[State, str, float, bool]]) -> list[Target]:
    groups: dict[tuple[str, str], list[tuple[State, float, bool]]] = defaultdict(list)
    for state, action, value, won in items:
        groups[(state.digest(), action)].append((state, value, won))
    merged = []
    for (_, action), rows in groups.items():
        merged.append(Target(rows[0][0], action, sum(v for _, v, _ in rows) / len(rows), len(rows),
                             sum(w for _, _, w in rows) / len(rows)))
    return merged


def _steps(episodes: Iterable[EpisodeResult], gamma: float):
    """(transition, return-from-step) for every policy step of every episode."""
    for ep in episodes:
        steps = list(transitions(ep))
        returns = discounted_returns([s.reward for s in steps], gamma)
        for step, g in zip(steps, returns):
            if step.t >= ep.prefix:
                yield step, g, ep.won


def mc_targets(episodes: Iterable[EpisodeResult], gamma: float, rescale: bool = True) -> list[Target]:
    """AgentPRM Q targets (see module doc), merged by (state, action), in first-seen order."""
    targets = _merge((step.state, step.action, g, won) for step, g, won in _steps(episodes, gamma))
    return _rescaled(targets) if rescale else targets


def mc_state_values(episodes: Iterable[EpisodeResult], gamma: float) -> list[Target]:
    """Monte-Carlo state values V(s) = mean return from s of the policy that produced the rollouts
    (targets for a reference value model, V_ref), merged by state; in [0, 1] for 0/1 rewards."""
    return _merge((step.state, "", g, won) for step, g, won in _steps(episodes, gamma))


def shaped_targets(episodes: Sequence[EpisodeResult], v_ref: Callable[[list[State]], list[float]], gamma: float,
                   rescale: bool = True) -> list[Target]:
    """Process reward shaping with a reference value model: per step,

        target_t = γ^t·r_t + γ·V_ref(s_{t+1}) − V_ref(s_t),   V_ref(terminal state) = 0

    (r_t is the outcome reward, non-zero only on the last step). ``v_ref`` is called once, on all
    states together. Merged by (state, action) and rescaled like :func:`mc_targets`.
    """
    steps = [(step, won) for step, _g, won in _steps(episodes, gamma)]
    states = list({s.digest(): s for st, _ in steps for s in (st.state, st.next_state)}.values())
    values = dict(zip((s.digest() for s in states), v_ref(states)))
    items = []
    for step, won in steps:
        nxt = 0.0 if step.done else values[step.next_state.digest()]
        items.append((step.state, step.action,
                      gamma ** step.t * step.reward + gamma * nxt - values[step.state.digest()], won))
    targets = _merge(items)
    return _rescaled(targets) if rescale else targets


def _rescaled(targets: list[Target]) -> list[Target]:
    scaled = rescale_unit([t.value for t in targets])
    return [Target(t.state, t.action, v, t.count, t.success) for t, v in zip(targets, scaled)]
