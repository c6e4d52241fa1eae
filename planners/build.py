"""Pick a planner by name and give it its models (``mpr plan --planner``, ``mpr eval --agent``).

Models a planner gets, when not given explicitly:

* policy: the proposal policy (``--agent``/``--policy``; see :func:`mpr.evaluation.build_policy`);
* scorer: the trained PRM (``--prm CKPT``), else the zero-shot judge on the base model
  (:class:`mpr.scorer.JudgeScorer`);
* world model: the trained one (``--world CKPT``), else the base model prompted zero-shot; or
  ``world="oracle"``, the real game (an upper bound for ablations, never a default).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from mpr.config import require
from mpr.core import Planner, Policy, Scorer, WorldModel
from planners.beam import BeamConfig
from planners.best_of_n import BestOfNConfig
from planners.mcts import MCTSConfig

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


def make_planner(config: PlannerConfig, policy: Policy, world: WorldModel | None = None,
                 scorer: Scorer | None = None, record_tree: bool = False) -> Planner:
    from planners.beam import BeamPlanner
    from planners.best_of_n import BestOfNPlanner
    from planners.greedy import GreedyPlanner
    from planners.mcts import MCTSPlanner
    from planners.search import Models

    models = Models(policy, world, scorer, cache=config.cache)
    if config.name == "greedy":
        return GreedyPlanner(models)
    if config.name == "best-of-n":
        return BestOfNPlanner(models, config.best_of_n, record_tree)
    if config.name == "beam":
        return BeamPlanner(models, config.beam, record_tree)
    return MCTSPlanner(models, config.mcts, record_tree)


def build_models(config: PlannerConfig, policy: Policy, engine: Any, prm: str | None, world: str | None,
                 env_config: Any = None, seed: int = 0) -> tuple[WorldModel | None, Scorer | None]:
    """The world model and scorer ``config`` needs (None for the ones it does not), from checkpoints
    or the defaults (see the module doc). ``engine`` is an EngineConfig; a policy engine on the same
    base model is shared rather than loaded twice."""
    from mpr.engine import make_engine

    shared: dict[str, Any] = {}
    pe = getattr(policy, "engine", None)
    if pe is not None:
        shared[pe.config.model] = pe

    def base_engine() -> Any:
        if engine.model not in shared:
            shared[engine.model] = make_engine(engine)
        return shared[engine.model]

    scorer: Scorer | None = None
    if config.name in NEEDS_SCORER:
        from mpr.scorer import JudgeScorer, PRMScorer

        scorer = PRMScorer.from_checkpoint(prm, engine) if prm else JudgeScorer(base_engine())
    model: WorldModel | None = None
    if config.name in NEEDS_WORLD:
        if config.world == "oracle":
            from worldmodel.oracle import OracleWorldModel

            model = OracleWorldModel(env_config, seed)
        elif world:
            from worldmodel.llm import LLMWorldModel

            model = LLMWorldModel.from_checkpoint(world, engine)
        else:
            from worldmodel.llm import LLMWorldModel

            model = LLMWorldModel(base_engine())
    return model, scorer
