"""The oracle world model: the real game, for upper-bound ablations. Never a default.

``predict(states, actions)[i]`` is exactly what ALFWorld prints after ``actions[i]`` in
``states[i]``. TextWorld's PDDL state cannot be copied, so the oracle "clones" a state by
resetting its own private game and replaying the state's actions (observations in the state are
ignored; only its actions matter). Requests are served in history order so a request that
continues the game's current history costs one step, not a replay. It also knows the admissible
commands and whether the game is won (``outcomes``), which a learned model has to guess.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

from mpr.alfworld.env import AlfworldGame, EnvConfig
from mpr.core import State, TimeStep

log = logging.getLogger(__name__)

LABEL = "oracle (real game replay; an upper bound, not a learned model)"


class OracleWorldModel:
    label = LABEL

    def __init__(self, env_config: EnvConfig | None = None, seed: int = 0):
        config = env_config or EnvConfig()
        # no expert (not needed) and no action cap (a simulated path may run past the episode's)
        self.game = AlfworldGame(dataclasses.replace(config, expert=False, max_actions=10**6))
        self.seed = seed
        self._at: tuple[str, tuple[str, ...]] | None = None  # (task id, actions) the game is at
        self._won = False
        self._outcomes: dict[tuple[State, str], tuple[tuple[str, ...], bool]] = {}
        self.steps = 0
        self.resets = 0
        self.failures = 0

    def counters(self) -> dict[str, int]:
        return {"failures": self.failures}

    def predict(self, states: Sequence[State], actions: Sequence[str]) -> list[str]:
        if len(states) != len(actions):
            raise ValueError("predict: states and actions differ in length")
        out: list[str] = [""] * len(states)
        if len(self._outcomes) > 100_000:  # only the latest predictions are ever asked about
            self._outcomes.clear()
        order = sorted(range(len(states)), key=lambda i: (states[i].task_id, [t.action for t in states[i].turns]))
        for i in order:
            ts = self._step(states[i], actions[i])
            out[i] = ts.observation
            self._outcomes[(states[i], actions[i])] = (ts.admissible, ts.won)
        return out

    def outcomes(self, states: Sequence[State], actions: Sequence[str],
                 observations: Sequence[str]) -> list[tuple[tuple[str, ...], bool]]:
        """(admissible commands, won) after each predicted step, as the real game reported them."""
        return [self._outcomes.get((s, a), ((), False)) for s, a in zip(states, actions)]

    def _step(self, state: State, action: str) -> TimeStep:
        history = tuple(t.action for t in state.turns)
        try:
            if self._at != (state.task_id, history) or self._won:
                self.game.reset(state.task_id, self.seed)
                self.resets += 1
                for a in history:
                    self.game.step(a)
                    self.steps += 1
            ts = self.game.step(action)
            self.steps += 1
        except Exception as exc:  # a state the game cannot reach (e.g. past a win): count, say so
            self.failures += 1
            log.warning("oracle could not replay %s + %r: %s", state.task_id, action, exc)
            self._at = None
            return TimeStep(observation="Nothing happens.", admissible=state.admissible)
        self._at, self._won = (state.task_id, history + (action,)), ts.won
        return ts

    def close(self) -> None:
        self.game.close()
