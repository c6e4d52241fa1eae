"""Every component mpr ships keeps its noun's contract (``mpr.checks``), and the checkers catch a
component that does not."""

from __future__ import annotations

import pytest
from mpr.planners.config import PLANNERS, PlannerConfig, with_overrides
from toygames import CorridorGame
from toyplan import (
    TrapPolicy,
    TrapScorer,
    TrapWorld,
    TreePolicy,
    TreeScorer,
    TreeWorld,
    root,
    tree_root,
)

from mpr.checks import (
    ContractError,
    check_env,
    check_planner,
    check_policy,
    check_scorer,
    check_world_model,
)
from mpr.compose import make_planner
from mpr.core import State

ADMISSIBLE = ("go to desk 1", "go to shelf 1", "look", "take mug 1 from desk 1")


def alfworld_like_states() -> list[State]:
    s0 = State("valid_seen/x/trial", "put a mug in shelf", "You are in a room.", admissible=ADMISSIBLE)
    s1 = s0.after("go to desk 1", "You arrive at desk 1. On the desk 1, you see a mug 1.", ADMISSIBLE)
    return [s0, s1, State("valid_seen/y/trial", "look", "A room.", admissible=("look", "inventory"))]


def toy_states() -> list[State]:
    r = root()
    return [r, r.after("path", "path"), r.after("bait", "bait"), tree_root("t1")]


def test_toy_models_keep_their_contracts():
    states = toy_states()
    for policy in (TrapPolicy(), TreePolicy(3, 0)):
        check_policy(policy, states, n=2)
    actions = ["path", "step", "climb", "a0"]
    for world in (TrapWorld(), TreeWorld()):
        check_world_model(world, states, actions)
    for scorer in (TrapScorer(), TreeScorer(0)):
        check_scorer(scorer, states, actions)


def test_reference_random_policy_keeps_the_contract():
    from mpr.alfworld.agents import RandomPolicy

    check_policy(RandomPolicy(seed=3), alfworld_like_states(), n=3)


@pytest.mark.parametrize("name", PLANNERS)
def test_every_planner_keeps_the_contract(name):
    config = with_overrides(PlannerConfig(name=name), n=3, width=2, depth=2, candidates=3, simulations=12,
                            leaves_per_iter=4, max_depth=3)
    roots = [root("a"), tree_root("b"), root("c")]
    check_planner(lambda: make_planner(config, TreePolicy(3, 1), TreeWorld(), TreeScorer(1)), roots)
    check_planner(lambda: make_planner(config, TrapPolicy(), TrapWorld(), TrapScorer()), [root("a"), root("b")])


class Misaligned:
    def propose(self, states, n=1):
        return [["look"] * n for _ in states][:-1]


class TooMany:
    def propose(self, states, n=1):
        return [["look"] * (n + 1) for _ in states]


class Forgetful:
    """Answers batches differently from single states (a batch-dependent bug)."""

    def propose(self, states, n=1):
        return [[s.admissible[min(len(states), len(s.admissible)) - 1]] for s in states]


class NaNScorer:
    def score(self, states, actions):
        return [float("nan")] * len(states)


class BadOutcomes(TrapWorld):
    def outcomes(self, states, actions, observations):
        return [(["look"], 0) for _ in states]


@pytest.mark.parametrize("component, check, message", [
    (Misaligned(), check_policy, "returned 2 results for 3 inputs"),
    (TooMany(), check_policy, "more than n=2"),
    (Forgetful(), check_policy, "batched != one state at a time"),
    (object(), check_policy, "has no propose"),
])
def test_policy_checker_catches_broken_policies(component, check, message):
    with pytest.raises(ContractError, match=message):
        check(component, alfworld_like_states(), n=2)


def test_model_checkers_catch_broken_models():
    states, actions = toy_states()[:2], ["path", "step"]
    with pytest.raises(ContractError, match="finite floats"):
        check_scorer(NaNScorer(), states, actions)
    with pytest.raises(ContractError, match="outcomes must give"):
        check_world_model(BadOutcomes(), states, actions)


def test_env_contract_on_toy_games():
    from mpr.alfworld.env import SerialEnv

    env = SerialEnv(2, make_game=lambda: CorridorGame(max_actions=5))
    try:
        check_env(env, ["corridor/1", "corridor/3"], steps=2)
    finally:
        env.close()


@pytest.mark.games
def test_alfworld_envs_keep_the_contract(valid_unseen):
    from mpr.alfworld.env import EnvConfig, SerialEnv
    from mpr.alfworld.pool import EnvPool, PoolConfig

    ids = [t.id for t in valid_unseen[:2]]
    for env in (SerialEnv(2, EnvConfig(expert=True)), EnvPool(PoolConfig(num_workers=2), EnvConfig())):
        try:
            check_env(env, ids, steps=2)
        finally:
            env.close()


@pytest.mark.games
def test_oracle_world_model_keeps_the_contract(valid_unseen):
    from mpr.worldmodel.oracle import OracleWorldModel

    from mpr.alfworld.env import EnvConfig, SerialEnv

    env = SerialEnv(1, EnvConfig())
    (ts,) = env.reset([valid_unseen[0].id])
    env.close()
    s0 = State(valid_unseen[0].id, ts.goal, ts.observation, admissible=ts.admissible)
    world = OracleWorldModel(EnvConfig())
    try:
        check_world_model(world, [s0, s0], [ts.admissible[0], "look"])
    finally:
        world.close()


@pytest.mark.models
def test_learned_components_keep_their_contracts(tiny_engine, tiny_value_dir):
    from mpr.worldmodel.llm import LLMWorldModel

    from mpr.learned.policy import LLMPolicy, PolicyConfig
    from mpr.learned.scorer import PRMScorer, ScorerPolicy
    from mpr.lm.engine import EngineConfig
    from mpr.lm.hf_engine import HFEngine

    states = alfworld_like_states()
    check_policy(LLMPolicy(tiny_engine, PolicyConfig(mode="score")), states, n=2)
    check_policy(LLMPolicy(tiny_engine, PolicyConfig(mode="score-sample", seed=1)), states, n=2)
    # greedy generation batched vs alone may differ where two tokens tie within float noise
    check_world_model(LLMWorldModel(tiny_engine, max_new_tokens=8), states, ["look"] * 3, deterministic=False)
    value = HFEngine(EngineConfig(model=str(tiny_value_dir), dtype="fp32", threads=1, batch_size=4))
    scorer = PRMScorer(value)
    check_scorer(scorer, states, ["look", "go to shelf 1", "inventory"])
    check_policy(ScorerPolicy(scorer), states, n=2)
