"""``mpr eval`` and ``mpr plan`` as plain functions (the click commands only parse flags).

An evaluation picks tasks from a split, skips those already finished in its
output file, runs the rest on a process pool (or in-process with 0 workers),
and summarizes every recorded episode of the selected tasks.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mpr.agents import BUILTIN_AGENTS, make_policy
from mpr.config import require, to_dict
from mpr.core import Env, Policy, State, TimeStep
from mpr.data import SPLITS, TASK_TYPES, atomic_write_text, list_tasks, resolve_task
from mpr.engine import EngineConfig
from mpr.env import EnvConfig, SerialEnv
from mpr.episodes import (
    EpisodeResult,
    EpisodeStore,
    compute_totals,
    format_table,
    iter_episodes,
    run_episodes,
    summarize,
    summary_json,
)
from mpr.executor import ExecutorConfig, WorkItem, run_job
from mpr.policy import PolicyConfig
from planners.build import NEEDS_WORLD, PLANNERS, PlannerConfig

AGENTS = BUILTIN_AGENTS + ("llm", "policy", "prm")


def split_agent(agent: str | None, policy_ckpt: str | None, planner: PlannerConfig) -> tuple[str, PlannerConfig]:
    """``--agent beam`` (any planner name) is shorthand for ``--planner beam`` with the trained
    policy (``--policy``) or else the base LLM proposing. No agent: the trained policy when given,
    else the LLM for planners and the handcoded expert for greedy. Other agents pass through."""
    import dataclasses

    if agent is None:
        return ("policy" if policy_ckpt else "llm" if planner.name != "greedy" else "expert"), planner
    if agent in PLANNERS:
        return ("policy" if policy_ckpt else "llm"), dataclasses.replace(planner, name=agent)
    return agent, planner


def check_agent(agent: str, policy_ckpt: str | None = None, prm: str | None = None) -> None:
    require(agent in AGENTS, f"unknown agent {agent!r}; choose one of: {', '.join(AGENTS + PLANNERS)}")
    require(agent != "policy" or policy_ckpt is not None, "--agent policy needs --policy CKPT (a trained policy)")
    require(agent != "prm" or prm is not None, "--agent prm needs --prm CKPT (a trained PRM)")


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
        check_agent(self.agent, self.policy_ckpt, self.prm)
        require(self.split in SPLITS, f"unknown split {self.split!r}; choose one of: {', '.join(SPLITS)}")
        require(
            self.task_type is None or self.task_type in TASK_TYPES,
            f"unknown task type {self.task_type!r}; choose one of: {', '.join(TASK_TYPES)}",
        )
        require(self.limit is None or self.limit >= 1, f"--limit must be >= 1, got {self.limit}")
        require(self.workers >= 0, f"--workers must be >= 0, got {self.workers}")

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
            header.update(policy_ckpt=str(Path(self.policy_ckpt).resolve()), policy=to_dict(self.policy))
        if self.agent == "prm":
            header.update(prm=str(Path(self.prm).resolve()))
        if self.planner.name != "greedy":
            header.update(planner=self.planner.settings(), model=self.model.model,
                          prm=str(Path(self.prm).resolve()) if self.prm else "judge:" + self.model.model)
            if self.planner.name in NEEDS_WORLD and self.planner.world != "oracle":
                header["world"] = str(Path(self.world).resolve()) if self.world else "zero-shot:" + self.model.model
        return header


def build_policy(agent: str, seed: int, data_dir: str | None, model: EngineConfig, policy: PolicyConfig,
                 policy_ckpt: str | None = None, prm: str | None = None) -> Policy:
    """A reference policy by name; the LLM policy over the default/given model (``llm``) or a trained
    policy checkpoint (``policy``); or the PRM ranking the admissible actions (``prm``)."""
    import dataclasses

    check_agent(agent, policy_ckpt, prm)
    if agent in BUILTIN_AGENTS:
        return make_policy(agent, seed, data_dir)
    if agent == "prm":
        from mpr.scorer import PRMScorer, ScorerPolicy

        return ScorerPolicy(PRMScorer.from_checkpoint(prm, model))  # type: ignore[arg-type]
    from mpr.engine import make_engine
    from mpr.policy import LLMPolicy

    if agent == "policy":
        from mpr.checkpoints import load_checkpoint

        model = dataclasses.replace(model, model=str(load_checkpoint(policy_ckpt, "policy", flag="--policy").path))  # type: ignore[arg-type]
    return LLMPolicy(make_engine(model), dataclasses.replace(policy, seed=seed))


def build_planner(agent: str, seed: int, env_config: EnvConfig, model: EngineConfig, policy_config: PolicyConfig,
                  policy_ckpt: str | None, prm: str | None, world: str | None, planner: PlannerConfig,
                  record_tree: bool = False) -> tuple[Any, dict[str, Any]]:
    """The planner for an evaluation or a played episode, and its parts by name (for counters)."""
    from planners.build import build_models, make_planner

    policy = build_policy(agent, seed, env_config.data_dir, model, policy_config, policy_ckpt, prm)
    world_model, scorer = build_models(planner, policy, model, prm, world, env_config, seed)
    parts = {"policy": policy, "world": world_model, "scorer": scorer}
    return make_planner(planner, policy, world_model, scorer, record_tree), parts


def counters(parts: dict[str, Any]) -> dict[str, int]:
    """The fallback / miss counters of a planner's parts, for summaries (only those that exist)."""
    names = {"policy": ("fallbacks", "parse_misses", "parsed"), "world": ("empty_outputs", "predictions", "failures"),
             "scorer": ()}
    out = {}
    for part, fields in names.items():
        for f in fields:
            v = getattr(parts.get(part), f, None)
            if isinstance(v, int):
                out[f"{part}_{f}"] = v
    return out


@dataclass(frozen=True)
class EvalJob:
    """An evaluation's episodes for ``mpr.executor.run_job``: the planner is built once per worker."""

    config: EvalConfig

    @property
    def env_config(self) -> EnvConfig:
        return self.config.env

    def check(self) -> None:
        from mpr.checkpoints import SCORER_KINDS, load_checkpoint

        c = self.config
        for path, kinds, flag in ((c.policy_ckpt, ("policy",), "--policy"), (c.prm, SCORER_KINDS, "--prm"),
                                  (c.world, ("world",), "--world")):
            if path is not None:
                load_checkpoint(path, *kinds, flag=flag)

    def build(self) -> tuple[Any, dict[str, Any]]:
        c = self.config
        return build_planner(c.agent, c.seed, c.env, c.model, c.policy, c.policy_ckpt, c.prm, c.world, c.planner)

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
    tasks = list_tasks(config.split, config.env.data_dir, config.task_type, config.limit)
    store = EpisodeStore(out, config.record_header()) if out else None
    todo = [t for t in tasks if not (store and store.is_finished(t.id))]
    if store and len(todo) < len(tasks):
        echo(f"resuming {out}: {len(tasks) - len(todo)} of {len(tasks)} episodes already recorded")
    started = time.perf_counter()
    new_results: list[EpisodeResult] = []
    totals: dict[str, int] = {}
    if todo:
        name = config.agent if config.planner.name == "greedy" else f"{config.planner.name}({config.agent})"
        bar = LazyBar(len(todo), f"{name} on {config.split}", progress)

        def on_result(result: EpisodeResult) -> None:
            new_results.append(result)
            if store:
                store.add(result)
            bar.update(won=sum(r.won for r in new_results), errors=sum(r.error is not None for r in new_results))

        try:
            totals = run_job(EvalJob(config), [WorkItem(t) for t in todo], config.executor, config.workers,
                             on_result, echo, bar.open)
        finally:
            bar.close()
    wall = time.perf_counter() - started
    selected = {t.id for t in tasks}
    recorded = list(store.results.values()) if store else new_results
    results = [r for r in recorded if r.task_id in selected]
    rows = summarize(results)
    steps = sum(r.num_actions for r in new_results)
    steps_per_s = steps / wall if new_results and wall > 0 else None
    echo(format_table(rows))
    if new_results:
        echo(f"ran {len(new_results)} episodes in {wall:.1f}s: {60 * len(new_results) / wall:.1f} episodes/min, "
             f"{steps_per_s:.1f} actions/s (wall clock, resets and worker start-up included)")
    fallbacks = totals.get("policy_fallbacks", 0)
    if fallbacks:
        echo(f"policy fallbacks to 'look': {fallbacks}")
    misses = totals.get("policy_parse_misses")
    if misses is not None and config.policy.mode == "sample":
        echo(f"policy outputs not matching an admissible action: {misses} of {totals.get('policy_parsed')}")
    summary = {
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
    if out:
        summary_path = Path(out).with_suffix(".summary.json")
        atomic_write_text(summary_path, json.dumps(summary, indent=2))
        echo(f"episodes: {out}\nsummary:  {summary_path}")
    return summary


def _progress_bar(total: int, desc: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="ep", disable=not enabled, dynamic_ncols=True)


class LazyBar:
    """An episode progress bar that appears only when the run has started (``open``), so an input
    error before that is the only line printed."""

    def __init__(self, total: int, desc: str, enabled: bool):
        self.total, self.desc, self.enabled, self.bar = total, desc, enabled, None

    def open(self) -> None:
        self.bar = _progress_bar(self.total, self.desc, self.enabled)

    def update(self, **postfix: Any) -> None:
        if self.bar is None:
            self.open()
        self.bar.update(1)
        self.bar.set_postfix(**postfix)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def play(
    task: str,
    agent: str = "expert",
    seed: int = 0,
    env_config: EnvConfig | None = None,
    echo: Callable[[str], None] = print,
    model: EngineConfig | None = None,
    policy_config: PolicyConfig | None = None,
    policy_ckpt: str | None = None,
    prm: str | None = None,
    world: str | None = None,
    planner: PlannerConfig | None = None,
    tree_out: str | Path | None = None,
    show_alternatives: int = 3,
) -> EpisodeResult:
    """Run one episode in this process and print it step by step: each real action with the
    planner's top alternatives and their values, the real observation, and (when a world model is
    in play) its prediction of that observation. ``tree_out``: a directory that gets each step's
    search tree (``step-NN.json`` and, with matplotlib installed, ``step-NN.png``)."""
    from planners.tree import write_tree

    agent, planner = split_agent(agent, policy_ckpt, planner or PlannerConfig())
    check_agent(agent, policy_ckpt, prm)
    env_config, model = env_config or EnvConfig(), model or EngineConfig()
    policy_config = policy_config or PolicyConfig()
    resolved = resolve_task(task, env_config.data_dir)
    decide, parts = build_planner(agent, seed, env_config, model, policy_config, policy_ckpt, prm, world, planner,
                                  record_tree=tree_out is not None)
    world_model = parts["world"]
    if world_model is None and world:
        from worldmodel.llm import LLMWorldModel

        world_model = LLMWorldModel.from_checkpoint(world, model)
    if world_model is not None and getattr(world_model, "label", None):
        echo(f"world model: {world_model.label}")
    decisions: dict[State, Any] = {}

    def remember(roots: list[State]) -> list[Any]:
        out = decide(roots)
        decisions.update(zip(roots, out))
        return out

    matches = {"exact": 0, "steps": 0}
    env = SerialEnv(1, env_config)
    shown = {"intro": False}

    def on_step(task_id: str, state: State, action: str, ts: TimeStep) -> None:
        if not shown["intro"]:
            echo(f"task: {resolved.id}\ngoal: {state.goal}\n\n{state.initial}\n")
            shown["intro"] = True
        d = decisions.pop(state, None)
        mark = "  [won]" if ts.won else ""
        value = f"  (value {d.value:.3f})" if d is not None and planner.name != "greedy" else ""
        echo(f"{state.num_actions + 1:>2}. > {action}{value}\n    {ts.observation}{mark}")
        if d is not None and d.alternatives and show_alternatives:
            others = [f"{a} ({v:.3f})" for a, v in d.alternatives if a != action][:show_alternatives]
            if others:
                echo(f"    alternatives: {'; '.join(others)}")
        if d is not None and tree_out is not None and d.tree is not None:
            files = write_tree(d.tree, Path(tree_out) / f"step-{state.num_actions + 1:02d}.json")
            if len(files) == 1 and state.num_actions == 0:
                echo("    (tree pictures need matplotlib and networkx: pip install 'mpr[viz]')")
        if world_model is not None:
            (predicted,) = world_model.predict([state], [action])
            same = predicted.strip() == ts.observation.strip()
            matches["exact"] += same
            matches["steps"] += 1
            echo(f"    world model: {predicted}{'  [exact]' if same else ''}")

    try:
        (result,) = run_episodes(env, remember, [resolved], seed=seed, on_step=on_step)
    finally:
        env.close()
        close_parts(parts)
    if result.error:
        from mpr.errors import MprError

        raise MprError(result.error)
    outcome = "WON" if result.won else "not won"
    echo(f"\n{outcome} after {result.num_actions} actions ({result.seconds:.1f}s)")
    if result.compute:
        c = result.compute
        echo(f"planner compute: {c['model_calls']:.0f} model calls, {c['prompt_tokens']:.0f} prompt + "
             f"{c['generated_tokens']:.0f} generated tokens, {c['nodes']:.0f} nodes, "
             f"{c['model_seconds']:.1f}s in models of {result.plan_seconds:.1f}s planning")
    if world_model is not None:
        echo(f"world model predicted {matches['exact']} of {matches['steps']} observations exactly")
    if tree_out is not None:
        echo(f"search trees: {tree_out}")
    for name, value in counters(parts).items():
        if value and not name.endswith(("predictions", "parsed")):
            echo(f"{name.replace('_', ' ')}: {value}")
    return result


def close_parts(parts: dict[str, Any]) -> None:
    for part in parts.values():
        close = getattr(part, "close", None)
        if callable(close):
            close()
