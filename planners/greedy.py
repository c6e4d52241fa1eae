"""Greedy planning: commit to the policy's first proposal, no lookahead."""

from __future__ import annotations

import time
from collections.abc import Sequence

from mpr.core import PlanResult, PlanStats, Policy, State, check_aligned


class GreedyPlanner:
    """``planner(roots)[i]`` is ``policy.propose(roots, 1)[i][0]``; one policy call per batch."""

    def __init__(self, policy: Policy):
        self.policy = policy

    def __call__(self, roots: Sequence[State]) -> list[PlanResult]:
        if not roots:
            return []
        start = time.perf_counter()
        proposals = self.policy.propose(roots, 1)
        check_aligned("Policy.propose", proposals, roots)
        seconds = time.perf_counter() - start
        stats = PlanStats(model_calls=1, nodes=len(roots), seconds=seconds / len(roots))
        return [PlanResult(action=p[0], stats=stats) for p in proposals]
