"""``mpr eval`` and ``mpr plan`` as plain functions (the click commands only parse flags).

An evaluation picks tasks from a split, skips those already finished in its
output file, runs the rest on a process pool (or in-process with 0 workers),
and summarizes every recorded episode of the selected tasks.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mpr.alfworld.data import (
    SPLITS,
    TASK_TYPES,
    list_tasks,
    resolve_task,
)
from mpr.alfworld.env import EnvConfig, SerialEnv
from mpr.compose import (
    build_planner,
    check_agent,
    close_parts,
    counters,
    prompt_format_of,
    resolve_policy_ckpt,
    shipped_default,
    split_agent,
)
from mpr.config import require, to_dict
from mpr.core import FALLBACK_ACTION, Env, Labelled, State, TimeStep
from mpr.errors import MprError
from mpr.learned.policy import PolicyConfig
from mpr.lm.engine import EngineConfig
from mpr.owned import atomic_write_text, check_own_file, check_writable_file, claim_dir
from mpr.planners.config import NEEDS_SCORER, NEEDS_WORLD, PlannerConfig
from mpr.run.episodes import (
    EpisodeResult,
    EpisodeStore,
    check_resumable,
    compute_totals,
    format_table,
    iter_episodes,
    run_episodes,
    summarize,
    summary_json,
)
from mpr.run.executor import ExecutorConfig, WorkItem, run_with_progress


@dataclass(frozen=True)
class EvalConfig:
    """What to evaluate. ``workers=0`` plays in this process (no timeouts)."""

    agent: str | None = "expert"  # None: see split_agent
    split: str = "valid_unseen"
    limit: int | None = None
    task_type: str | None = None
    seed: int = 0
    workers: int = 2
    # default_factory: read $MPR_CACHE_DIR / $MPR_THREADS when the config is made, not at import
    env: EnvConfig = field(default_factory=EnvConfig)
    model: EngineConfig = field(default_factory=EngineConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    policy_ckpt: str | None = None
    prm: str | None = None
    world: str | None = None  # world-model checkpoint for planners that simulate
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)  # where episodes run (not in the records)

    def __post_init__(self) -> None:
        agent, planner = split_agent(self.agent, self.policy_ckpt, self.planner)
        object.__setattr__(self, "agent", agent)
        object.__setattr__(self, "planner", planner)
        if agent == "policy" and planner.name in NEEDS_SCORER:
            # the learned agent plans with the shipped PRM and world model unless told otherwise
            object.__setattr__(self, "prm", shipped_default(self.prm, "prm"))
            if planner.name in NEEDS_WORLD and planner.world != "oracle":
                object.__setattr__(self, "world", shipped_default(self.world, "world"))
        check_agent(self.agent, self.prm)
        require(self.split in SPLITS, f"unknown split {self.split!r}; choose one of: {', '.join(SPLITS)}")
        require(
            self.task_type is None or self.task_type in TASK_TYPES,
            f"unknown task type {self.task_type!r}; choose one of: {', '.join(TASK_TYPES)}",
        )
        require(self.limit is None or self.limit >= 1, f"--limit must be >= 1, got {self.limit}")
        require(self.workers >= 0, f"--workers must be >= 0, got {self.workers}")

    @property
    def policy_checkpoint(self) -> str | None:
        """``policy_ckpt``, or the shipped default π₀ for the ``policy`` agent (found when used, so a
        missing game or a bad flag is reported before a missing model)."""
        return resolve_policy_ckpt(self.agent, self.policy_ckpt)

    def record_header(self) -> dict[str, Any]:
        """The settings that determine episode outcomes; a resumed file must match them."""
        header = {
            "agent": self.agent,
            "split": self.split,
            "seed": self.seed,
            "max_actions": self.env.max_actions,
        }
        if self.agent == "llm":
            header.update(model=self.model.model, policy=to_dict(self.policy))
        if self.agent == "policy":
            ckpt = str(Path(self.policy_checkpoint).resolve())
            # the format the checkpoint was trained on is the one it plays with (mpr.compose.build_policy)
            policy = dataclasses.replace(self.policy, prompt_format=prompt_format_of(ckpt))
            header.update(policy_ckpt=ckpt, policy=to_dict(policy))
        if self.agent == "prm":
            header.update(prm=str(Path(self.prm).resolve()))
        if self.planner.name != "greedy":
            header.update(planner=self.planner.settings(), model=self.model.model,
                          prm=str(Path(self.prm).resolve()) if self.prm else "judge:" + self.model.model)
            if self.planner.name in NEEDS_WORLD and self.planner.world != "oracle":
                header["world"] = str(Path(self.world).resolve()) if self.world else "zero-shot:" + self.model.model
        return header


@dataclass(frozen=True)
class EvalJob:
    """An evaluation's episodes for ``mpr.run.executor.run_job``: the planner is built once per worker."""

    config: EvalConfig

    @property
    def env_config(self) -> EnvConfig:
        return self.config.env

    def check(self) -> None:
        from mpr.lm.checkpoints import SCORER_KINDS, load_checkpoint

        c = self.config
        for path, kinds, flag in ((c.policy_checkpoint, ("policy",), "--policy"), (c.prm, SCORER_KINDS, "--prm"),
                                  (c.world, ("world",), "--world")):
            if path is not None:
                load_checkpoint(path, *kinds, flag=flag)

    def build(self) -> tuple[Any, dict[str, Any]]:
        c = self.config
        return build_planner(c.agent, c.seed, c.env, c.model, c.policy, c.policy_checkpoint, c.prm, c.world, c.planner)

    def play(self, built: tuple[Any, dict[str, Any]], env: Env, items: Sequence[WorkItem]) -> Iterator[EpisodeResult]:
        yield from iter_episodes(env, built[0], [it.task for it in items], seed=self.config.seed)

    def counters(self, built: tuple[Any, dict[str, Any]]) -> dict[str, int]:
        return counters(built[1])

    def close(self, built: tuple[Any, dict[str, Any]]) -> None:
        close_parts(built[1])


def evaluate(
    config: EvalConfig,
    out: str | Path | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run (or resume) an evaluation; returns the summary that was printed and saved."""
    if out:  # both files are proven mpr's (or absent) before anything is read or written
        check_writable_file(Path(out), "--json", "an mpr episode file (.jsonl)")
        if Path(out).exists():
            check_resumable(Path(out), config.record_header(), "--json")
        check_own_file(summary_path_of(out), "--json", is_eval_summary, "an evaluation summary")
    EvalJob(config).check()  # the checkpoints, before the games are read
    tasks = list_tasks(config.split, config.env.data_dir, config.task_type, config.limit)
    store = EpisodeStore(out, config.record_header(), flag="--json") if out else None
    todo = [t for t in tasks if not (store and store.is_finished(t.id))]
    if store and len(todo) < len(tasks):
        echo(f"resuming {out}: {len(tasks) - len(todo)} of {len(tasks)} episodes already recorded")
    started = time.perf_counter()
    name = config.agent if config.planner.name == "greedy" else f"{config.planner.name}({config.agent})"
    new_results, totals = run_with_progress(EvalJob(config), [WorkItem(t) for t in todo], config.executor,
                                            config.workers, f"{name} on {config.split}", progress,
                                            store.add if store else (lambda _r: None), echo)
    wall = time.perf_counter() - started
    selected = {t.id for t in tasks}
    recorded = list(store.results.values()) if store else new_results
    summary = eval_summary(config, [r for r in recorded if r.task_id in selected], new_results, totals, wall, echo)
    if out:
        summary_path = summary_path_of(out)
        atomic_write_text(summary_path, json.dumps(summary, indent=2))
        echo(f"episodes: {out}\nsummary:  {summary_path}")
    return summary


def summary_path_of(out: str | Path) -> Path:
    """Where an evaluation's summary goes: beside its records, ``OUT.summary.json``."""
    return Path(out).with_suffix(".summary.json")


def is_eval_summary(data: Any) -> bool:
    """Whether JSON content is an evaluation summary mpr wrote (its keys)."""
    return isinstance(data, dict) and {"config", "summary", "episodes_in_summary"} <= set(data)


def eval_summary(config: EvalConfig, results: list[EpisodeResult], new_results: list[EpisodeResult],
                 totals: dict[str, int], wall: float, echo: Callable[[str], None]) -> dict[str, Any]:
    """Print the success table, speed and counters of an evaluation; the summary saved beside it."""
    rows = summarize(results)
    steps = sum(r.num_actions for r in new_results)
    steps_per_s = steps / wall if new_results and wall > 0 else None
    echo(format_table(rows))
    if new_results:
        echo(f"ran {len(new_results)} episodes in {wall:.1f}s: {60 * len(new_results) / wall:.1f} episodes/min, "
             f"{steps_per_s:.1f} actions/s (wall clock, resets and worker start-up included)")
    fallbacks = totals.get("policy_fallbacks", 0)
    if fallbacks:
        echo(f"policy fallbacks to {FALLBACK_ACTION!r}: {fallbacks}")
    misses = totals.get("policy_parse_misses")
    if misses is not None and config.policy.mode == "sample":
        echo(f"policy outputs not matching an admissible action: {misses} of {totals.get('policy_parsed')}")
    return {
        "config": to_dict(config),
        "episodes_in_summary": len(results),
        "episodes_run_now": len(new_results),
        "wall_seconds_now": wall,
        "actions_per_second_now": steps_per_s,
        "policy_fallbacks_now": fallbacks,
        "parse_misses_now": misses,
        "parsed_now": totals.get("policy_parsed"),
        "counters_now": totals,
        "compute_now": compute_totals(new_results),
        "summary": summary_json(rows),
    }


def play(task: str, config: EvalConfig, echo: Callable[[str], None] = print, tree_out: str | Path | None = None,
         show_alternatives: int = 3) -> EpisodeResult:
    """Run one episode of ``task`` in this process with the agent and models of ``config`` (its split,
    limit and workers do not apply) and print it step by step: each real action with the planner's
    top alternatives and their values, the real observation, and (when a world model is in play) its
    prediction of that observation. ``tree_out``: a directory that gets each step's search tree
    (``step-NN.json`` and, with matplotlib installed, ``step-NN.png``)."""
    c = config
    resolved = resolve_task(task, c.env.data_dir)
    if tree_out is not None:
        claim_dir(tree_out, "search trees", flag="--tree", legacy=[lambda d: any(d.glob("step-*.json"))])
    decide, parts = build_planner(c.agent, c.seed, c.env, c.model, c.policy, c.policy_checkpoint, c.prm, c.world, c.planner,
                                  record_tree=tree_out is not None)
    printer = _StepPrinter(resolved.id, echo, _shown_world_model(parts, c.world, c.model, echo), c.planner.name,
                           tree_out, show_alternatives)
    env = SerialEnv(1, c.env)
    try:
        (result,) = run_episodes(env, printer.remembering(decide), [resolved], seed=c.seed, on_step=printer.on_step)
    finally:
        env.close()
        close_parts(parts)
    if result.error:
        raise MprError(result.error)
    _print_outcome(result, printer, parts, tree_out, echo)
    return result


def _shown_world_model(parts: dict[str, Any], world: str | None, model: EngineConfig,
                       echo: Callable[[str], None]) -> Any:
    """The world model whose predictions ``play`` prints: the planner's, else the ``--world``
    checkpoint (a greedy run that shows what the world model would have predicted)."""
    world_model = parts["world"]
    if world_model is None and world:
        from mpr.worldmodel.llm import LLMWorldModel

        world_model = LLMWorldModel.from_checkpoint(world, model)
    if isinstance(world_model, Labelled) and world_model.label:
        echo(f"world model: {world_model.label}")
    return world_model


class _StepPrinter:
    """Prints each real step of a played episode with the planner's decision and the world model's
    prediction; counts exact predictions."""

    def __init__(self, task_id: str, echo: Callable[[str], None], world_model: Any, planner: str,
                 tree_out: str | Path | None, show_alternatives: int):
        self.task_id, self.echo, self.world_model, self.planner = task_id, echo, world_model, planner
        self.tree_out, self.show_alternatives = tree_out, show_alternatives
        self.decisions: dict[State, Any] = {}
        self.exact = self.steps = 0
        self.intro_shown = False

    def remembering(self, decide: Callable[[list[State]], list[Any]]) -> Callable[[list[State]], list[Any]]:
        def remember(roots: list[State]) -> list[Any]:
            out = decide(roots)
            self.decisions.update(zip(roots, out))
            return out

        return remember

    def on_step(self, task_id: str, state: State, action: str, ts: TimeStep) -> None:
        if not self.intro_shown:
            self.echo(f"task: {self.task_id}\ngoal: {state.goal}\n\n{state.initial}\n")
            self.intro_shown = True
        d = self.decisions.pop(state, None)
        mark = "  [won]" if ts.won else ""
        value = f"  (value {d.value:.3f})" if d is not None and self.planner != "greedy" else ""
        self.echo(f"{state.num_actions + 1:>2}. > {action}{value}\n    {ts.observation}{mark}")
        if d is not None:
            self._show_decision(d, state, action)
        if self.world_model is not None:
            self._show_prediction(state, action, ts)

    def _show_decision(self, d: Any, state: State, action: str) -> None:
        if d.alternatives and self.show_alternatives:
            others = [f"{a} ({v:.3f})" for a, v in d.alternatives if a != action][: self.show_alternatives]
            if others:
                self.echo(f"    alternatives: {'; '.join(others)}")
        if self.tree_out is not None and d.tree is not None:
            from mpr.planners.tree import write_tree

            files = write_tree(d.tree, Path(self.tree_out) / f"step-{state.num_actions + 1:02d}.json")
            if len(files) == 1 and state.num_actions == 0:
                self.echo("    (tree pictures need matplotlib and networkx: pip install 'mpr[viz]')")

    def _show_prediction(self, state: State, action: str, ts: TimeStep) -> None:
        (predicted,) = self.world_model.predict([state], [action])
        same = predicted.strip() == ts.observation.strip()
        self.exact += same
        self.steps += 1
        self.echo(f"    world model: {predicted}{'  [exact]' if same else ''}")


def _print_outcome(result: EpisodeResult, printer: _StepPrinter, parts: dict[str, Any],
                   tree_out: str | Path | None, echo: Callable[[str], None]) -> None:
    outcome = "WON" if result.won else "not won"
    echo(f"\n{outcome} after {result.num_actions} actions ({result.seconds:.1f}s)")
    if result.compute:
        c = result.compute
        echo(f"planner compute: {c['model_calls']:.0f} model calls, {c['prompt_tokens']:.0f} prompt + "
             f"{c['generated_tokens']:.0f} generated tokens, {c['nodes']:.0f} nodes, "
             f"{c['model_seconds']:.1f}s in models of {result.plan_seconds:.1f}s planning")
    if printer.world_model is not None:
        echo(f"world model predicted {printer.exact} of {printer.steps} observations exactly")
    if tree_out is not None:
        echo(f"search trees: {tree_out}")
    for name, value in counters(parts).items():
        if value and not name.endswith(("predictions", "parsed")):
            echo(f"{name.replace('_', ' ')}: {value}")
