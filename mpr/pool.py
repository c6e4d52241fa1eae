"""Many games in parallel: one worker process per slot, each step under a timeout.

``EnvPool`` implements the batched :class:`mpr.core.Env` interface. A batch of
requests (``Reset`` or action strings) is sent to all addressed workers first,
then collected, so the games run concurrently. A worker that does not answer
within its timeout is killed and restarted; one that dies is restarted. Either
way its request returns a TimeStep with ``error`` set and ``done=True`` — the
run goes on, and the caller records the failed episode.

Workers are started with the ``spawn`` method: the parent may hold threads
(torch, tqdm) that make ``fork`` unsafe.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import signal
import time
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Sequence

from mpr.config import require
from mpr.core import TimeStep
from mpr.env import AlfworldGame, EnvConfig, Reset, play_request

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PoolConfig:
    """num_workers: worker processes (= slots). step_timeout / reset_timeout: seconds per request.
    start_timeout: seconds for a fresh worker to import its game engine."""

    num_workers: int = 2
    step_timeout: float = 30.0
    reset_timeout: float = 120.0
    start_timeout: float = 120.0

    def __post_init__(self) -> None:
        require(self.num_workers >= 1, f"num_workers must be >= 1, got {self.num_workers}")
        for name in ("step_timeout", "reset_timeout", "start_timeout"):
            require(getattr(self, name) > 0, f"{name} must be > 0")


def _worker_main(conn: Any, make_game: Callable[[], Any]) -> None:
    """Worker loop: build the game, then answer ("request", Reset | str) until ("close", None)."""
    # Ctrl-C is the parent's to handle (it closes the pool); a worker interrupted
    # mid-step would only print a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        game = make_game()
    except BaseException as exc:  # report start-up failure instead of dying silently
        conn.send(("error", f"worker start failed: {exc.__class__.__name__}: {exc}"))
        return
    conn.send(("ready", None))
    while True:
        try:
            kind, request = conn.recv()
        except (EOFError, KeyboardInterrupt):
            return
        if kind == "close":
            return
        conn.send(("ok", play_request(game, request)))


class _Worker:
    def __init__(self, ctx: Any, make_game: Callable[[], Any]):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, make_game), daemon=True)
        self.proc.start()
        child.close()
        self.ready = False

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(timeout=5)
        self.conn.close()


class EnvPool:
    """``num_workers`` games in worker processes behind the batched Env interface.

    ``make_game`` builds one game object in the worker (``reset(task_id, seed)``
    and ``step(action)`` returning TimeSteps); it must be picklable. The default
    plays ALFWorld with ``env_config``.
    """

    def __init__(
        self,
        config: PoolConfig = PoolConfig(),
        env_config: EnvConfig = EnvConfig(),
        make_game: Callable[[], Any] | None = None,
    ):
        self.config = config
        self.num_slots = config.num_workers
        self._make_game = make_game or partial(AlfworldGame, env_config)
        self._ctx = mp.get_context("spawn")
        self._workers = [_Worker(self._ctx, self._make_game) for _ in range(self.num_slots)]
        self.restarts = 0
        self.failures: list[str] = []

    # -- Env interface ------------------------------------------------------------
    def reset(self, task_ids: Sequence[str], slots: Sequence[int] | None = None) -> list[TimeStep]:
        return self.step([Reset(t) for t in task_ids], slots)

    def step(self, actions: Sequence[str | Reset], slots: Sequence[int] | None = None) -> list[TimeStep]:
        """Send every request, then collect each answer within its timeout; aligned with ``actions``."""
        slots = list(range(len(actions))) if slots is None else list(slots)
        require(len(slots) == len(actions), "step: actions and slots differ in length")
        require(len(set(slots)) == len(slots), "step: a slot appears twice in one batch")
        sent: list[tuple[int, Any, float]] = []
        for slot, action in zip(slots, actions):
            sent.append(self._send(slot, action))
        return [self._collect(slot, action, deadline) for slot, action, deadline in sent]

    def close(self) -> None:
        for w in self._workers:
            try:
                w.conn.send(("close", None))
            except (OSError, BrokenPipeError):
                pass
        for w in self._workers:
            w.proc.join(timeout=5)
            w.kill()

    def __enter__(self) -> "EnvPool":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------
    def _send(self, slot: int, action: str | Reset) -> tuple[int, Any, float]:
        worker = self._workers[slot]
        error = self._await_ready(slot) if not worker.ready else None
        if error:
            return slot, error, 0.0
        worker = self._workers[slot]
        timeout = self.config.reset_timeout if isinstance(action, Reset) else self.config.step_timeout
        try:
            worker.conn.send(("request", action))
        except (OSError, BrokenPipeError):
            return slot, self._restart(slot, "worker pipe broken"), 0.0
        return slot, action, time.monotonic() + timeout

    def _await_ready(self, slot: int) -> TimeStep | None:
        worker = self._workers[slot]
        try:
            if worker.conn.poll(self.config.start_timeout):
                kind, payload = worker.conn.recv()
                if kind == "ready":
                    worker.ready = True
                    return None
                return self._restart(slot, payload)
        except (EOFError, OSError):
            pass
        return self._restart(slot, "worker did not start")

    def _collect(self, slot: int, action: Any, deadline: float) -> TimeStep:
        if isinstance(action, TimeStep):  # already failed while sending
            return action
        conn = self._workers[slot].conn
        try:
            if not conn.poll(max(0.0, deadline - time.monotonic())):
                what = f"reset {action.task_id}" if isinstance(action, Reset) else f"step {action!r}"
                return self._restart(slot, f"timeout: no answer to {what} within the limit")
            kind, payload = conn.recv()
        except (EOFError, OSError):
            return self._restart(slot, "worker process died")
        if kind == "ok":
            return payload
        return self._restart(slot, str(payload))

    def _restart(self, slot: int, reason: str) -> TimeStep:
        """Replace the slot's worker; the request that failed is answered with an error step."""
        log.warning("env worker %d: %s; restarting it", slot, reason)
        self._workers[slot].kill()
        self._workers[slot] = _Worker(self._ctx, self._make_game)
        self.restarts += 1
        self.failures.append(reason)
        return TimeStep(observation="", done=True, error=reason)
