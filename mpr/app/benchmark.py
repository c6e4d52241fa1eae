"""``mpr bench RECIPE``: planners against Best-of-N at matched compute, on the same games and models.

A recipe (``bench/configs/*.yaml``) names the games (split, games per task type or a limit), the
models (checkpoint paths, or ``build: tiny`` to train the tiny chain first), the baselines
(walkthrough / expert / random: no model) and the arms. An arm is a planner with a compute
**budget**: the number of (state, action) pairs the PRM scores per decision —

* best-of-n: N = budget;
* beam (width W, candidates C): it scores C + (D-1)·W·C pairs, so depth D = 1 + (budget - C) / (W·C),
  rounded (halves up), at least 1;
* mcts (candidates C): it scores C + S·C pairs, so simulations S = (budget - C) / C, rounded, at least 1;

so arms with one budget score about the same number of candidates per real step, as in the seed
paper's Figure 2b for N. The compute each arm really spent (model calls, tokens, seconds) is
measured per episode and reported beside its success rate.

Every arm is an ``mpr eval`` run into ``<out>/arms/<arm>.jsonl`` (append-only, resumable: a rerun
skips finished episodes). After the arms, the harness writes (all derived from the JSONL, so a
rerun regenerates them): ``episodes.jsonl`` (every episode with its arm), ``summary.json``,
``report.md`` (success % with Wilson 95% intervals overall and per task type, mean actions, model
calls, tokens, wall time per episode) and plots (success vs compute; per-task-type bars).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mpr.alfworld.agents import REFERENCE_AGENTS
from mpr.alfworld.data import SPLITS, TASK_TYPES
from mpr.config import from_mapping, load_yaml, require, to_dict
from mpr.errors import ConfigError
from mpr.owned import atomic_write_text, claim_dir, has_json
from mpr.planners.config import PLANNERS
from mpr.run.episodes import EpisodeResult, compute_totals, read_episodes

BASELINES = REFERENCE_AGENTS  # the arms that need no model


@dataclass(frozen=True)
class ArmConfig:
    """One planner at one budget. ``budget``: PRM-scored pairs per decision (ignored by greedy)."""

    planner: str
    budget: int = 1
    width: int = 2  # beam
    candidates: int = 4  # beam, mcts
    leaves_per_iter: int = 4  # mcts
    name: str = ""

    def __post_init__(self) -> None:
        require(self.planner in PLANNERS, f"arm planner must be one of {PLANNERS}, got {self.planner!r}")
        require(self.budget >= 1, f"arm budget must be >= 1, got {self.budget}")
        if not self.name:
            object.__setattr__(self, "name", self.planner if self.planner == "greedy" else f"{self.planner}@{self.budget}")

    def planner_settings(self) -> dict[str, Any]:
        """The planner flags this arm's budget maps to (see the module doc)."""
        b, c, w = self.budget, self.candidates, self.width
        if self.planner == "best-of-n":
            return {"n": b}
        if self.planner == "beam":
            return {"width": w, "candidates": c, "depth": max(1, _round(1 + (b - c) / (w * c)))}
        if self.planner == "mcts":
            return {"candidates": c, "simulations": max(1, _round((b - c) / c)), "leaves_per_iter": self.leaves_per_iter}
        return {}


def _round(x: float) -> int:
    """Halves round up (Python's round() would send 2.5 to 2)."""
    return math.floor(x + 0.5)


@dataclass(frozen=True)
class ModelsConfig:
    """Checkpoints for policy / prm / world, or ``build: tiny`` to train the tiny chain into
    ``<out>/models`` first (expert demonstrations on ``train_games`` train games; ``train_steps``
    optimizer steps per model, 0: the tiny preset's epochs)."""

    build: str | None = None
    train_games: int = 12
    train_steps: int = 0
    policy: str | None = None
    prm: str | None = None
    world: str | None = None

    def __post_init__(self) -> None:
        require(self.build in (None, "tiny"), f"models.build must be 'tiny' or absent, got {self.build!r}")
        require(self.train_steps >= 0, f"models.train_steps must be >= 0, got {self.train_steps}")
        require(self.build is not None or all((self.policy, self.prm, self.world)),
                "models: give policy, prm and world checkpoints, or build: tiny")


@dataclass(frozen=True)
class BenchConfig:
    name: str
    split: str = "valid_unseen"
    games_per_type: int | None = None  # None: every game of the split
    max_actions: int = 30
    seed: int = 0
    workers: int = 2
    threads: int = 1
    max_length: int = 1024  # prompt tokens the models see (history beyond it is dropped, oldest first)
    models: ModelsConfig = field(default_factory=lambda: ModelsConfig(build="tiny"))
    baselines: tuple[str, ...] = BASELINES
    arms: tuple[ArmConfig, ...] = ()
    # published numbers, shown as quoted (not rerun): {name, source, success_rate (or null + note), episodes}
    quoted: tuple[dict[str, Any], ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        require(bool(self.name), "a recipe needs a name")
        require(self.split in SPLITS, f"unknown split {self.split!r}; choose one of: {', '.join(SPLITS)}")
        require(self.max_actions >= 1, f"max_actions must be >= 1, got {self.max_actions}")
        unknown = [b for b in self.baselines if b not in BASELINES]
        require(not unknown, f"unknown baseline(s) {unknown}; choose from {BASELINES}")
        names = [a.name for a in self.arms] + list(self.baselines)
        require(len(names) == len(set(names)), f"arm names must be unique, got {names}")
        require(self.games_per_type is None or self.games_per_type >= 1, "games_per_type must be >= 1")
        require(self.max_length >= 64, f"max_length must be >= 64, got {self.max_length}")
        require(self.workers >= 1, f"workers must be >= 1, got {self.workers}")
        require(self.threads >= 0, f"threads must be >= 0 (0: $MPR_THREADS or the core count), got {self.threads}")
        for q in self.quoted:
            require(isinstance(q, dict) and bool(q.get("name")) and bool(q.get("source")),
                    f"a quoted row needs a name and a source, got {q!r}")
            rate = q.get("success_rate")
            require(rate is None or (isinstance(rate, (int, float)) and 0 <= rate <= 1),
                    f"quoted success_rate must be a fraction in [0, 1] or null, got {rate!r}")


def load_recipe(path: str | Path) -> BenchConfig:
    data = load_yaml(path)
    where = str(path)
    shapes = {"models": (dict, "a mapping"), "arms": (list, "a list of mappings"),
              "baselines": (list, "a list of names"), "quoted": (list, "a list of mappings")}
    for key, (kind, what) in shapes.items():
        if data.get(key) is not None and not isinstance(data[key], kind):
            raise ConfigError(f"{where}: {key} must be {what}, got {data[key]!r}")
    for key in ("arms", "quoted"):
        bad = [a for a in data.get(key) or [] if not isinstance(a, dict)]
        if bad:
            raise ConfigError(f"{where}: each of {key} must be a mapping, got {bad[0]!r}")
    models = from_mapping(ModelsConfig, data.pop("models", {"build": "tiny"}), where=f"{where}: models")
    arms = tuple(from_mapping(ArmConfig, a, where=f"{where}: arms") for a in data.pop("arms", []) or [])
    baselines = tuple(data.pop("baselines", BASELINES) or ())
    quoted = tuple(data.pop("quoted", []) or [])
    return from_mapping(BenchConfig, {**data, "models": models, "arms": arms, "baselines": baselines,
                                      "quoted": quoted}, where=where)


# -- running ---------------------------------------------------------------------------------


def build_tiny_models(config: BenchConfig, out: Path, echo: Callable[[str], None], progress: bool,
                      executor: Any = None) -> ModelsConfig:
    """Train the tiny chain (expert demos -> SFT policy, AgentPRM on the demos, world model) into
    ``out/models``; each stage is skipped when its checkpoint is already there."""
    from mpr.alfworld.env import EnvConfig
    from mpr.training.common import load_train_config
    from mpr.training.policy import train_policy_sft
    from mpr.training.prm import train_agentprm
    from mpr.training.rollout import RolloutConfig, rollout
    from mpr.training.world import train_world

    models = out / "models"
    demos = models / "demos"
    echo(f"building tiny models in {models} (expert demos on {config.models.train_games} train games)")
    extra = {"executor": executor} if executor is not None else {}
    rollout(RolloutConfig(policy="expert", split="train", limit=config.models.train_games, workers=config.workers,
                          env=EnvConfig(), **extra), demos, progress=progress, echo=echo)
    steps = [f"max_steps={config.models.train_steps}"] if config.models.train_steps else []
    train_policy_sft([demos], models / "policy", load_train_config("policy", "tiny", overrides=steps), progress=progress,
                     echo=echo)
    train_agentprm([demos], models / "prm", load_train_config("prm", "tiny", overrides=steps), progress=progress, echo=echo)
    train_world([demos], models / "world", load_train_config("world", "tiny", overrides=steps), progress=progress, echo=echo)
    return dataclasses.replace(config.models, policy=str(models / "policy"), prm=str(models / "prm"),
                               world=str(models / "world"))


def arm_eval_config(config: BenchConfig, models: ModelsConfig, arm: ArmConfig | str, executor: Any = None) -> Any:
    """The EvalConfig of one arm (a baseline name or an ArmConfig)."""
    from mpr.alfworld.env import EnvConfig
    from mpr.compose import candidate_mode
    from mpr.learned.policy import PolicyConfig
    from mpr.lm.engine import EngineConfig
    from mpr.planners.config import PlannerConfig, with_overrides
    from mpr.run.evaluation import EvalConfig

    limit = config.games_per_type * len(TASK_TYPES) if config.games_per_type else None
    common: dict[str, Any] = dict(split=config.split, limit=limit, seed=config.seed, workers=config.workers,
                                  model=EngineConfig(threads=config.threads, max_length=config.max_length))
    if executor is not None:
        common["executor"] = executor
    if isinstance(arm, str):
        return EvalConfig(agent=arm, env=EnvConfig(max_actions=config.max_actions, expert=arm == "expert"), **common)
    planner = with_overrides(PlannerConfig(name=arm.planner), **arm.planner_settings())
    policy = PolicyConfig(mode=candidate_mode(arm.planner))  # Best-of-N draws its N candidates
    return EvalConfig(agent="policy", policy_ckpt=models.policy, prm=models.prm, world=models.world, planner=planner,
                      policy=policy, env=EnvConfig(max_actions=config.max_actions, expert=False), **common)


def select_arms(config: BenchConfig, only: Sequence[str] | None) -> list[tuple[str, ArmConfig | str]]:
    """(name, arm) of the arms to run, in recipe order: all of them, or those named in ``only``."""
    arms: list[ArmConfig | str] = [*config.baselines, *config.arms]
    named = [(a if isinstance(a, str) else a.name, a) for a in arms]
    if only is None:
        return named
    unknown = [n for n in only if n not in dict(named)]
    if unknown:
        raise ConfigError(f"unknown arm(s) {', '.join(unknown)}; recipe {config.name!r} has: "
                          f"{', '.join(n for n, _ in named)}")
    return [(n, a) for n, a in named if n in only]


def run_bench(config: BenchConfig, out: str | Path, progress: bool = True,
              echo: Callable[[str], None] = print, executor: Any = None,
              only: Sequence[str] | None = None) -> dict[str, Any]:
    """Run (or resume) every arm — or only the arms named in ``only`` — then write the derived
    report files over every arm recorded so far. Returns the summary.
    ``executor`` (an ``mpr.run.executor.ExecutorConfig``): where episodes run; local by default.
    Separate processes may run different arms of one results dir at once (each arm has its own
    record file; the models are built before, or found already built)."""
    from mpr.run.evaluation import evaluate

    chosen = select_arms(config, only)
    out = claim_dir(out, "bench", legacy=[has_json("config.json", ("recipe", "models", "arms"))])
    (out / "arms").mkdir(parents=True, exist_ok=True)
    models = config.models
    if models.build == "tiny":
        models = build_tiny_models(config, out, echo, progress, executor)
    resolved = {"recipe": to_dict(config), "models": to_dict(models),
                "arms": {a.name: a.planner_settings() for a in config.arms}}
    atomic_write_text(out / "config.json", json.dumps(resolved, indent=2))
    names = [name for name, _ in select_arms(config, None)]
    for i, (name, arm) in enumerate(chosen):
        echo(f"[{i + 1}/{len(chosen)}] {name}")
        started = time.perf_counter()
        result = evaluate(arm_eval_config(config, models, arm, executor), out / "arms" / f"{_file(name)}.jsonl",
                          progress=progress, echo=lambda m: None)
        before = result["episodes_in_summary"] - result["episodes_run_now"]
        echo(f"    {result['episodes_run_now']} episodes run now, {before} already recorded "
             f"({time.perf_counter() - started:.0f}s)")
    return write_report(config, out, names, echo)


def _file(name: str) -> str:
    return name.replace("@", "-at-").replace("/", "_")


# -- the report ----------------------------------------------------------------------------------


def wilson(wins: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score 95% interval for ``wins`` successes in ``n`` trials ((0, 0) for n = 0)."""
    if n == 0:
        return (0.0, 0.0)
    p = wins / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def summarize_arm(episodes: list[EpisodeResult]) -> dict[str, Any]:
    """Success, its 95% interval, per task type, and the measured compute of one arm's episodes."""
    def block(eps: list[EpisodeResult]) -> dict[str, Any]:
        wins = sum(e.won for e in eps)
        lo, hi = wilson(wins, len(eps))
        return {"episodes": len(eps), "wins": wins, "success_rate": wins / len(eps) if eps else 0.0,
                "ci95": [lo, hi], "errors": sum(e.error is not None for e in eps)}

    n = max(1, len(episodes))
    summed = compute_totals(episodes)
    total = {k: summed.get(k, 0) for k in ("decisions", "model_calls", "prompt_tokens", "generated_tokens", "requests")}
    decisions = max(1, total["decisions"])
    tokens = total["prompt_tokens"] + total["generated_tokens"]
    return {
        **block(episodes),
        "per_type": {t: block([e for e in episodes if e.task_type == t]) for t in TASK_TYPES
                     if any(e.task_type == t for e in episodes)},
        "mean_actions": sum(e.num_actions for e in episodes) / n,
        "model_calls": total["model_calls"],
        "tokens": tokens,
        "model_calls_per_episode": total["model_calls"] / n,
        "tokens_per_episode": tokens / n,
        "tokens_per_decision": tokens / decisions,
        "requests_per_decision": total["requests"] / decisions,
        "wall_seconds_per_episode": sum(e.seconds for e in episodes) / n,
    }


def collect(out: Path, names: list[str]) -> dict[str, list[EpisodeResult]]:
    """Every recorded episode per arm, in record order."""
    arms = {}
    for name in names:
        path = out / "arms" / f"{_file(name)}.jsonl"
        arms[name] = list(read_episodes(path)[1].values()) if path.exists() else []
    return arms


def episodes_by_arm(path: Path) -> dict[str, list[EpisodeResult]]:
    """A combined ``episodes.jsonl`` (one line per episode with its arm) as arm -> episodes, in file order."""
    by_arm: dict[str, list[EpisodeResult]] = {}
    for line in path.read_text().splitlines():
        d = json.loads(line)
        arm = d.pop("arm")
        by_arm.setdefault(arm, []).append(EpisodeResult.from_json(d))
    return by_arm


def summarize_episodes_file(path: Path) -> dict[str, dict[str, Any]]:
    """Per-arm summaries recomputed from a combined ``episodes.jsonl`` (the committed report's check)."""
    return {arm: summarize_arm(eps) for arm, eps in episodes_by_arm(path).items()}


def write_report(config: BenchConfig, out: Path, names: list[str], echo: Callable[[str], None] = print) -> dict[str, Any]:
    """episodes.jsonl, summary.json, report.md and plots from the records of ``names`` (arms with no
    record yet are left out)."""
    arms = {name: eps for name, eps in collect(out, names).items() if eps}
    lines = [json.dumps({"arm": name, **e.to_json()}) for name, eps in arms.items() for e in eps]
    atomic_write_text(out / "episodes.jsonl", "\n".join(lines) + ("\n" if lines else ""))
    summary = {
        "name": config.name,
        "split": config.split,
        "arms": {name: summarize_arm(eps) for name, eps in arms.items()},
        "arm_settings": {a.name: {"planner": a.planner, "budget": a.budget, **a.planner_settings()} for a in config.arms},
        "quoted": list(config.quoted),
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    report = markdown(config, summary)
    atomic_write_text(out / "report.md", report)
    pictures = plot(summary, out)
    echo(report)
    echo(f"results: {out} (summary.json, report.md, episodes.jsonl{''.join(', ' + p.name for p in pictures)})")
    return summary


def markdown(config: BenchConfig, summary: dict[str, Any]) -> str:
    rows = ["| arm | settings | episodes | success % (95% CI) | mean actions | model calls / ep | tokens / ep | "
            "model requests / decision | wall s / ep |", "|---|---|---|---|---|---|---|---|---|"]
    for name, s in summary["arms"].items():
        settings = summary["arm_settings"].get(name, {})
        shown = ", ".join(f"{k}={v}" for k, v in settings.items() if k not in ("planner", "budget")) or "—"
        lo, hi = s["ci95"]
        if name in BASELINES:  # no model: their policy calls are not model compute
            shown, compute = "no model", "— | — | —"
        else:
            compute = (f"{s['model_calls_per_episode']:.0f} | {s['tokens_per_episode']:.0f} | "
                       f"{s['requests_per_decision']:.1f}")
        rows.append(f"| {name} | {shown} | {s['episodes']} | {100 * s['success_rate']:.1f} ({100 * lo:.1f}–{100 * hi:.1f}) | "
                    f"{s['mean_actions']:.1f} | {compute} | {s['wall_seconds_per_episode']:.1f} |")
    for q in summary["quoted"]:
        rate = q.get("success_rate")
        shown_rate = f"{100 * float(rate):.1f}" if rate is not None else f"— ({q.get('note', 'no number quoted')})"
        rows.append(f"| {q.get('name')} (quoted, not rerun) | {q.get('source', '')} | {q.get('episodes', '—')} | "
                    f"{shown_rate} | — | — | — | — | — |")
    types = [t for t in TASK_TYPES if any(t in s["per_type"] for s in summary["arms"].values())]
    per_type = ["| arm | " + " | ".join(types) + " |", "|---|" + "---|" * len(types)]
    for name, s in summary["arms"].items():
        cells = [f"{100 * s['per_type'][t]['success_rate']:.0f}% ({s['per_type'][t]['wins']}/{s['per_type'][t]['episodes']})"
                 if t in s["per_type"] else "—" for t in types]
        per_type.append(f"| {name} | " + " | ".join(cells) + " |")
    head = [f"# mpr bench: {config.name}", "", config.description.strip(), "",
            f"Split {config.split}; up to {config.max_actions} actions per episode; seed {config.seed}. "
            "Success rates are computed from the episodes in `episodes.jsonl`; intervals are Wilson 95%. "
            "Compute is measured per episode: batched model calls, prompt + generated tokens, and model requests "
            "(items proposed, simulated or scored) per decision. An arm's budget is the number of (state, action) "
            "pairs its PRM scores per decision.",
            ""]
    return "\n".join(head + rows + ["", "Success per task type:", ""] + per_type) + "\n"


def bar_colors(n: int) -> list[tuple[float, float, float, float]]:
    """``n`` distinct RGBA colours: matplotlib's default cycle repeats after 10, and an 11-arm report
    drew its last arm in the first one's colour."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def plot(summary: dict[str, Any], out: Path) -> list[Path]:
    """success_vs_compute.png and per_type.png; none without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    arms = summary["arms"]
    settings = summary["arm_settings"]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    families: dict[str, list[tuple[float, float, float, float]]] = {}
    for name, s in arms.items():
        family = settings.get(name, {}).get("planner", name)
        if s["tokens_per_decision"] > 0:
            lo, hi = s["ci95"]
            families.setdefault(family, []).append((s["tokens_per_decision"], s["success_rate"], lo, hi))
    for family, pts in sorted(families.items()):
        pts.sort()
        xs, ys = [p[0] for p in pts], [100 * p[1] for p in pts]
        err = [[100 * (p[1] - p[2]) for p in pts], [100 * (p[3] - p[1]) for p in pts]]
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=family)
    for name in ("walkthrough", "expert", "random"):
        if name in arms:
            ax.axhline(100 * arms[name]["success_rate"], ls=":", color="gray")
            ax.text(ax.get_xlim()[0] if families else 0, 100 * arms[name]["success_rate"], f" {name}", fontsize=7,
                    va="bottom", color="gray")
    ax.set_xscale("log")
    ax.set_xlabel("model tokens per decision (measured)")
    ax.set_ylabel("success % (95% CI)")
    ax.set_title(f"{summary['name']}: success vs compute")
    ax.legend(fontsize=8)
    fig.tight_layout()
    first = out / "success_vs_compute.png"
    fig.savefig(first, dpi=110)
    plt.close(fig)
    types = [t for t in TASK_TYPES if any(t in s["per_type"] for s in arms.values())]
    fig, ax = plt.subplots(figsize=(min(11.0, max(6.5, 1.2 * len(types) * max(1, len(arms)) / 3)), 4.2))
    width = 0.8 / max(1, len(arms))
    for k, ((name, s), color) in enumerate(zip(arms.items(), bar_colors(len(arms)))):
        ys = [100 * s["per_type"].get(t, {}).get("success_rate", 0) for t in types]
        ax.bar([i + k * width for i in range(len(types))], ys, width, label=name, color=color)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(types))])
    ax.set_xticklabels([t.replace("_", "\n") for t in types], fontsize=7)
    ax.set_ylabel("success %")
    ax.set_ylim(0, 135)  # headroom: the legend sits above 100% bars
    ax.set_title(f"{summary['name']}: success per task type")
    ax.legend(fontsize=7, ncol=min(6, max(1, len(arms))), loc="upper center")
    fig.tight_layout()
    second = out / "per_type.png"
    fig.savefig(second, dpi=110)
    plt.close(fig)
    return [first, second]
