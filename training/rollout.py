"""``mpr rollout``: K rollouts per game with a policy, recorded append-only, resumable.

A rollout directory holds ``rollouts.jsonl`` (a header with the settings, then one line per
finished episode: its whole trajectory — every action and observation, the admissible commands
of every state, the outcome), ``config.json`` (the resolved config) and ``summary.json``.
Each transition (s_t, a_t, o_{t+1}, r_t, done_t, won_t) is recovered by :func:`transitions`.

Episodes are keyed ``task_id#k`` (k-th rollout); a rerun skips the recorded ones, so a killed run
resumes with nothing lost or duplicated. Rollout k uses seed ``seed + k`` for the policy and the
game, and every random choice is seeded per (seed, state), so the records do not depend on how
episodes were spread over workers or interrupted.

Exploration options (the seed paper's):

* ``reset_half`` — reset-50-50 at 0.5: that fraction of rollouts starts from a state on the
  game's walkthrough, reached by replaying a random-length prefix of it (recorded as ``prefix``;
  those turns are not the policy's and are skipped when targets are computed).
* ``steer_prob`` — steered exploration: an LLM policy sees the exploration prompt with this
  probability per state.
* ``epsilon`` — with this probability per state, a uniformly random admissible action
  (useful to get failures out of reference policies such as the expert).
* ``branch_from`` — branch rollouts: rollout k of a game replays a recorded rollout of it (from
  that directory) up to a seeded random step t of the policy's own, takes there one of the policy's
  proposals other than the recorded action, and goes on with the policy. Merged with the source,
  state s_t then has Monte-Carlo returns for two actions: the same-state alternatives a PRM needs
  to rank a state's actions (its held-out pair accuracy), not only states. The replayed turns are
  recorded as ``prefix`` (the branch action is the policy's).

Expert demonstrations use the same format: ``--policy walkthrough`` (the games' stored
solutions) or ``--policy expert`` (ALFWorld's handcoded expert).
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mpr.alfworld.agents import REFERENCE_AGENTS
from mpr.alfworld.data import (
    SPLITS,
    TASK_TYPES,
    list_tasks,
    load_walkthrough,
)
from mpr.alfworld.env import EnvConfig
from mpr.compose import rollout_policy
from mpr.config import require, to_dict
from mpr.core import Env, PlanResult, Policy, State
from mpr.errors import MprError
from mpr.lm.engine import EngineConfig
from mpr.owned import atomic_write_text, check_dir, claim_dir, has_mpr_header
from mpr.run.episodes import EpisodeResult, EpisodeStore, check_resumable, iter_episodes, read_episodes
from mpr.run.executor import ExecutorConfig, WorkItem, run_with_progress

RECORDS = "rollouts.jsonl"


@dataclass(frozen=True)
class RolloutConfig:
    """What to roll out. ``policy``: walkthrough, expert, random, llm (the default model), or a
    trained policy checkpoint directory."""

    policy: str = "expert"
    split: str = "train"
    limit: int | None = None
    task_type: str | None = None
    repeats: int = 1
    temperature: float = 1.0
    epsilon: float = 0.0
    reset_half: float = 0.0
    steer_prob: float = 0.0
    expert_labels: bool = False  # record the handcoded expert's action in every state (DAgger labels)
    branch_from: str | None = None  # a rollouts dir whose episodes these rollouts branch off (see above)
    seed: int = 0
    workers: int = 2
    env: EnvConfig = field(default_factory=EnvConfig)
    model: EngineConfig = field(default_factory=EngineConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)  # where episodes run (not in the records)

    def __post_init__(self) -> None:
        require(self.split in SPLITS, f"unknown split {self.split!r}; choose one of: {', '.join(SPLITS)}")
        require(self.task_type is None or self.task_type in TASK_TYPES,
                f"unknown task type {self.task_type!r}; choose one of: {', '.join(TASK_TYPES)}")
        require(self.limit is None or self.limit >= 1, f"--limit must be >= 1, got {self.limit}")
        require(self.repeats >= 1, f"--repeats must be >= 1, got {self.repeats}")
        require(self.temperature >= 0, f"--temperature must be >= 0, got {self.temperature}")
        for name in ("epsilon", "reset_half", "steer_prob"):
            v = getattr(self, name)
            require(0 <= v <= 1, f"{name} must be in [0, 1], got {v}")
        require(self.workers >= 0, f"--workers must be >= 0, got {self.workers}")
        require(self.branch_from is None or self.reset_half == 0,
                "--branch-from replays recorded rollouts; it does not combine with --reset-half")

    @property
    def is_llm(self) -> bool:
        return self.policy not in REFERENCE_AGENTS

    def record_header(self) -> dict[str, Any]:
        """Everything that determines the records; a resumed directory must match it."""
        header = {k: v for k, v in to_dict(self).items() if k not in ("workers", "env", "model", "executor")}
        if not self.expert_labels:
            del header["expert_labels"]  # records made before the flag existed resume unchanged
        if self.branch_from is None:
            del header["branch_from"]
        else:
            header["branch_from"] = str(Path(self.branch_from).resolve())
        header["max_actions"] = self.env.max_actions
        if self.is_llm:
            header["model"] = self.model.model
        return header


def resolve_policy_model(policy: str) -> str:
    """The model directory behind ``--policy``: the default model for ``llm``, else a policy checkpoint."""
    if policy == "llm":
        return "default"
    from mpr.lm.checkpoints import load_checkpoint

    return str(load_checkpoint(policy, "policy", flag="--policy").path)


def _rng(*parts: Any) -> random.Random:
    return random.Random(zlib.crc32(":".join(map(str, parts)).encode()))


BRANCH_PROPOSALS = 8
"""Proposals a branch rollout draws at its branch state, the first unlike the recorded action taken."""


def branch_point(config: RolloutConfig, source: EpisodeResult, repeat: int) -> int:
    """The step a branch rollout leaves ``source`` at: seeded, uniform over the policy's own turns."""
    return _rng("branch", config.seed, source.key, repeat).randint(source.prefix, source.num_actions - 1)


def branch_sources(path: str | Path) -> dict[str, list[EpisodeResult]]:
    """The episodes of rollouts dir ``path`` that have a turn of the policy's own, by game, by repeat."""
    out: dict[str, list[EpisodeResult]] = {}
    for ep in sorted(load_rollouts(path), key=lambda e: e.repeat):
        if ep.num_actions > ep.prefix:
            out.setdefault(ep.task_id, []).append(ep)
    return out


def reset_prefix(config: RolloutConfig, task_id: str, repeat: int, walkthrough_len: int) -> int:
    """How many walkthrough commands rollout ``repeat`` of ``task_id`` replays first (0: from the start)."""
    if config.reset_half <= 0 or walkthrough_len < 2:
        return 0
    rng = _rng("reset", config.seed, task_id, repeat)
    if rng.random() >= config.reset_half:
        return 0
    return rng.randint(1, walkthrough_len - 1)


class RolloutPlanner:
    """Replays each episode's walkthrough prefix, then follows the policy (epsilon-mixed).

    One ``policy.propose`` call per decision round for all episodes past their prefix.
    """

    def __init__(self, policy: Policy, prefixes: dict[str, int], walkthroughs: dict[str, list[str]],
                 epsilon: float = 0.0, seed: int = 0, avoid: dict[str, str] | None = None):
        self.policy, self.prefixes, self.walkthroughs = policy, prefixes, walkthroughs
        self.epsilon, self.seed = epsilon, seed
        self.avoid = avoid or {}  # branch rollouts: the recorded action not to take right after the prefix
        self.random_actions = 0
        self.branch_fallbacks = 0

    def __call__(self, roots: Sequence[State]) -> list[PlanResult]:
        actions: list[str | None] = [None] * len(roots)
        own, branching = [], []
        for i, s in enumerate(roots):
            prefix = self.prefixes.get(s.task_id, 0)
            if s.num_actions < prefix:
                actions[i] = self.walkthroughs[s.task_id][s.num_actions]
            elif s.num_actions == prefix and s.task_id in self.avoid:
                branching.append(i)
            else:
                own.append(i)
        if own:
            for i, (a, *_rest) in zip(own, self.policy.propose([roots[i] for i in own], 1)):
                actions[i] = self._explore(roots[i]) or a
        if branching:
            proposals = self.policy.propose([roots[i] for i in branching], BRANCH_PROPOSALS)
            for i, props in zip(branching, proposals):
                actions[i] = self._branch_action(roots[i], props)
        return [PlanResult(a) for a in actions]  # type: ignore[arg-type]

    def _branch_action(self, state: State, proposals: Sequence[str]) -> str:
        """The first proposal other than the recorded action; when the policy proposes nothing else,
        a seeded uniform pick among the other admissible actions (counted in ``branch_fallbacks``)."""
        avoided = self.avoid[state.task_id]
        for a in proposals:
            if a != avoided:
                return a
        others = [a for a in state.admissible if a != avoided]
        self.branch_fallbacks += 1
        if not others:
            return avoided
        return _rng("branch-fallback", self.seed, state.digest()).choice(others)

    def _explore(self, state: State) -> str | None:
        if self.epsilon <= 0 or not state.admissible:
            return None
        rng = _rng("epsilon", self.seed, state.digest())
        if rng.random() >= self.epsilon:
            return None
        self.random_actions += 1
        return rng.choice(state.admissible)


def rollout(config: RolloutConfig, out: str | Path, progress: bool = True,
            echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or resume) the rollouts into directory ``out``; returns the summary it saved."""
    out = Path(out)
    model_dir = resolve_policy_model(config.policy) if config.is_llm else None
    if model_dir is not None:
        config = dataclasses.replace(config, model=dataclasses.replace(config.model, model=model_dir))
    legacy = [has_mpr_header(RECORDS)]
    if check_dir(out, "rollouts", legacy=legacy) and (out / RECORDS).exists():
        check_resumable(out / RECORDS, config.record_header(), "--out")
    tasks = list_tasks(config.split, config.env.data_dir, config.task_type, None if config.branch_from else config.limit)
    if config.branch_from:
        sources = branch_sources(config.branch_from)
        tasks = [t for t in tasks if t.id in sources][:config.limit]
        if not tasks:
            raise MprError(f"--branch-from {config.branch_from}: no rollout of a {config.split} game to branch off")
    out = claim_dir(out, "rollouts", legacy=legacy)
    store = EpisodeStore(out / RECORDS, config.record_header())
    atomic_write_text(out / "config.json", json.dumps(to_dict(config), indent=2))
    todo = [(k, t) for k in range(config.repeats) for t in tasks if not store.is_finished(t.id, k)]
    total = config.repeats * len(tasks)
    if len(todo) < total:
        echo(f"resuming {out}: {total - len(todo)} of {total} rollouts already recorded")
    started = time.perf_counter()
    played, _ = run_with_progress(RolloutJob(config), [WorkItem(t, k) for k, t in todo], config.executor,
                                  config.workers, f"rollouts ({config.policy}) on {config.split}", progress,
                                  store.add, echo)
    new = len(played)
    wall = time.perf_counter() - started
    summary = summarize_rollouts(list(store.results.values()))
    summary.update(rollouts_run_now=new, wall_seconds_now=wall)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    echo(f"{summary['episodes']} rollouts ({summary['won']} won, {summary['errors']} errors), "
         f"{summary['transitions']} transitions in {out / RECORDS}")
    if new:
        echo(f"ran {new} rollouts in {wall:.1f}s ({60 * new / wall:.1f} per minute)")
    return summary


@dataclass(frozen=True)
class RolloutJob:
    """Rollouts for ``mpr.run.executor.run_job``: the policy's model loads once per worker; each repeat
    ``k`` plays with its own seed (``seed + k``), walkthrough prefixes and exploration."""

    config: RolloutConfig

    @property
    def env_config(self) -> EnvConfig:
        c = self.config
        return dataclasses.replace(c.env, expert=c.env.expert or c.expert_labels or c.policy == "expert")

    def check(self) -> None:
        """The policy checkpoint was resolved (and checked) by ``rollout`` already."""

    def build(self) -> Any:
        from mpr.lm.backends import make_engine

        return make_engine(self.config.model) if self.config.is_llm else None

    def play(self, engine: Any, env: Env, items: Sequence[WorkItem]) -> Iterator[EpisodeResult]:
        config = self.config
        sources = branch_sources(config.branch_from) if config.branch_from else {}
        for k in sorted({it.repeat for it in items}):
            batch = [it.task for it in items if it.repeat == k]
            avoid: dict[str, str] = {}
            if sources:
                walkthroughs, prefixes = {}, {}
                for t in batch:
                    src = sources[t.id][k % len(sources[t.id])]
                    step = branch_point(config, src, k)
                    walkthroughs[t.id] = [turn.action for turn in src.turns[:step]]
                    prefixes[t.id], avoid[t.id] = step, src.turns[step].action
            else:
                walkthroughs = {t.id: load_walkthrough(t) for t in batch} if config.reset_half > 0 else {}
                prefixes = {t.id: reset_prefix(config, t.id, k, len(walkthroughs.get(t.id, ()))) for t in batch}
            policy = rollout_policy(config.policy, config.seed + k, config.env.data_dir, engine, config.temperature,
                                    config.steer_prob)
            planner = RolloutPlanner(policy, prefixes, walkthroughs,
                                     config.epsilon, config.seed + k, avoid)
            for result in iter_episodes(env, planner, batch, seed=config.seed + k, record_admissible=True):
                prefix = min(prefixes.get(result.task_id, 0), result.num_actions)
                yield dataclasses.replace(result, repeat=k, prefix=prefix)

    def counters(self, engine: Any) -> dict[str, int]:
        return {}

    def close(self, engine: Any) -> None:
        if engine is not None and hasattr(engine, "close"):
            engine.close()


def summarize_rollouts(episodes: Sequence[EpisodeResult]) -> dict[str, Any]:
    ok = [e for e in episodes if e.error is None]
    return {
        "episodes": len(episodes),
        "won": sum(e.won for e in ok),
        "errors": len(episodes) - len(ok),
        "success_rate": sum(e.won for e in ok) / len(ok) if ok else 0.0,
        "transitions": sum(e.num_actions for e in ok),
        "from_walkthrough_state": sum(e.prefix > 0 for e in ok),
    }


# -- reading rollouts back --------------------------------------------------------------


@dataclass(frozen=True)
class Transition:
    """One step of a recorded episode: ``state --action--> next_state`` with reward r_t."""

    state: State
    action: str
    next_state: State
    reward: float
    done: bool
    won: bool
    t: int
    episode: str


def transitions(episode: EpisodeResult) -> Iterator[Transition]:
    """Every transition of ``episode`` in order. The reward is the episode's reward on its last
    step (1 on a win in ALFWorld) and 0 before; ``done`` is true on the last step."""
    states = episode.states()
    last = episode.num_actions - 1
    for t, turn in enumerate(episode.turns):
        yield Transition(states[t], turn.action, states[t + 1], episode.reward if t == last else 0.0,
                         t == last, episode.won and t == last, t, episode.key)


def load_rollouts(*dirs: str | Path, allow_valid_unseen: bool = False) -> list[EpisodeResult]:
    """Finished (error-free) episodes from rollout directories, in file order.

    Training must never read ``valid_unseen`` (the held-out test split): its episodes are refused.
    """
    episodes: list[EpisodeResult] = []
    for d in dirs:
        path = Path(d) / RECORDS
        if not Path(d).is_dir():
            raise MprError(f"rollouts dir {d} does not exist (make one with `mpr rollout ... --out {d}`)")
        if not path.is_file():
            raise MprError(f"{d} holds no {RECORDS}: not a rollouts dir (make one with `mpr rollout`)")
        _header, latest = read_episodes(path)
        episodes.extend(e for e in latest.values() if e.error is None)
    if not allow_valid_unseen and any(e.task_id.startswith("valid_unseen/") for e in episodes):
        raise MprError("training data contains valid_unseen games (the held-out test split); "
                       "roll out on train or valid_train instead")
    if not episodes:
        raise MprError(f"no finished rollouts in {', '.join(map(str, dirs))}")
    return episodes

