"""The composition root: the one place components are built from names, configs and checkpoints.

Every policy, world model, scorer and planner that mpr runs is made here, and nowhere else:

* :func:`build_policy` — a reference agent by name, the LLM policy over a base model or a trained
  policy checkpoint, or the policy that ranks admissible actions by a trained PRM;
* :func:`build_models` — the world model and scorer a planner needs: the trained ones from
  checkpoints, else the base model zero-shot (judge / world prompt); ``world="oracle"`` is the real
  game (an upper bound for ablations, never a default);
* :func:`make_planner` / :func:`build_planner` — a planner by name over those models;
* :func:`rollout_policy`, :func:`sampling_policy`, :func:`next_action_policy` — the policies the
  training stages roll out, sample from and take a' ~ π(s') from; :func:`training_engine`,
  :func:`ranking_policy`, :func:`training_scorer`, :func:`training_world_model` — what they measure
  held-out metrics with (HF, fp32, the stage's threads, batch size and prompt length).

It sits above the components (``mpr.alfworld``, ``mpr.lm``, ``mpr.learned``, ``mpr.worldmodel``,
``mpr.planners``) and below what runs them (``mpr.run``, ``mpr.training``, ``mpr.app``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mpr.alfworld.agents import REFERENCE_AGENTS, make_policy
from mpr.config import require
from mpr.core import (
    Closable,
    Counted,
    EngineBacked,
    Planner,
    Policy,
    Scorer,
    State,
    WorldModel,
)
from mpr.errors import MprError
from mpr.planners.config import NEEDS_SCORER, NEEDS_WORLD, PLANNERS, PlannerConfig

AGENTS = REFERENCE_AGENTS + ("llm", "policy", "prm")
"""What ``--agent`` accepts besides a planner name."""


def split_agent(agent: str | None, policy_ckpt: str | None, planner: PlannerConfig) -> tuple[str, PlannerConfig]:
    """``--agent beam`` (any planner name) is shorthand for ``--planner beam`` with the trained
    policy proposing. No agent: the trained policy (``--policy``, else the shipped default π₀, see
    :func:`resolve_policy_ckpt`). Other agents pass through."""
    if agent is None:
        return "policy", planner
    if agent in PLANNERS:
        return "policy", dataclasses.replace(planner, name=agent)
    return agent, planner


def resolve_policy_ckpt(agent: str, policy_ckpt: str | None) -> str | None:
    """The policy checkpoint an agent plays with: ``--policy`` when given, else (for ``policy``)
    the default π₀ shipped in the package (``mpr.lm.weights.shipped_model_dir("policy")``)."""
    from mpr.lm.checkpoints import META_FILE
    from mpr.lm.weights import shipped_model_dir

    if agent != "policy" or policy_ckpt is not None:
        return policy_ckpt
    shipped = shipped_model_dir("policy")
    require((shipped / META_FILE).is_file(),
            f"--agent policy: no --policy CKPT given and no shipped default policy at {shipped} "
            "(see docs/training.md, 'The default policy')")
    return str(shipped)


def candidate_mode(planner: str, mode: str = "auto") -> str:
    """The policy mode a planner's candidates come from: ``mode`` unless it is "auto", which means
    draws (score-sample) for best-of-n — Best-of-N is N samples from the policy; the top N of a
    ranking would be N ``go to``s whenever going anywhere is likelier than taking (prefix ranking)
    — and the ranking (score) for greedy, beam and MCTS, which expand the policy's top actions."""
    if mode != "auto":
        return mode
    return "score-sample" if planner == "best-of-n" else "score"


def shipped_default(path: str | None, kind: str) -> str | None:
    """``path``, else the default ``kind`` ("prm", "world") shipped in the package when there is one
    (``mpr models ship --kind``), else None (the planners' zero-shot judge / world model)."""
    from mpr.lm.checkpoints import META_FILE
    from mpr.lm.weights import shipped_model_dir

    if path is not None:
        return path
    shipped = shipped_model_dir(kind)
    return str(shipped) if (shipped / META_FILE).is_file() else None


def check_agent(agent: str, prm: str | None = None) -> None:
    require(agent in AGENTS, f"unknown agent {agent!r}; choose one of: {', '.join(AGENTS + PLANNERS)}")
    require(agent != "prm" or prm is not None, "--agent prm needs --prm CKPT (a trained PRM)")


def build_policy(agent: str, seed: int, data_dir: str | None, model: Any, policy: Any,
                 policy_ckpt: str | None = None, prm: str | None = None) -> Policy:
    """A reference policy by name; the LLM policy over the default/given model (``llm``) or a trained
    policy checkpoint (``policy``); or the PRM ranking the admissible actions (``prm``). ``model`` is
    an EngineConfig, ``policy`` a PolicyConfig."""
    check_agent(agent, prm)
    policy_ckpt = resolve_policy_ckpt(agent, policy_ckpt)
    if agent in REFERENCE_AGENTS:
        return make_policy(agent, seed, data_dir)
    if agent == "prm":
        from mpr.learned.scorer import PRMScorer, ScorerPolicy

        return ScorerPolicy(PRMScorer.from_checkpoint(prm, model))  # type: ignore[arg-type]
    from mpr.learned.policy import LLMPolicy
    from mpr.lm.backends import make_engine

    if agent == "policy":
        from mpr.lm.checkpoints import load_checkpoint

        model = dataclasses.replace(model, model=str(load_checkpoint(policy_ckpt, "policy", flag="--policy").path))  # type: ignore[arg-type]
        policy = dataclasses.replace(policy, prompt_format=prompt_format_of(model.model))
    return LLMPolicy(make_engine(model), dataclasses.replace(policy, seed=seed))


def prompt_format_of(model: str) -> str:
    """The prompt format a policy model was trained on: its checkpoint's, else "chat" (a base model)."""
    from mpr.lm.checkpoints import META_FILE, load_checkpoint

    path = Path(model).expanduser()
    if not (path / META_FILE).is_file():
        return "chat"
    return load_checkpoint(path).meta.get("prompt_format", "chat")


def build_models(config: PlannerConfig, policy: Policy, engine: Any, prm: str | None, world: str | None,
                 env_config: Any = None, seed: int = 0) -> tuple[WorldModel | None, Scorer | None]:
    """The world model and scorer ``config`` needs (None for the ones it does not), from checkpoints
    or the defaults (see the module doc). ``engine`` is an EngineConfig; a policy engine on the same
    base model is shared rather than loaded twice."""
    from mpr.lm.backends import make_engine

    shared: dict[str, Any] = {}
    if isinstance(policy, EngineBacked):
        shared[policy.engine.config.model] = policy.engine

    def base_engine() -> Any:
        if engine.model not in shared:
            shared[engine.model] = make_engine(engine)
        return shared[engine.model]

    scorer: Scorer | None = None
    if config.name in NEEDS_SCORER:
        from mpr.learned.scorer import JudgeScorer, PRMScorer

        scorer = PRMScorer.from_checkpoint(prm, engine) if prm else JudgeScorer(base_engine())
    model: WorldModel | None = None
    if config.name in NEEDS_WORLD:
        if config.world == "oracle":
            from mpr.worldmodel.oracle import OracleWorldModel

            model = OracleWorldModel(env_config, seed)
        elif world:
            from mpr.worldmodel.llm import LLMWorldModel

            model = LLMWorldModel.from_checkpoint(world, engine)
        else:
            from mpr.worldmodel.llm import LLMWorldModel

            model = LLMWorldModel(base_engine())
    return model, scorer


def make_planner(config: PlannerConfig, policy: Policy, world: WorldModel | None = None,
                 scorer: Scorer | None = None, record_tree: bool = False) -> Planner:
    """The planner ``config.name`` over the given models, behind one metered memo (``Models``)."""
    from mpr.planners.beam import BeamPlanner
    from mpr.planners.best_of_n import BestOfNPlanner
    from mpr.planners.greedy import GreedyPlanner
    from mpr.planners.mcts import MCTSPlanner
    from mpr.planners.search import Models

    models = Models(policy, world, scorer, cache=config.cache)
    if config.name == "greedy":
        return GreedyPlanner(models)
    if config.name == "best-of-n":
        return BestOfNPlanner(models, config.best_of_n, record_tree)
    if config.name == "beam":
        return BeamPlanner(models, config.beam, record_tree)
    return MCTSPlanner(models, config.mcts, record_tree)


def build_planner(agent: str, seed: int, env_config: Any, model: Any, policy_config: Any,
                  policy_ckpt: str | None, prm: str | None, world: str | None, planner: PlannerConfig,
                  record_tree: bool = False) -> tuple[Planner, dict[str, Any]]:
    """The planner for an evaluation or a played episode, and its parts by name (for counters)."""
    policy = build_policy(agent, seed, env_config.data_dir, model, policy_config, policy_ckpt, prm)
    world_model, scorer = build_models(planner, policy, model, prm, world, env_config, seed)
    parts = {"policy": policy, "world": world_model, "scorer": scorer}
    return make_planner(planner, policy, world_model, scorer, record_tree), parts


def counters(parts: dict[str, Any]) -> dict[str, int]:
    """The counters of a planner's parts (:class:`mpr.core.Counted`), as ``<part>_<name>``."""
    return {f"{part}_{name}": value for part, obj in parts.items() if isinstance(obj, Counted)
            for name, value in obj.counters().items()}


def close_parts(parts: dict[str, Any]) -> None:
    for part in parts.values():
        if isinstance(part, Closable):
            part.close()


# -- the training stages' policies ------------------------------------------------------------


def rollout_policy(policy: str, seed: int, data_dir: str | None, engine: Any = None, temperature: float = 1.0,
                   steer_prob: float = 0.0) -> Policy:
    """A rollout's policy: a reference agent by name, else the LLM policy over ``engine`` (score mode
    at temperature 0, else score-sample at ``temperature``)."""
    if policy in REFERENCE_AGENTS:
        return make_policy(policy, seed, data_dir)
    from mpr.learned.policy import LLMPolicy, PolicyConfig

    mode = "score-sample" if temperature > 0 else "score"
    return LLMPolicy(engine, PolicyConfig(mode=mode, temperature=temperature or 1.0, seed=seed,
                                          steer_prob=steer_prob, prompt_format=prompt_format_of(engine.config.model)))


def training_engine_config(config: Any, model: str = "default") -> Any:
    """The EngineConfig training stages run models with: fp32 (bit-stable metrics), the stage's
    device, threads, batch size and prompt length. ``config``: a training config."""
    from mpr.lm.engine import EngineConfig

    return EngineConfig(model=model, dtype="fp32", threads=config.threads, batch_size=config.batch_size,
                        max_length=config.max_length, device=config.device)


def training_engine(model_dir: str, config: Any, live_model: Any = None) -> Any:
    """An HF engine over ``model_dir`` (see :func:`training_engine_config`); ``live_model``: serve
    those weights (the ones being trained) instead, with ``model_dir``'s tokenizer."""
    from mpr.lm.hf_engine import HFEngine

    return HFEngine(training_engine_config(config, model_dir), lm=live_model)


def sampling_policy(path: str, config: Any, seed: int, live_model: Any = None) -> Any:
    """An LLMPolicy (score-sample, T=1) over the model at ``path`` — or over ``live_model``, the
    weights being trained (then ``path`` only supplies the tokenizer). Proposals use the engine's
    prefix-sharing scoring, not one forward pass per candidate."""
    from mpr.learned.policy import LLMPolicy, PolicyConfig

    return LLMPolicy(training_engine(path, config, live_model),
                     PolicyConfig(mode="score-sample", temperature=1.0, seed=seed, prompt_format=prompt_format_of(path)))


def ranking_policy(model_dir: str, config: Any) -> Any:
    """The LLMPolicy that ranks admissible actions by log-prob (score mode), for held-out agreement."""
    from mpr.learned.policy import LLMPolicy, PolicyConfig

    return LLMPolicy(training_engine(model_dir, config), PolicyConfig(mode="score", prompt_format=config.prompt_format))


def training_scorer(path: str, config: Any) -> Any:
    """The PRM checkpoint at ``path`` as a Scorer, run like the training stages run models."""
    from mpr.learned.scorer import PRMScorer

    return PRMScorer.from_checkpoint(path, training_engine_config(config))


def training_world_model(model_dir: str, config: Any, prompt_format: str = "chat") -> Any:
    """The world model at ``model_dir`` (trained in ``prompt_format``), for held-out prediction metrics."""
    from mpr.worldmodel.llm import LLMWorldModel

    return LLMWorldModel(training_engine(model_dir, config), prompt_format=prompt_format)


def next_action_policy(name: str, config: Any) -> Callable[[Sequence[State]], list[str]]:
    """a' ~ π(s') for InversePRM: a builtin random policy or a policy checkpoint (score-sample)."""
    if name == "random":
        policy = make_policy("random", config.seed)
    elif name in ("expert", "walkthrough"):
        raise MprError("--policy must be the learner's current policy (a checkpoint dir or random), not the expert")
    else:
        from mpr.lm.checkpoints import load_checkpoint

        policy = sampling_policy(str(load_checkpoint(name, "policy", flag="--policy").path), config, config.seed)
    return lambda states: [p[0] for p in policy.propose(states, 1)]
