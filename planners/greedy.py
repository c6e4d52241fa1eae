"""Greedy planning: commit to the policy's first proposal, no lookahead."""

from __future__ import annotations

from collections.abc import Sequence

from mpr.planners.search import Models

from mpr.core import PlanResult, Policy, State


class GreedyPlanner:
    """``planner(roots)[i]``: the policy's top action for ``roots[i]``; one policy call per batch.
    ``value`` is the action's log-probability under the policy (0.0 when it gives none)."""

    def __init__(self, policy: Policy | Models):
        self.models = policy if isinstance(policy, Models) else Models(policy, cache=False)

    def __call__(self, roots: Sequence[State]) -> list[PlanResult]:
        if not roots:
            return []
        m = self.models
        owners = m.begin(len(roots))
        proposals = m.propose(roots, 1, owners)
        m.add_nodes(owners)
        out = []
        for p, stats in zip(proposals, m.stats()):
            if not p:
                raise ValueError("Policy.propose returned no action")
            out.append(PlanResult(action=p[0].action, value=p[0].logprob, stats=stats))
        return out
