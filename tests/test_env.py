"""The Env contract, run against the in-process env and the process pool on real ALFWorld games."""

import pytest

from mpr.alfworld.data import load_walkthrough
from mpr.alfworld.env import EnvConfig, Reset, SerialEnv, split_intro
from mpr.alfworld.pool import EnvPool, PoolConfig
from mpr.core import Env


def test_split_intro_separates_room_and_goal():
    text = "-= Welcome to TextWorld, ALFRED! =-\n\nYou are in a room.\n\nYour task is to: put a mug on desk."
    assert split_intro(text) == ("You are in a room.", "put a mug on desk.")


class EnvContract:
    """Every Env implementation must pass these. Subclasses provide ``make_env(config)``."""

    def make_env(self, config: EnvConfig) -> Env:
        raise NotImplementedError

    @pytest.fixture
    def env(self):
        env = self.make_env(EnvConfig(max_actions=30))
        yield env
        env.close()

    def test_is_an_env(self, env):
        assert isinstance(env, Env) and env.num_slots >= 1

    def test_reset_gives_goal_observation_and_admissible(self, env, valid_unseen):
        (ts,) = env.reset([valid_unseen[0].id])
        assert ts.error is None and not ts.done and not ts.won and ts.reward == 0.0
        assert ts.goal and ts.observation.startswith("You are in the middle of a room")
        assert "look" in ts.admissible and "inventory" in ts.admissible
        assert ts.expert_action == "look"  # the handcoded expert always looks first

    def test_walkthrough_wins_with_reward_one_on_the_last_step(self, env, valid_unseen):
        task = valid_unseen[2]
        env.reset([task.id])
        plan = load_walkthrough(task)
        for i, action in enumerate(plan):
            (ts,) = env.step([action])
            last = i == len(plan) - 1
            assert ts.done == last and ts.won == last and ts.reward == (1.0 if last else 0.0)

    def test_invalid_action_is_a_normal_step(self, env, valid_unseen):
        env.reset([valid_unseen[0].id])
        (ts,) = env.step(["fly to the moon"])
        assert ts.error is None and ts.observation == "Nothing happens." and not ts.done

    def test_episode_is_cut_after_max_actions(self, valid_unseen):
        env = self.make_env(EnvConfig(max_actions=3, expert=False))
        try:
            env.reset([valid_unseen[0].id])
            done = [env.step(["look"])[0].done for _ in range(3)]
            assert done == [False, False, True]
        finally:
            env.close()

    def test_unknown_task_is_an_error_step_not_a_crash(self, env, valid_unseen):
        (ts,) = env.step([Reset("valid_unseen/nope/trial")])
        assert ts.done and "unknown task" in ts.error
        (ts,) = env.reset([valid_unseen[1].id])  # the slot still works
        assert ts.error is None


class TestSerialEnv(EnvContract):
    def make_env(self, config):
        return SerialEnv(1, config)

    def test_step_after_done_is_an_error(self, valid_unseen):
        env = SerialEnv(1, EnvConfig(max_actions=1, expert=False))
        env.reset([valid_unseen[0].id])
        assert env.step(["look"])[0].done
        assert "after the episode ended" in env.step(["look"])[0].error


class TestEnvPool(EnvContract):
    def make_env(self, config):
        return EnvPool(PoolConfig(num_workers=1), config)


def _transcript(config: EnvConfig, tasks) -> list:
    env = SerialEnv(1, config)
    out = []
    for task in tasks:
        (ts,) = env.reset([task.id])
        out.append((ts.observation, ts.goal, ts.admissible, ts.expert_action))
        while not ts.done:
            (ts,) = env.step([ts.expert_action or "look"])
            out.append((ts.observation, ts.admissible, ts.expert_action, ts.won, ts.reward))
    env.close()
    return out


def test_caches_do_not_change_a_single_byte(valid_unseen):
    """cached == uncached: expert transcripts (observations, admissible lists, expert moves).

    The third run re-installs the caches with an empty memory, so its translations
    come from the on-disk cache the first run wrote.
    """
    from mpr.alfworld import speedups

    tasks = [valid_unseen[1], valid_unseen[3]]
    cached = _transcript(EnvConfig(), tasks)
    uncached = _transcript(EnvConfig(parse_cache=False, pddl_cache=False), tasks)
    disk_hits = speedups.PDDL_STATS.disk_hits
    from_disk = _transcript(EnvConfig(), tasks)
    assert len(cached) > 10 and cached == uncached == from_disk
    assert speedups.PARSE_STATS.hits > 0 and speedups.PDDL_STATS.disk_hits >= disk_hits + 2


def test_game_exposes_its_walkthrough(valid_unseen):
    from mpr.alfworld.env import AlfworldGame

    game = AlfworldGame(EnvConfig(expert=False))
    assert game.walkthrough == []
    game.reset(valid_unseen[0].id)
    assert game.walkthrough == load_walkthrough(valid_unseen[0]) and len(game.walkthrough) >= 2
    game.close()


def test_expert_is_deterministic_for_a_seed(valid_unseen):
    tasks = [valid_unseen[5]]  # pick_two: the expert breaks ties at random
    assert _transcript(EnvConfig(), tasks) == _transcript(EnvConfig(), tasks)
