"""Planner settings: which planner (``mpr plan --planner``, ``mpr eval --agent``) and its knobs.

The planners and the models they get are built by the composition root, :mod:`mpr.compose`
(policy from ``--agent``/``--policy``; scorer: the trained PRM ``--prm`` or the zero-shot judge;
world model: the trained one ``--world``, the base model zero-shot, or ``world="oracle"``, the
real game — an upper bound for ablations, never a default).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from mpr.planners.beam import BeamConfig
from mpr.planners.best_of_n import BestOfNConfig
from mpr.planners.mcts import MCTSConfig

from mpr.config import require

PLANNERS = ("greedy", "best-of-n", "beam", "mcts")
WORLDS = ("learned", "oracle")
NEEDS_SCORER = ("best-of-n", "beam", "mcts")
NEEDS_WORLD = ("beam", "mcts")


@dataclass(frozen=True)
class PlannerConfig:
    name: str = "greedy"
    best_of_n: BestOfNConfig = field(default_factory=BestOfNConfig)
    beam: BeamConfig = field(default_factory=BeamConfig)
    mcts: MCTSConfig = field(default_factory=MCTSConfig)
    world: str = "learned"  # "oracle": simulate with the real game (upper bound; labelled in results)
    cache: bool = True  # memoize predictions, scores and proposals on (state, action)

    def __post_init__(self) -> None:
        require(self.name in PLANNERS, f"unknown planner {self.name!r}; choose one of: {', '.join(PLANNERS)}")
        require(self.world in WORLDS, f"world must be one of {WORLDS}, got {self.world!r}")

    def settings(self) -> dict[str, Any]:
        """The settings that matter for this planner (for record headers)."""
        out: dict[str, Any] = {"name": self.name}
        sub = {"best-of-n": self.best_of_n, "beam": self.beam, "mcts": self.mcts}.get(self.name)
        if sub is not None:
            out.update(dataclasses.asdict(sub))
        if self.name in NEEDS_WORLD:
            out["world"] = self.world
        return out


def with_overrides(config: PlannerConfig, **values: Any) -> PlannerConfig:
    """Set planner fields by their flag names (n, width, depth, candidates, aggregate, simulations,
    leaves_per_iter, c_puct, max_depth); None values are left alone. Each goes to the sub-config
    that has it (``candidates`` to beam and mcts)."""
    subs = {"best_of_n": config.best_of_n, "beam": config.beam, "mcts": config.mcts}
    for name, sub in list(subs.items()):
        mine = {k: v for k, v in values.items() if v is not None and k in {f.name for f in dataclasses.fields(sub)}}
        if mine:
            subs[name] = dataclasses.replace(sub, **mine)
    known = {f.name for sub in subs.values() for f in dataclasses.fields(sub)}
    unknown = sorted(k for k, v in values.items() if v is not None and k not in known)
    require(not unknown, f"unknown planner setting(s): {', '.join(unknown)}")
    return dataclasses.replace(config, **subs)
