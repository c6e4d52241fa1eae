"""Real ALFWorld games through TextWorld's PDDL engine (alfworld 0.4.2).

``AlfworldGame`` plays one game in this process. ``SerialEnv`` holds several
of them behind the batched :class:`mpr.core.Env` interface; ``mpr.alfworld.pool.EnvPool``
offers the same interface with one worker process per slot.

Text conventions: the reset text ``-= Welcome to TextWorld, ALFRED! =-\\n\\n<room>\\n\\nYour task is to: <goal>``
is split into the initial observation ``<room>`` and the goal ``<goal>``.
An episode ends when the game is won or after ``max_actions`` actions (30, the
paper's cap); reward is 1.0 on the winning step and 0.0 otherwise.
"""

from __future__ import annotations

import logging
import os
import random
import re
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mpr.alfworld.data import Task, ensure_traj_data, read_game_json, resolve_task
from mpr.config import require
from mpr.core import MAX_EPISODE_ACTIONS, TimeStep
from mpr.errors import GameFileError, MprError

log = logging.getLogger(__name__)

def default_cache_dir(name: str) -> str:
    """``$MPR_CACHE_DIR/<name>``, else ``~/.cache/mpr/<name>``."""
    base = os.environ.get("MPR_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "mpr")
    return os.path.join(base, name)


_BANNER = re.compile(r"^\s*-= Welcome to TextWorld, ALFRED! =-\s*", re.DOTALL)
_GOAL = re.compile(r"\s*Your task is to:\s*(.*?)\s*$", re.DOTALL)


@dataclass(frozen=True)
class EnvConfig:
    """How one ALFWorld game is played.

    data_dir: ALFWorld data dir (None: ``$ALFWORLD_DATA`` or ``~/.cache/alfworld``).
    max_actions: actions before an episode is cut off (the paper uses 30).
    expert: compute the handcoded expert's next action at every step.
    parse_cache / pddl_cache: memoize TextWorld's grammar parsing / PDDL translation.
    pddl_cache_dir: on-disk translation cache shared by processes and runs (~160 KB
        per game; None disables it). Default: ``$MPR_CACHE_DIR/pddl2sas`` or
        ``~/.cache/mpr/pddl2sas``.
    """

    data_dir: str | None = None
    max_actions: int = MAX_EPISODE_ACTIONS
    expert: bool = True
    parse_cache: bool = True
    pddl_cache: bool = True
    pddl_cache_dir: str | None = field(default_factory=lambda: default_cache_dir("pddl2sas"))

    def __post_init__(self) -> None:
        require(self.max_actions >= 1, f"max_actions must be >= 1, got {self.max_actions}")


@dataclass(frozen=True)
class Reset:
    """An Env.step "action" that (re)starts a slot on a task id.

    ``seed`` seeds the only randomness in a game: the handcoded expert's
    tie-breaking (it calls ``random.choice``).
    """

    task_id: str
    seed: int = 0


def split_intro(text: str) -> tuple[str, str]:
    """Split the reset text into (initial observation, goal)."""
    body = _BANNER.sub("", text)
    m = _GOAL.search(body)
    if not m:
        return body.strip(), ""
    return body[: m.start()].strip(), m.group(1).strip()


class AlfworldGame:
    """One ALFWorld game in this process: ``reset(task_id)`` then ``step(action)``.

    Not thread-safe; one instance plays one game at a time and can be reset onto
    any other game. Heavy imports happen on first use.
    """

    def __init__(self, config: EnvConfig | None = None):
        self.config = config or EnvConfig()
        self.task: Task | None = None
        self._env: Any = None
        self._loaded_file: Path | None = None
        self._num_actions = 0
        self._done = True
        self._expert: _HandcodedExpert | None = None
        self.expert_failures = 0

    # -- public verbs -----------------------------------------------------
    def reset(self, task_id: str, seed: int = 0) -> TimeStep:
        task = resolve_task(task_id, self.config.data_dir)
        self._load(task)
        if self._expert is not None:
            self._expert.seed(seed, task.id)
        try:
            state = self._env.reset()
        except MprError:
            raise
        except Exception as exc:
            raise GameFileError(f"cannot start game {task.id}: {exc.__class__.__name__}: {exc}") from None
        self._num_actions, self._done = 0, False
        initial, goal = split_intro(state.feedback)
        return TimeStep(
            observation=initial,
            admissible=tuple(state.admissible_commands or ()),
            goal=goal,
            expert_action=self._expert_action(state),
        )

    def step(self, action: str) -> TimeStep:
        if self._env is None or self._done:
            raise MprError("step() called before reset() or after the episode ended")
        state, _score, _done = self._env.step(action)
        self._num_actions += 1
        won = bool(state.won)
        self._done = won or self._num_actions >= self.config.max_actions
        return TimeStep(
            observation=(state.feedback or "").strip(),
            admissible=tuple(state.admissible_commands or ()),
            reward=1.0 if won else 0.0,
            done=self._done,
            won=won,
            expert_action=None if self._done else self._expert_action(state, action),
        )

    @property
    def walkthrough(self) -> list[str]:
        """The loaded game's stored winning command list (empty before the first reset)."""
        return list(getattr(self._env, "walkthrough", None) or []) if self._env is not None else []

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env, self._loaded_file = None, None

    # -- internals ----------------------------------------------------------
    def _load(self, task: Task) -> None:
        """Load the game unless it is the one already loaded (then reset suffices)."""
        self.task = task
        if self._loaded_file == task.game_file and self._env is not None:
            return
        read_game_json(task.game_file)  # clear error for corrupt files before TextWorld sees them
        import textworld
        from alfworld.agents.environment.alfred_tw_env import (
            AlfredDemangler,
            AlfredInfos,
        )

        from mpr.alfworld import speedups

        speedups.install(self.config.parse_cache, self.config.pddl_cache, self.config.pddl_cache_dir)
        wrappers: list[Any] = [AlfredDemangler(shuffle=False), AlfredInfos]
        use_expert = self.config.expert and _ensure_traj_data(task)
        # The expert reads the game's facts; only ask TextWorld for them when needed.
        infos = textworld.EnvInfos(won=True, admissible_commands=True, facts=use_expert)
        self.close()
        try:
            self._env = textworld.start(str(task.game_file), infos, wrappers=wrappers)
        except MprError:
            raise
        except Exception as exc:
            raise GameFileError(f"cannot load game {task.id}: {exc.__class__.__name__}: {exc}") from None
        self._loaded_file = task.game_file
        self._expert = _HandcodedExpert(task.game_file) if use_expert else None

    def _expert_action(self, state: Any, last_action: str | None = None) -> str | None:
        if self._expert is None:
            return None
        action = self._expert.next_action(state, last_action)
        if action is None:
            self.expert_failures += 1
        return action


class _HandcodedExpert:
    """ALFWorld's handcoded TextWorld expert, driven by hand so its failures never break a step.

    (alfworld's ``AlfredExpert`` wrapper raises from inside ``env.step`` when the
    expert times out, which would lose the step; here a failure just means "no
    expert action" and is counted.)
    """

    def __init__(self, game_file: Path):
        self.game_file = game_file
        self._agent: Any = None
        self._rng = random.Random(0)

    def seed(self, seed: int, task_id: str) -> None:
        """Seed the expert's tie-breaking from (seed, task id), independent of process and order."""
        self._rng = random.Random(zlib.crc32(f"{seed}:{task_id}".encode()))

    def next_action(self, state: Any, last_action: str | None) -> str | None:
        from alfworld.agents.expert import HandCodedTWAgent, handcoded_expert

        # The expert calls the global ``random`` module; point it at our seeded generator.
        handcoded_expert.random = self._rng  # type: ignore[attr-defined]
        try:
            if last_action is None:  # reset: the expert first observes, then asks to look
                self._agent = HandCodedTWAgent(max_steps=200)
                self._agent.reset(str(self.game_file))
                self._agent.observe(state["feedback"])
                return "look"
            action = self._agent.act(state, 0, state["won"], last_action)
        except Exception as exc:  # the expert's own bugs and timeouts: count, do not crash
            log.debug("handcoded expert failed on %s: %s", self.game_file, exc)
            return None
        return action if action in (state["admissible_commands"] or ()) else None


def _ensure_traj_data(task: Task) -> bool:
    """The handcoded expert reads traj_data.json beside the game; write it if we can."""
    try:
        ensure_traj_data(task.trial_dir)
        return True
    except (OSError, MprError) as exc:
        log.warning("expert disabled for %s: cannot write traj_data.json (%s)", task.id, exc)
        return False


class SerialEnv:
    """The batched Env interface over in-process games, stepped one after another.

    Errors from a game (corrupt file, engine failure) become TimeSteps with
    ``error`` set, as in the process pool, so callers handle one contract.
    ``make_game`` builds each slot's game (default: ``AlfworldGame(config)``).
    """

    def __init__(
        self,
        num_slots: int = 1,
        config: EnvConfig | None = None,
        make_game: Callable[[], Any] | None = None,
    ):
        require(num_slots >= 1, f"num_slots must be >= 1, got {num_slots}")
        self.num_slots = num_slots
        config = config or EnvConfig()
        make = make_game or (lambda: AlfworldGame(config))
        self._games = [make() for _ in range(num_slots)]
        self._done: dict[int, TimeStep] = {}

    def reset(self, task_ids: Sequence[str], slots: Sequence[int] | None = None) -> list[TimeStep]:
        return self.step([Reset(t) for t in task_ids], slots)

    def step(self, actions: Sequence[str | Reset], slots: Sequence[int] | None = None) -> list[TimeStep]:
        slots = list(range(len(actions))) if slots is None else list(slots)
        require(len(slots) == len(actions), "step: actions and slots differ in length")
        return [play_request(self._games[s], a) for s, a in zip(slots, actions)]

    def submit(self, actions: Sequence[str | Reset], slots: Sequence[int]) -> None:
        """Play the requests now (in order); ``poll`` hands the answers back."""
        self._done.update(zip(slots, self.step(actions, slots)))

    def poll(self, timeout: float | None = None) -> dict[int, TimeStep]:
        done, self._done = self._done, {}
        return done

    def close(self) -> None:
        for g in self._games:
            g.close()


def play_request(game: Any, request: str | Reset) -> TimeStep:
    """Apply one Env.step request to a game; failures become an error TimeStep (done=True)."""
    try:
        if isinstance(request, Reset):
            return game.reset(request.task_id, request.seed)
        return game.step(request)
    except MprError as exc:
        return TimeStep(observation="", done=True, error=str(exc))
    except Exception as exc:  # an engine bug in one game must not end the run
        log.warning("game error on %r: %s: %s", request, exc.__class__.__name__, exc)
        return TimeStep(observation="", done=True, error=f"{exc.__class__.__name__}: {exc}")
