"""The receding-horizon episode loop, its append-only records, and success summaries.

``run_episodes`` keeps every env slot busy: each round it asks the planner for
one decision per active episode (a single batched call across episodes), sends
those actions plus any resets for free slots to the env in one batch, and
records each episode the moment it ends. Records go to a JSONL file — a header
line with the run's config, then one line per finished episode — written with
flush+fsync, so a kill loses at most the episodes in flight, and a rerun with
the same file skips what is already there.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from mpr.alfworld.data import TASK_TYPES, Task
from mpr.alfworld.env import Reset
from mpr.core import Env, Planner, State, TimeStep, Turn, check_aligned
from mpr.errors import MprError
from mpr.owned import check_writable_file, header_of


@dataclass(frozen=True)
class EpisodeResult:
    """One finished episode, as recorded. ``error`` is set when the game failed (not the agent)."""

    task_id: str
    task_type: str
    won: bool
    num_actions: int
    reward: float
    goal: str
    initial: str
    turns: tuple[Turn, ...]
    seconds: float
    env_seconds: float
    plan_seconds: float
    error: str | None = None
    values: tuple[float, ...] = ()
    # Rollouts only (left out of the record when unused):
    repeat: int = 0  # which of the K rollouts of this game
    prefix: int = 0  # leading turns replayed from the walkthrough (reset-50-50), not chosen by the policy
    admissible: tuple[tuple[str, ...], ...] = ()  # per state, initial first (len == num_actions + 1)
    # What ALFWorld's handcoded expert would do in each state, initial first (len == num_actions + 1;
    # None where it had no answer, or at the end); recorded when the env runs the expert (DAgger labels)
    expert_actions: tuple[str | None, ...] = ()
    # Planner compute over the episode (sums of PlanStats fields; empty for planners that report none)
    compute: dict[str, float] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return episode_key(self.task_id, self.repeat)

    def states(self) -> list[State]:
        """The states this episode visited, initial first: ``num_actions + 1`` of them."""
        adm = self.admissible or ((),) * (len(self.turns) + 1)
        expert = self.expert_actions or (None,) * (len(self.turns) + 1)
        return [State(self.task_id, self.goal, self.initial, self.turns[:t], admissible=adm[t],
                      expert_action=expert[t]) for t in range(len(self.turns) + 1)]

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["turns"] = [[t.action, t.observation] for t in self.turns]
        d["values"] = list(self.values)
        d["admissible"] = [list(a) for a in self.admissible]
        d["expert_actions"] = list(self.expert_actions)
        for k, empty in (("repeat", 0), ("prefix", 0), ("admissible", []), ("expert_actions", []), ("compute", {})):
            if d[k] == empty:
                del d[k]
        return {"type": "episode", **d}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> EpisodeResult:
        d = {k: v for k, v in d.items() if k != "type"}
        d["turns"] = tuple(Turn(a, o) for a, o in d.get("turns", []))
        d["values"] = tuple(d.get("values", ()))
        d["admissible"] = tuple(tuple(a) for a in d.get("admissible", ()))
        d["expert_actions"] = tuple(d.get("expert_actions", ()))
        d["compute"] = dict(d.get("compute", {}))
        return cls(**d)


def episode_key(task_id: str, repeat: int = 0) -> str:
    """The record key of one episode: the task id, plus ``#k`` for the k-th rollout (k > 0)."""
    return task_id if repeat == 0 else f"{task_id}#{repeat}"


# Values (log-probs, PRM scores) of the same episode move with the batch layout it was played in
# (which episodes shared a batched call, hence the padding and the order of float sums), so runs are
# compared on values within a tolerance and on everything discrete exactly. Measured with tiny models
# (bench/value_noise.py: summed candidate log-probs, one batch vs one prompt per call vs reversed):
# fp32 moves them by ~1e-6 on every Intel Xeon seen; bf16 (``dtype: auto`` picks it where the CPU has
# AVX512-BF16 or AMX) by up to 4e-4 on an AMD EPYC (values ~14, a Ray-vs-pool eval) and by up to 2.0e-3
# (relative 5.8e-5, values ~40) on an Intel Xeon with AMX (docs/results/value-noise/). The tolerance
# is 2.5x the largest absolute and 17x the largest relative figure.
VALUE_REL_TOL = 1e-3
VALUE_ABS_TOL = 5e-3
_UNEVEN_COMPUTE = ("seconds", "model_seconds", "prompt_tokens", "generated_tokens")


def record_content(record: dict[str, Any]) -> dict[str, Any]:
    """An episode record's discrete content: everything but what depends on the wall clock or on
    which episodes shared a batched model call (timings, a batched call's tokens split over its
    episodes by requests, and the float ``values``; compare those with :func:`values_agree`).
    Two runs of the same settings agree on it exactly whichever executor or worker count played them."""
    d = {k: v for k, v in record.items() if k not in ("seconds", "env_seconds", "plan_seconds", "values")}
    d["compute"] = {k: v for k, v in d.get("compute", {}).items() if k not in _UNEVEN_COMPUTE}
    return d


def values_agree(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether two episodes' value lists match within what batch layouts move them by (above)."""
    return len(a) == len(b) and all(math.isclose(x, y, rel_tol=VALUE_REL_TOL, abs_tol=VALUE_ABS_TOL)
                                    for x, y in zip(a, b))


def record_differences(a: dict[Any, dict[str, Any]], b: dict[Any, dict[str, Any]]) -> list[str]:
    """What differs between two runs' episode records (each keyed alike, e.g. by task and repeat):
    discrete content exactly, values within tolerance. Empty when the runs agree."""
    if a.keys() != b.keys():
        return [f"episodes only in one run: {sorted(map(str, a.keys() ^ b.keys()))}"]
    out = []
    for key in a:
        if record_content(a[key]) != record_content(b[key]):
            out.append(f"{key}: records differ beyond values and timings")
        elif not values_agree(a[key].get("values", []), b[key].get("values", [])):
            out.append(f"{key}: values {a[key].get('values')} vs {b[key].get('values')}")
    return out


def read_episodes(path: Path, flag: str = "records") -> tuple[dict[str, Any], dict[str, EpisodeResult]]:
    """(header, episodes by key) of an episode file, without changing it. A partial last line (a kill
    mid-write) is ignored; when an episode was recorded twice (a retried error), the later line wins.
    Anything else that is not an mpr record — no header, a line that is not JSON or not an episode
    — is one MprError naming the file and the line."""
    header, results, _ = parse_episode_file(path, flag)
    return header, results


def parse_episode_file(path: Path, flag: str = "records") -> tuple[dict[str, Any], dict[str, EpisodeResult], int]:
    """(header, episodes by key, bytes of complete lines) of an mpr episode file; see read_episodes."""
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise MprError(f"{flag} {path} is a folder, not an mpr episode file (.jsonl)") from None
    except OSError as exc:
        raise MprError(f"{flag} {path}: cannot read it ({exc.strerror})") from None
    complete = raw.rfind(b"\n") + 1
    lines = raw[:complete].split(b"\n")[:-1]
    header = header_of(lines[0] if lines else b"")
    if header is None:
        raise MprError(f"{flag} {path} is not an mpr episode file (its first line is no mpr header); "
                       "choose another path")
    results: dict[str, EpisodeResult] = {}
    for number, line in enumerate(lines[1:], start=2):
        if line.strip():
            result = _episode_line(line, path, number)
            results[result.key] = result
    return {k: v for k, v in header.items() if k != "type"}, results, complete


def _episode_line(line: bytes, path: Path, number: int) -> EpisodeResult:
    """The episode on line ``number``; MprError when it is none."""
    try:
        data = json.loads(line)
    except ValueError:
        data, why = None, "not JSON"
    else:
        why = "not a JSON object" if not isinstance(data, dict) else ""
    if not why and data.get("type") != "episode":
        why = f"type {data.get('type')!r}, not 'episode'"
    if not why:
        try:
            return EpisodeResult.from_json(data)
        except (TypeError, ValueError, KeyError, AttributeError):
            why = "its fields are not an episode's"
    raise MprError(f"{path} line {number} is not an mpr episode record ({why}); the file is not mpr's "
                   "or was edited by hand: fix or remove that line")


def check_resumable(path: Path, header: dict[str, Any], flag: str = "records"
                    ) -> tuple[dict[str, EpisodeResult], int]:
    """Prove ``path`` (an existing file) an mpr episode file written with ``header``'s settings, without
    changing it; returns (its episodes by key, bytes of complete lines). MprError otherwise."""
    check_writable_file(path, flag, "an mpr episode file (.jsonl)")
    stored, results, complete = parse_episode_file(path, flag)
    header = json.loads(json.dumps(header))
    if stored != header:
        diff = sorted(k for k in set(stored) | set(header) if stored.get(k) != header.get(k))
        raise MprError(
            f"{path} was written by a run with different settings ({', '.join(diff)}); "
            "use another output path or rerun with the same settings"
        )
    return results, complete


class EpisodeStore:
    """Append-only JSONL of episode results with a config header; safe to resume.

    A line cut short by a kill is dropped when the file is reopened — only after the file has been
    proven an mpr episode file of the same settings (its header line, every complete line an
    episode); any other existing file is refused and left byte for byte as it was.
    """

    def __init__(self, path: str | Path, header: dict[str, Any], flag: str = "records"):
        self.path = Path(path)
        self.flag = flag
        self.header = json.loads(json.dumps(header))
        self.results: dict[str, EpisodeResult] = {}
        self._open()

    def _open(self) -> None:
        check_writable_file(self.path, self.flag, "an mpr episode file (.jsonl)")
        if self.path.exists():
            self._load_existing()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._append({"type": "header", **self.header})

    def _load_existing(self) -> None:
        self.results, complete = check_resumable(self.path, self.header, self.flag)
        if self.path.stat().st_size > complete:  # a kill mid-write: drop the partial last line
            with open(self.path, "r+b") as f:
                f.truncate(complete)

    def _append(self, record: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def is_finished(self, task_id: str, repeat: int = 0) -> bool:
        """Finished means recorded without a game error; errored episodes are retried."""
        r = self.results.get(episode_key(task_id, repeat))
        return r is not None and r.error is None

    def add(self, result: EpisodeResult) -> None:
        self._append(result.to_json())
        self.results[result.key] = result


@dataclass
class _Running:
    task: Task
    state: State | None = None
    started: float = field(default_factory=time.perf_counter)
    env_seconds: float = 0.0
    plan_seconds: float = 0.0
    values: list[float] = field(default_factory=list)
    compute: dict[str, float] = field(default_factory=dict)
    admissible: list[tuple[str, ...]] = field(default_factory=list)
    expert: list[str | None] = field(default_factory=list)
    request: Any = None  # the request in flight (Reset or action)
    sent: float = 0.0


def run_episodes(
    env: Env,
    planner: Planner,
    tasks: Sequence[Task],
    *,
    seed: int = 0,
    on_result: Callable[[EpisodeResult], None] = lambda _r: None,
    on_step: Callable[[str, State, str, TimeStep], None] | None = None,
    record_admissible: bool = False,
) -> list[EpisodeResult]:
    """``iter_episodes`` to the end; ``on_result`` sees each result as it finishes."""
    results = []
    for result in iter_episodes(env, planner, tasks, seed=seed, on_step=on_step, record_admissible=record_admissible):
        results.append(result)
        on_result(result)
    return results


def iter_episodes(
    env: Env,
    planner: Planner,
    tasks: Sequence[Task],
    *,
    seed: int = 0,
    on_step: Callable[[str, State, str, TimeStep], None] | None = None,
    record_admissible: bool = False,
) -> Iterator[EpisodeResult]:
    """Play every task to the end on ``env``'s slots; yields results in the order episodes finish.

    Event loop: submit resets for free slots, take whatever answers are in, then make
    one planner call for every episode that is waiting for a decision and submit those
    actions together. Slots never wait for each other; every planner call batches all
    episodes that are ready at that moment. ``record_admissible`` keeps every state's
    admissible commands in the result (rollouts need them to rebuild policy prompts), and the
    handcoded expert's action in each state when the env computes it (DAgger labels).
    """
    queue = list(tasks)[::-1]
    running: dict[int, _Running] = {}
    while queue or running:
        starts = [s for s in range(env.num_slots) if s not in running][: len(queue)]
        for slot in starts:
            running[slot] = _Running(queue.pop())
        if starts:
            _submit(env, running, starts, [Reset(running[s].task.id, seed) for s in starts])
        for slot, ts in env.poll().items():
            run = running[slot]
            request, run.request = run.request, None
            run.env_seconds += time.perf_counter() - run.sent
            if isinstance(request, Reset):
                finished = _apply_reset(run, ts)
            else:
                if on_step is not None and ts.error is None:
                    on_step(run.task.id, run.state, request, ts)  # type: ignore[arg-type]
                finished = _apply_step(run, request, ts)
            if record_admissible and finished is None:
                run.admissible.append(ts.admissible)
                run.expert.append(ts.expert_action)
            if finished is not None:
                if record_admissible and finished.error is None:
                    expert = tuple(run.expert) + (None,)  # no expert action after the end
                    finished = replace(finished, admissible=tuple(run.admissible) + (ts.admissible,),
                                       expert_actions=expert if any(expert) else ())
                del running[slot]
                yield finished
        ready = [s for s, r in running.items() if r.state is not None and r.request is None]
        if not ready:
            continue
        roots = [running[s].state for s in ready]
        t0 = time.perf_counter()
        decisions = planner(roots)  # type: ignore[arg-type]
        check_aligned("Planner", decisions, roots)
        plan_time = time.perf_counter() - t0
        for s, d in zip(ready, decisions):
            running[s].plan_seconds += plan_time / len(ready)
            running[s].values.append(float(d.value))
            add_compute(running[s].compute, d.stats)
        _submit(env, running, ready, [d.action for d in decisions])


COMPUTE_FIELDS = ("model_calls", "requests", "prompt_tokens", "generated_tokens", "nodes", "cache_hits", "model_seconds")


def add_compute(total: dict[str, float], stats: Any) -> None:
    """Add one decision's PlanStats to an episode's running compute totals (plus a decision count)."""
    if not stats.model_calls and not stats.nodes:
        return
    total["decisions"] = total.get("decisions", 0) + 1
    for k in COMPUTE_FIELDS:
        total[k] = total.get(k, 0) + getattr(stats, k)


def compute_totals(results: Iterable[EpisodeResult]) -> dict[str, float]:
    """Planner compute summed over episodes (see ``EpisodeResult.compute``)."""
    total: dict[str, float] = {}
    for r in results:
        for k, v in r.compute.items():
            total[k] = total.get(k, 0) + v
    return total


def _submit(env: Env, running: dict[int, _Running], slots: list[int], requests: list[Any]) -> None:
    now = time.perf_counter()
    for s, r in zip(slots, requests):
        running[s].request, running[s].sent = r, now
    env.submit(requests, slots)


def _apply_reset(run: _Running, ts: TimeStep) -> EpisodeResult | None:
    if ts.error is not None:
        return _finish(run, won=False, error=ts.error)
    run.state = State(
        task_id=run.task.id,
        goal=ts.goal,
        initial=ts.observation,
        admissible=ts.admissible,
        expert_action=ts.expert_action,
    )
    return None


def _apply_step(run: _Running, action: str, ts: TimeStep) -> EpisodeResult | None:
    if ts.error is not None:
        return _finish(run, won=False, error=ts.error)
    assert run.state is not None
    run.state = run.state.after(action, ts.observation, ts.admissible, ts.expert_action)
    if ts.done:
        return _finish(run, won=ts.won, reward=ts.reward)
    return None


def _finish(run: _Running, won: bool, reward: float = 0.0, error: str | None = None) -> EpisodeResult:
    state = run.state
    return EpisodeResult(
        task_id=run.task.id,
        task_type=run.task.task_type,
        won=won,
        num_actions=state.num_actions if state else 0,
        reward=reward,
        goal=state.goal if state else "",
        initial=state.initial if state else "",
        turns=state.turns if state else (),
        seconds=time.perf_counter() - run.started,
        env_seconds=run.env_seconds,
        plan_seconds=run.plan_seconds,
        error=error,
        values=tuple(run.values),
        compute=dict(run.compute),
    )


# -- summaries -----------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    name: str
    episodes: int
    wins: int
    errors: int
    mean_actions: float

    @property
    def success_rate(self) -> float:
        return self.wins / self.episodes if self.episodes else 0.0


def summarize(results: Iterable[EpisodeResult]) -> dict[str, Row]:
    """Success per task type plus ``"all"``; computed only from the given episodes.

    Episodes that failed with a game error count as failures and are listed in ``errors``.
    """
    groups: dict[str, list[EpisodeResult]] = defaultdict(list)
    for r in results:
        groups[r.task_type].append(r)
        groups["all"].append(r)
    order = [t for t in TASK_TYPES if t in groups] + (["all"] if "all" in groups else [])
    return {
        name: Row(
            name=name,
            episodes=len(groups[name]),
            wins=sum(r.won for r in groups[name]),
            errors=sum(r.error is not None for r in groups[name]),
            mean_actions=sum(r.num_actions for r in groups[name]) / len(groups[name]),
        )
        for name in order
    }


def format_table(rows: dict[str, Row]) -> str:
    """A plain-text table: success per task type and overall, mean actions, errors."""
    lines = [f"{'task type':<32} {'episodes':>8} {'wins':>5} {'success':>8} {'mean actions':>13} {'errors':>7}"]
    for row in rows.values():
        lines.append(
            f"{row.name:<32} {row.episodes:>8} {row.wins:>5} {100 * row.success_rate:>7.1f}% "
            f"{row.mean_actions:>13.1f} {row.errors:>7}"
        )
    return "\n".join(lines)


def summary_json(rows: dict[str, Row]) -> dict[str, Any]:
    return {
        name: {
            "episodes": r.episodes,
            "wins": r.wins,
            "success_rate": r.success_rate,
            "errors": r.errors,
            "mean_actions": r.mean_actions,
        }
        for name, r in rows.items()
    }
