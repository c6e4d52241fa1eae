"""Tiny deterministic games for testing the env pool and episode loop without ALFWorld.

A ``CorridorGame`` task id is ``corridor/<length>``: the agent wins by saying
"forward" ``length`` times. Actions "hang" and "crash" misbehave on purpose so
the pool's timeout and restart paths can be exercised.
"""

from __future__ import annotations

import os
import time

from mpr.core import TimeStep


class CorridorGame:
    def __init__(self, max_actions: int = 10):
        self.max_actions = max_actions
        self.length = 0
        self.position = 0
        self.actions = 0

    def reset(self, task_id: str, seed: int = 0) -> TimeStep:
        if task_id == "corridor/hang-on-reset":
            time.sleep(3600)
        if task_id == "corridor/slow":
            time.sleep(1.0)
            task_id = "corridor/1"
        self.length = int(task_id.split("/")[1])
        self.position = self.actions = 0
        return TimeStep(observation="You are at 0.", admissible=("forward", "wait"), goal=f"reach {self.length}")

    def step(self, action: str) -> TimeStep:
        if action == "hang":
            time.sleep(3600)
        if action == "crash":
            os._exit(3)
        if action == "raise":
            raise RuntimeError("engine bug")
        self.actions += 1
        if action == "forward":
            self.position += 1
        won = self.position >= self.length
        return TimeStep(
            observation=f"You are at {self.position}.",
            admissible=("forward", "wait"),
            reward=1.0 if won else 0.0,
            done=won or self.actions >= self.max_actions,
            won=won,
        )

    def close(self) -> None:
        pass


class ScriptedPolicy:
    """Plays a fixed action per task id (default "forward") and counts its batched calls."""

    def __init__(self, script: dict[str, str] | None = None):
        self.script = script or {}
        self.calls: list[int] = []

    def propose(self, states, n=1):
        self.calls.append(len(states))
        return [[self.script.get(s.task_id, "forward")] * n for s in states]
