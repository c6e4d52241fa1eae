"""``--executor ray``: episodes on a real local Ray cluster (2 CPUs on 127.0.0.1) give the same records as
the local process pool, resume each other's runs, and survive a killed actor without losing or double
counting an episode."""

from __future__ import annotations

import dataclasses
import json
import re
import time

import pytest

from tests.conftest import mpr

ray = pytest.importorskip("ray", reason="the ray extra is part of mpr[test]")

def records(path) -> dict:
    """Episode records by (task, repeat)."""
    out = {}
    for line in open(path):
        d = json.loads(line)
        if d.get("type") == "episode":
            out[(d["task_id"], d.get("repeat", 0))] = d
    return out


def same_records(a, b) -> bool:
    """Discrete content exactly, values within the tolerance batch layouts need."""
    from mpr.run.episodes import record_differences

    assert record_differences(a, b) == []
    return True


@pytest.fixture(scope="module")
def cluster():
    """One local Ray instance for the module (the executor joins it instead of starting its own)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, namespace="mpr",
             object_store_memory=100 * 1024 * 1024, runtime_env={"env_vars": {"OMP_NUM_THREADS": "1",
                                                                             "MPR_THREADS": "1"}})
    yield
    ray.shutdown()


def test_expert_rollouts_on_ray_equal_local_and_resume_a_local_run(cluster, games_root, tmp_path):
    from mpr.training.rollout import RolloutConfig, rollout

    from mpr.alfworld.env import EnvConfig
    from mpr.run.executor import ExecutorConfig

    quiet = dict(progress=False, echo=lambda _m: None)
    base = RolloutConfig(policy="expert", split="valid_seen", limit=4, repeats=2, reset_half=0.5, seed=1,
                         workers=2, env=EnvConfig(max_actions=12))
    rollout(base, tmp_path / "local", **quiet)
    # a local run killed after 4 of its 8 episodes, finished on Ray: it resumes, whichever executor wrote it
    (tmp_path / "mixed").mkdir()
    head = open(tmp_path / "local" / "rollouts.jsonl").readlines()[:5]  # the header and 4 episodes
    (tmp_path / "mixed" / "rollouts.jsonl").write_text("".join(head))
    said: list[str] = []
    summary = rollout(dataclasses.replace(base, executor=ExecutorConfig(kind="ray", actors=2, slots=2)),
                      tmp_path / "mixed", progress=False, echo=said.append)
    assert any("4 of 8 rollouts already recorded" in m for m in said)
    assert summary["rollouts_run_now"] == 4
    local, mixed = records(tmp_path / "local" / "rollouts.jsonl"), records(tmp_path / "mixed" / "rollouts.jsonl")
    assert len(local) == 8 and same_records(mixed, local)
    assert any(r.get("prefix") for r in local.values())  # reset-50-50 prefixes were replayed on both


def test_tiny_policy_rollouts_on_ray_survive_a_killed_actor(cluster, tiny_chain, tmp_path):
    """A trained tiny policy (sampling, seeded per state) rolls out 5 games on 2 actors; the first
    actor is killed when the first episode comes back. Its unfinished games are replayed on a new
    actor; the records equal a local run's."""
    from mpr.training.rollout import RolloutConfig, RolloutJob, rollout

    from mpr.alfworld.env import EnvConfig
    from mpr.lm.engine import EngineConfig
    from mpr.run.episodes import EpisodeStore
    from mpr.run.executor import ExecutorConfig, WorkItem, actor_name, run_job

    config = RolloutConfig(policy=str(tiny_chain / "PI"), split="valid_seen", limit=5, temperature=1.0, workers=2,
                           env=EnvConfig(max_actions=4), model=EngineConfig(threads=1))
    rollout(config, tmp_path / "local", progress=False, echo=lambda _m: None)
    resolved = json.loads((tmp_path / "local" / "config.json").read_text())["model"]["model"]  # the policy's model dir

    @dataclasses.dataclass(frozen=True)
    class StallsOnFirstActor(RolloutJob):
        """The rollout job, except that the first actor stalls after its first finished episode: it
        surely holds an unfinished game when it is killed, however fast the games run."""

        def play(self, parts, env, items):
            for result in super().play(parts, env, items):
                yield result
                if ray.get_runtime_context().get_actor_name() == actor_name(0):
                    time.sleep(600)

    job = StallsOnFirstActor(dataclasses.replace(config, model=EngineConfig(model=resolved, threads=1)))

    store = EpisodeStore(tmp_path / "ray.jsonl", job.config.record_header())
    said: list[str] = []
    killed: list[str] = []

    def on_result(result):
        store.add(result)
        # 5 games on 2 actors: each call gets 2 (the fifth waits), so actor 0 holds an unfinished game
        # whichever actor's episode comes back first (with 4, actor 0 got 1 game and, when that came
        # back first, held nothing: the old flake)
        if not killed:
            ray.kill(ray.get_actor(actor_name(0), namespace="mpr"))
            killed.append(actor_name(0))

    from mpr.alfworld.data import list_tasks

    items = [WorkItem(t) for t in list_tasks("valid_seen", limit=5)]
    run_job(job, items, ExecutorConfig(kind="ray", actors=2, slots=1), 2, on_result, said.append)
    died = [m for m in said if "a worker died" in m]
    assert killed and len(died) == 1 and int(re.search(r"(\d+) unfinished", died[0]).group(1)) >= 1
    lines = [json.loads(x) for x in open(tmp_path / "ray.jsonl")]
    keys = [d["task_id"] for d in lines if d.get("type") == "episode"]
    assert sorted(keys) == sorted(set(keys)) and len(keys) == 5  # nothing lost, nothing counted twice
    assert same_records(records(tmp_path / "ray.jsonl"), records(tmp_path / "local" / "rollouts.jsonl"))


def test_tiny_policy_eval_on_ray_equals_local(cluster, tiny_chain, tmp_path):
    """mpr eval's path: the same records and counters from 2 actors with 2 slots each as from the pool."""
    from mpr.alfworld.env import EnvConfig
    from mpr.lm.engine import EngineConfig
    from mpr.run.evaluation import EvalConfig, evaluate
    from mpr.run.executor import ExecutorConfig

    config = EvalConfig(agent="policy", policy_ckpt=str(tiny_chain / "PI"), split="valid_seen", limit=3, workers=2,
                        env=EnvConfig(max_actions=3), model=EngineConfig(threads=1))
    local = evaluate(config, tmp_path / "local.jsonl", progress=False, echo=lambda _m: None)
    on_ray = evaluate(dataclasses.replace(config, executor=ExecutorConfig(kind="ray", actors=2, slots=2)),
                      tmp_path / "ray.jsonl", progress=False, echo=lambda _m: None)
    assert same_records(records(tmp_path / "ray.jsonl"), records(tmp_path / "local.jsonl"))
    assert on_ray["summary"] == local["summary"] and on_ray["episodes_run_now"] == 3
    assert on_ray["counters_now"] == local["counters_now"]


def test_bad_model_inputs_stop_a_ray_run_with_one_line(cluster, games_root):
    """A wrong checkpoint is caught in the driver before any actor starts; a model the actors cannot
    load ends the run with the actor's one-line reason."""
    from mpr.alfworld.data import list_tasks
    from mpr.errors import MprError
    from mpr.lm.engine import EngineConfig
    from mpr.run.evaluation import EvalConfig, EvalJob
    from mpr.run.executor import ExecutorConfig, WorkItem, run_job

    items = [WorkItem(t) for t in list_tasks("valid_seen", limit=1)]
    cases = [(EvalConfig(agent="policy", policy_ckpt="/nonexistent/ckpt", split="valid_seen", limit=1),
              "--policy /nonexistent/ckpt: no such checkpoint directory"),
             (EvalConfig(agent="llm", model=EngineConfig(model="/nonexistent/model"), split="valid_seen", limit=1),
              "a Ray worker could not load the job: --model /nonexistent/model: no such directory")]
    for config, message in cases:
        with pytest.raises(MprError) as info:
            run_job(EvalJob(config), items, ExecutorConfig(kind="ray", actors=1), 0, lambda r: None,
                    lambda m: None)
        assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_executor_flags_bad_input_is_one_line(games_root, tmp_path):
    out = mpr("eval", "--agent", "expert", "--limit", 1, "--ray-address", "127.0.0.1:1", ok=False)
    assert out.returncode == 2 and out.stderr.strip() == "error: --ray-address needs --executor ray"
    out = mpr("eval", "--agent", "expert", "--limit", 1, "--executor", "ray", "--ray-actors", 0, ok=False)
    assert out.returncode == 2 and out.stderr.strip() == "error: ray actors must be >= 1, got 0"
    out = mpr("rollout", "--policy", "expert", "--limit", 1, "--out", tmp_path / "r", "--no-progress", "--executor", "ray",
              "--ray-address", "127.0.0.1:1", ok=False)
    assert out.returncode == 2
    assert out.stderr.strip().startswith("error: cannot start or join Ray (127.0.0.1:1): nothing answers")
