"""Many games in parallel: one worker process per slot, each step under a timeout.

``EnvPool`` implements the batched :class:`mpr.core.Env` interface. ``submit``
sends requests (``Reset`` or action strings) without waiting and ``poll``
returns whichever answers are in, so the episode loop never holds every slot
back for the slowest game (a reset takes 10-100x longer than a step); ``step``
is submit-then-wait-for-all. A worker that does not answer
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from mpr.alfworld.env import AlfworldGame, EnvConfig, Reset, play_request
from mpr.config import require
from mpr.core import TimeStep

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
    # OSError on the pipe: the parent is gone (killed mid-run); there is no one left to answer
    while True:
        try:
            kind, request = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        if kind == "close":
            return
        answer = play_request(game, request)
        try:
            conn.send(("ok", answer))
        except OSError:
            return


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
        config: PoolConfig | None = None,
        env_config: EnvConfig | None = None,
        make_game: Callable[[], Any] | None = None,
    ):
        self.config = config = config or PoolConfig()
        self.num_slots = config.num_workers
        self._make_game = make_game or partial(AlfworldGame, env_config or EnvConfig())
        self._ctx = mp.get_context("spawn")
        self._workers = [_Worker(self._ctx, self._make_game) for _ in range(self.num_slots)]
        self.restarts = 0
        self.failures: list[str] = []
        self._pending: dict[int, tuple[Any, float]] = {}  # slot -> (request, deadline)
        self._done: dict[int, TimeStep] = {}  # answers known without waiting (failed sends)

    # -- Env interface ------------------------------------------------------------
    def reset(self, task_ids: Sequence[str], slots: Sequence[int] | None = None) -> list[TimeStep]:
        return self.step([Reset(t) for t in task_ids], slots)

    def step(self, actions: Sequence[str | Reset], slots: Sequence[int] | None = None) -> list[TimeStep]:
        """Send every request, then wait for all answers (each within its timeout); aligned with ``actions``."""
        slots = list(range(len(actions))) if slots is None else list(slots)
        self.submit(actions, slots)
        results: dict[int, TimeStep] = {}
        while len(results) < len(slots):
            results.update(self.poll())
        return [results[s] for s in slots]

    def submit(self, actions: Sequence[str | Reset], slots: Sequence[int]) -> None:
        """Send requests without waiting; their answers come back from ``poll``."""
        slots = list(slots)
        require(len(slots) == len(actions), "submit: actions and slots differ in length")
        require(len(set(slots)) == len(slots), "submit: a slot appears twice in one batch")
        for slot, action in zip(slots, actions):
            require(slot not in self._pending and slot not in self._done, f"submit: slot {slot} is busy")
            self._send(slot, action)

    def poll(self, timeout: float | None = None) -> dict[int, TimeStep]:
        """Answers that are in: waits until at least one is (or ``timeout`` seconds pass).

        A request past its deadline is answered with an error step and its worker restarted.
        """
        from multiprocessing.connection import wait

        ready = dict(self._done)
        self._done.clear()
        if ready or not self._pending:
            return ready
        deadline = min(d for _, d in self._pending.values())
        wait_for = max(0.0, deadline - time.monotonic())
        if timeout is not None:
            wait_for = min(wait_for, timeout)
        conns = {self._workers[s].conn: s for s in self._pending}
        for conn in wait(list(conns), wait_for):
            slot = conns[conn]
            ready[slot] = self._receive(slot)
        now = time.monotonic()
        for slot, (action, slot_deadline) in list(self._pending.items()):
            if slot not in ready and slot_deadline <= now:
                what = f"reset {action.task_id}" if isinstance(action, Reset) else f"step {action!r}"
                del self._pending[slot]
                ready[slot] = self._restart(slot, f"timeout: no answer to {what} within the limit")
        return ready

    def close(self) -> None:
        for w in self._workers:
            try:
                w.conn.send(("close", None))
            except (OSError, BrokenPipeError):
                pass
        for w in self._workers:
            w.proc.join(timeout=5)
            w.kill()

    def __enter__(self) -> EnvPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------
    def _send(self, slot: int, action: str | Reset) -> None:
        worker = self._workers[slot]
        error = self._await_ready(slot) if not worker.ready else None
        if error:
            self._done[slot] = error
            return
        timeout = self.config.reset_timeout if isinstance(action, Reset) else self.config.step_timeout
        try:
            self._workers[slot].conn.send(("request", action))
        except (OSError, BrokenPipeError):
            self._done[slot] = self._restart(slot, "worker pipe broken")
            return
        self._pending[slot] = (action, time.monotonic() + timeout)

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

    def _receive(self, slot: int) -> TimeStep:
        del self._pending[slot]
        try:
            kind, payload = self._workers[slot].conn.recv()
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
