"""Planners: decide one action per root state (``Planner(roots) -> list[PlanResult]``).

Available now: ``GreedyPlanner`` (the policy's top action). Best-of-N, beam
search and MCTS over a learned world model come with the planners issue.
"""

from planners.greedy import GreedyPlanner

__all__ = ["GreedyPlanner"]
