"""Planners: decide one action per root state (``Planner(roots) -> list[PlanResult]``).

What belongs here: generic search over the ``mpr.core`` nouns and nothing else — no game, no model
library, no episode runner (the architecture test holds it to ``mpr.core``, ``mpr.config`` and
``mpr.errors``). ``search`` is the metered, memoized front over the policy, world model and scorer;
``greedy``, ``best_of_n``, ``beam`` and ``mcts`` are the planners; ``config`` holds their settings;
``tree`` records search trees. They are built by :mod:`mpr.compose`.
"""

from mpr.planners.greedy import GreedyPlanner

__all__ = ["GreedyPlanner"]
