"""The process pool's failure paths (hang, crash, engine error) on toy games, and the episode loop."""

import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
from mpr.planners.greedy import GreedyPlanner
from toygames import CorridorGame, ScriptedPolicy

from mpr.alfworld.data import Task
from mpr.alfworld.env import Reset, SerialEnv
from mpr.alfworld.pool import EnvPool, PoolConfig
from mpr.errors import ConfigError
from mpr.run.episodes import run_episodes

FAST = PoolConfig(num_workers=2, step_timeout=2.0, reset_timeout=2.0, start_timeout=60.0)


@pytest.fixture
def pool():
    p = EnvPool(FAST, make_game=partial(CorridorGame, 10))
    yield p
    p.close()


def test_batched_step_is_aligned_with_slots(pool):
    r = pool.step([Reset("corridor/2"), Reset("corridor/3")])
    assert [t.goal for t in r] == ["reach 2", "reach 3"]
    r = pool.step(["forward", "wait"], slots=[1, 0])
    assert [t.observation for t in r] == ["You are at 1.", "You are at 0."]


@pytest.mark.parametrize("bad, reason", [("hang", "timeout"), ("crash", "died"), ("raise", "engine bug")])
def test_failed_step_is_reported_and_worker_restarted(pool, bad, reason):
    pool.reset(["corridor/2", "corridor/2"])
    broken, healthy = pool.step([bad, "forward"])
    assert broken.done and reason in broken.error
    assert healthy.error is None and healthy.observation == "You are at 1."
    assert pool.restarts == (0 if bad == "raise" else 1)
    # The restarted slot plays a fresh game normally.
    assert pool.reset(["corridor/1"], slots=[0])[0].error is None
    assert pool.step(["forward"], slots=[0])[0].won


def test_hung_reset_times_out(pool):
    (ts,) = pool.step([Reset("corridor/hang-on-reset")])
    assert ts.done and "timeout" in ts.error and pool.restarts == 1


def test_run_goes_on_when_one_episode_hangs():
    tasks = [Task(f"corridor/{n}", "toy", "toy", None) for n in (1, 2, 3, 4)]  # type: ignore[arg-type]
    policy = ScriptedPolicy({"corridor/3": "hang"})
    with EnvPool(FAST, make_game=partial(CorridorGame, 10)) as pool:
        results = run_episodes(pool, GreedyPlanner(policy), tasks)
    by_id = {r.task_id: r for r in results}
    assert set(by_id) == {t.id for t in tasks}
    assert [by_id[f"corridor/{n}"].won for n in (1, 2, 4)] == [True, True, True]
    assert not by_id["corridor/3"].won and "timeout" in by_id["corridor/3"].error


def test_one_planner_call_per_round_batches_all_active_episodes():
    tasks = [Task(f"corridor/{n}", "toy", "toy", None) for n in (3, 3, 3)]  # type: ignore[arg-type]
    policy = ScriptedPolicy()
    env = SerialEnv(3, make_game=partial(CorridorGame, 10))
    results = run_episodes(env, GreedyPlanner(policy), tasks)
    assert all(r.won and r.num_actions == 3 for r in results)
    assert policy.calls == [3, 3, 3]  # three rounds, each one call over all three episodes


def test_more_slots_than_tasks_leaves_the_extra_slots_idle():
    """An env reused across batches (a Ray actor's) may have more slots than a batch has games."""
    env = SerialEnv(3, make_game=partial(CorridorGame, 10))
    for n in (1, 2):  # the same env, reused: one game, then two
        tasks = [Task(f"corridor/{k + 1}", "toy", "toy", None) for k in range(n)]  # type: ignore[arg-type]
        results = run_episodes(env, GreedyPlanner(ScriptedPolicy()), tasks)
        assert sorted(r.task_id for r in results) == [t.id for t in tasks] and all(r.won for r in results)


def test_poll_returns_fast_answers_before_a_slow_reset(pool):
    pool.reset(["corridor/5"], slots=[1])
    pool.submit([Reset("corridor/slow"), "forward"], [0, 1])
    first = pool.poll()
    assert list(first) == [1] and first[1].observation == "You are at 1."
    pool.submit(["forward"], [1])  # slot 1 keeps playing while slot 0 is still resetting
    rest: dict = {}
    while len(rest) < 2:
        rest.update(pool.poll())
    assert rest[0].goal == "reach 1" and rest[1].observation == "You are at 2."


def test_pool_config_is_validated():
    with pytest.raises(ConfigError):
        PoolConfig(num_workers=0)


KILLED_PARENT = """
import os, signal, sys
from functools import partial
sys.path.insert(0, {tests!r})
from toygames import CorridorGame
from mpr.alfworld.env import Reset
from mpr.alfworld.pool import EnvPool, PoolConfig

if __name__ == "__main__":
    pool = EnvPool(PoolConfig(num_workers=1, start_timeout=60.0), make_game=partial(CorridorGame, 10))
    pool.submit([Reset("corridor/2")], [0])
    assert pool._workers[0].conn.poll(60)  # the answer sits unread in this end of the pipe
    os.kill(os.getpid(), signal.SIGKILL)  # dying with unread data resets the worker's end
"""


def test_worker_of_a_killed_parent_exits_without_a_traceback(tmp_path):
    script = tmp_path / "killed.py"
    script.write_text(KILLED_PARENT.format(tests=str(Path(__file__).parent)))
    # run() returns once every holder of stderr is gone, the orphaned worker included
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == -9
    assert "Traceback" not in done.stderr, done.stderr
