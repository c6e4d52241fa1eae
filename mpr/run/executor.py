"""Where episodes run: this machine's process pool (``local``, the default) or a Ray cluster (``ray``).

A run is a list of **work items** (a task and, for rollouts, which repeat) and an **episode job**
— a picklable description of how to load the models once (``build``) and play a batch of items on
an ``Env`` (``play``, a generator of finished episodes). ``mpr eval``, ``mpr rollout`` and ``mpr
bench`` hand their job to :func:`run_job`; finished episodes come back, one at a time, to the
caller's ``on_result`` — which appends them to the same append-only records whichever executor ran
them, so a run is resumable under either.

``local``: the models load in this process; the games run on the process pool (``workers`` slots)
and every planner call batches all episodes waiting for a decision.

``ray``: ``actors`` Ray actors, each loading the models once and holding one ``Env`` of ``slots``
in-process games reused across games (``SerialEnv``). The driver hands each idle actor a chunk of
items; the actor plays them with the same event loop as ``local`` (so its planner calls batch its
``slots`` episodes) and streams each finished episode back. Models live with the episodes, not in
a shared server: ALFWorld games are CPU-bound and small models are cheap to replicate, so scaling
the actor count scales model throughput with it, and there is no network hop per decision.

Failure: when an actor dies (node lost, process killed), the items of its chunk that had not come
back go to the front of the queue and a replacement actor is started; an item is tried at most
``max_attempts`` times before it is recorded as a failed episode (``error`` set). Episodes are
recorded only when they come back, so none is lost or counted twice.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from mpr.alfworld.data import Task
from mpr.config import require
from mpr.core import Env
from mpr.errors import MprError
from mpr.run.episodes import EpisodeResult, episode_key

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class ExecutorConfig:
    """kind: local | ray. ray only: ``address`` of a running cluster (``auto``, ``HOST:PORT`` or
    ``ray://HOST:10001``; none: start a local Ray instance with ``cpus`` CPUs, default all);
    ``actors`` episode actors of ``slots`` games each; ``cpus_per_actor`` / ``gpus_per_actor``
    reserved per actor (a GPU actor serves its slots' model calls in batches: give it many slots);
    ``max_attempts`` tries per episode when actors die."""

    kind: str = "local"
    address: str | None = None
    actors: int = 2
    slots: int = 1
    cpus: int | None = None
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0
    max_attempts: int = 3

    def __post_init__(self) -> None:
        require(self.kind in EXECUTORS, f"unknown executor {self.kind!r}; choose one of: {', '.join(EXECUTORS)}")
        require(self.actors >= 1, f"ray actors must be >= 1, got {self.actors}")
        require(self.slots >= 1, f"ray slots must be >= 1, got {self.slots}")
        require(self.cpus is None or self.cpus >= 1, f"ray cpus must be >= 1, got {self.cpus}")
        require(self.cpus_per_actor > 0, f"ray cpus_per_actor must be > 0, got {self.cpus_per_actor}")
        require(self.gpus_per_actor >= 0, f"ray gpus_per_actor must be >= 0, got {self.gpus_per_actor}")
        require(self.max_attempts >= 1, f"max_attempts must be >= 1, got {self.max_attempts}")
        require(self.kind == "ray" or self.address is None, "--ray-address needs --executor ray")


@dataclass(frozen=True)
class WorkItem:
    """One episode to play: a task and (rollouts) which of its repeats."""

    task: Task
    repeat: int = 0

    @property
    def key(self) -> str:
        return episode_key(self.task.id, self.repeat)


class EpisodeJob(Protocol):
    """How to play work items; must pickle (Ray ships it to every actor). ``env_config``: the
    games' settings (every worker builds its env from it)."""

    env_config: Any

    def build(self) -> Any:
        """Load models and whatever else ``play`` needs; once per worker."""

    def play(self, parts: Any, env: Env, items: Sequence[WorkItem]) -> Iterator[EpisodeResult]:
        """Play ``items`` on ``env``; yield each finished episode (``repeat`` set) as it finishes."""

    def check(self) -> None:
        """Cheap validation in the driver (checkpoints exist and are of the right kind), so a bad
        input is one error line before any worker starts."""

    def counters(self, parts: Any) -> dict[str, int]:
        """Fallback / parse counters of ``parts`` so far (summed over workers)."""

    def close(self, parts: Any) -> None: ...


def run_job(
    job: EpisodeJob,
    items: Sequence[WorkItem],
    executor: ExecutorConfig,
    workers: int,
    on_result: Callable[[EpisodeResult], None],
    echo: Callable[[str], None] = print,
    on_ready: Callable[[], None] = lambda: None,
) -> dict[str, int]:
    """Play every item; ``on_result`` gets each finished episode (in this process). Returns the
    summed counters. ``workers``: the local executor's env processes (0: one in-process game). ``on_ready``
    is called once the job is checked and loaded (local) or the cluster joined (ray) — where a
    caller opens its progress bar, so bad input never prints one."""
    if not items:
        return {}
    job.check()
    if executor.kind == "ray":
        return _run_on_ray(job, list(items), executor, on_result, echo, on_ready)
    parts = job.build()
    env = None
    try:
        env = make_env(workers, job.env_config, len(items))
        on_ready()
        for result in job.play(parts, env, items):
            on_result(result)
        return job.counters(parts)
    finally:
        if env is not None:
            env.close()
        job.close(parts)


def make_env(workers: int, env_config: Any, num_tasks: int) -> Env:
    """A process pool with ``workers`` slots, or one in-process slot for ``workers=0``."""
    from mpr.alfworld.env import SerialEnv

    if workers == 0:
        return SerialEnv(1, env_config)
    from mpr.alfworld.pool import EnvPool, PoolConfig

    return EnvPool(PoolConfig(num_workers=max(1, min(workers, num_tasks))), env_config)


# -- ray --------------------------------------------------------------------------------------------


class EpisodeActor:
    """A Ray actor: the job's models, loaded once, and one Env of ``slots`` games reused across games."""

    def __init__(self, job: EpisodeJob, slots: int, env_config: Any, threads: int):
        import os

        from mpr.alfworld.env import SerialEnv

        # models with --threads 0 use $MPR_THREADS: default it to the CPUs this actor reserved,
        # not every core of the node (which its neighbours share)
        os.environ.setdefault("MPR_THREADS", str(threads))
        self.job, self.parts = job, job.build()
        self.env = SerialEnv(slots, env_config)

    def run(self, items: list[WorkItem]) -> Iterator[dict[str, Any]]:
        for result in self.job.play(self.parts, self.env, items):
            yield result.to_json()

    def counters(self) -> dict[str, int]:
        return self.job.counters(self.parts)


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise MprError("--executor ray needs Ray: pip install 'mpr[ray]'") from None
    return ray


def connect(executor: ExecutorConfig) -> bool:
    """Join ``executor.address`` or start a local Ray instance; True if this call started it."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, namespace="mpr")
    if executor.address:
        _check_reachable(executor.address)
        kwargs["address"] = executor.address
    else:
        # a local instance: small object store (episodes are kilobytes), no dashboard
        kwargs.update(num_cpus=executor.cpus, object_store_memory=200 * 1024 * 1024)
    try:
        ray.init(**kwargs)
    except Exception as exc:  # a wrong address, an unreachable head node
        raise MprError(f"cannot start or join Ray ({executor.address or 'local'}): {_one_line(exc)}") from None
    return True


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast on a HOST:PORT nobody listens on (ray.init would retry for minutes)."""
    import socket

    if address == "auto" or ":" not in address:
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except (OSError, ValueError) as exc:
        raise MprError(f"cannot start or join Ray ({address}): nothing answers there ({exc})") from None


def actor_name(index: int) -> str:
    return f"mpr-episodes-{index}"


def _run_on_ray(job: EpisodeJob, items: list[WorkItem], executor: ExecutorConfig,
                on_result: Callable[[EpisodeResult], None], echo: Callable[[str], None],
                on_ready: Callable[[], None]) -> dict[str, int]:
    ray = import_ray()
    started_here = connect(executor)
    on_ready()
    run = _RayRun(ray, job, executor, items, on_result, echo)
    try:
        return run.until_done()
    finally:
        for actor in run.live:
            ray.kill(actor)
        if started_here:
            ray.shutdown()


class _RayRun:
    """One run's actors and in-flight streams: chunks go to idle actors, each streamed episode is
    recorded as it comes back, and a dead actor's unfinished items go back to the queue."""

    def __init__(self, ray: Any, job: EpisodeJob, executor: ExecutorConfig, items: list[WorkItem],
                 on_result: Callable[[EpisodeResult], None], echo: Callable[[str], None]):
        self.ray, self.job, self.executor, self.on_result, self.echo = ray, job, executor, on_result, echo
        self.remote_actor = ray.remote(num_cpus=executor.cpus_per_actor, num_gpus=executor.gpus_per_actor,
                                       max_restarts=0)(EpisodeActor)
        self.made = 0
        self.pending = deque(items)
        self.attempts: Counter[str] = Counter()
        self.idle = [self.new_actor() for _ in range(min(executor.actors, len(items)))]
        self.live = list(self.idle)
        self.flights: dict[Any, tuple[Any, list[WorkItem], set[str]]] = {}  # stream -> (actor, chunk, keys back)

    def new_actor(self) -> Any:
        handle = self.remote_actor.options(name=actor_name(self.made)).remote(
            self.job, self.executor.slots, self.job.env_config, max(1, int(self.executor.cpus_per_actor)))
        self.made += 1
        return handle

    def until_done(self) -> dict[str, int]:
        while self.pending or self.flights:
            while self.idle and self.pending:
                actor = self.idle.pop()
                chunk = [self.pending.popleft()
                         for _ in range(_chunk_size(self.executor, len(self.pending), len(self.live)))]
                self.flights[actor.run.options(num_returns="streaming").remote(chunk)] = (actor, chunk, set())
            ready, _ = self.ray.wait(list(self.flights), num_returns=1)
            for stream in ready:
                self.receive(stream)
        totals: Counter[str] = Counter()
        for counts in self.ray.get([a.counters.remote() for a in self.live]):
            totals.update(counts)
        return dict(totals)

    def receive(self, stream: Any) -> None:
        actor, chunk, back = self.flights[stream]
        try:
            result = EpisodeResult.from_json(self.ray.get(next(stream)))
        except StopIteration:
            del self.flights[stream]
            self.idle.append(actor)
            return
        except self.ray.exceptions.RayActorError as exc:
            del self.flights[stream]
            self.actor_died(actor, chunk, back, exc)
            return
        back.add(result.key)
        self.on_result(result)

    def actor_died(self, actor: Any, chunk: list[WorkItem], back: set[str], exc: Exception) -> None:
        if getattr(exc, "actor_init_failed", False):
            raise MprError(f"a Ray worker could not load the job: {_one_line(exc)}") from None
        self.live.remove(actor)
        lost = [it for it in chunk if it.key not in back]
        retry = _requeue(lost, self.attempts, self.executor.max_attempts, self.pending, self.on_result, exc)
        self.echo(f"ray: a worker died ({type(exc).__name__}); {len(retry)} unfinished episode(s) go back "
                  f"in the queue, a new worker starts")
        if self.pending:
            replacement = self.new_actor()
            self.live.append(replacement)
            self.idle.append(replacement)


def _chunk_size(executor: ExecutorConfig, pending: int, actors: int) -> int:
    """Items for the next actor call: two rounds of its slots (so its slots stay busy within the
    call), at most an even share of what is pending among all ``actors`` — the tail of a run is
    spread over every actor instead of landing on the first one to go idle."""
    share = -(-pending // max(1, actors))
    return max(1, min(2 * executor.slots, share, pending))


def _requeue(lost: list[WorkItem], attempts: Counter[str], max_attempts: int, pending: deque[WorkItem],
             on_result: Callable[[EpisodeResult], None], exc: Exception) -> list[WorkItem]:
    """Unfinished items of a dead actor go back to the front of the queue; one that has failed
    ``max_attempts`` times is recorded as a failed episode instead."""
    retry = []
    for item in lost:
        attempts[item.key] += 1
        if attempts[item.key] < max_attempts:
            retry.append(item)
        else:
            on_result(failed_episode(item, f"worker died {attempts[item.key]} times: {type(exc).__name__}"))
    pending.extendleft(reversed(retry))
    return retry


def failed_episode(item: WorkItem, error: str) -> EpisodeResult:
    return EpisodeResult(task_id=item.task.id, task_type=item.task.task_type, won=False, num_actions=0, reward=0.0,
                         goal="", initial="", turns=(), seconds=0.0, env_seconds=0.0, plan_seconds=0.0, error=error,
                         repeat=item.repeat)


def _one_line(exc: BaseException) -> str:
    """The most telling line of a (possibly remote, multi-line) error message."""
    import re

    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    line = next((ln for ln in reversed(lines) if "Error:" in ln or "error:" in ln), lines[-1] if lines else "")
    # our own errors read as they would locally, without their module path
    return re.sub(r"^[\w.]*\.(MprError|ConfigError): ", "", line) or type(exc).__name__


def run_with_progress(job: Any, items: Sequence[WorkItem], executor: ExecutorConfig, workers: int, desc: str,
                      progress: bool, on_result: Callable[[EpisodeResult], None],
                      echo: Callable[[str], None]) -> tuple[list[EpisodeResult], dict[str, int]]:
    """The skeleton ``mpr eval`` and ``mpr rollout`` share: play ``items`` with ``job`` (see
    :func:`run_job`), hand each finished episode to ``on_result`` (which records it) and show a
    progress bar that opens once the run has started. Returns (episodes played now, in the order
    they finished; the job's counters)."""
    from mpr.run.progress import LazyBar

    played: list[EpisodeResult] = []
    if not items:
        return played, {}
    bar = LazyBar(len(items), desc, progress)

    def record(result: EpisodeResult) -> None:
        played.append(result)
        on_result(result)
        bar.update(won=sum(r.won for r in played), errors=sum(r.error is not None for r in played))

    try:
        totals = run_job(job, items, executor, workers, record, echo, bar.open)
    finally:
        bar.close()
    return played, totals
