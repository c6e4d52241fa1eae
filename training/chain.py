"""``mpr train all``: the whole training chain in one resumable command.

Stages, each into its own folder of ``OUT`` and each skipped when complete (rollouts resume
episode by episode, training stages from their last saved step):

1. ``demos``: ALFWorld's handcoded expert on the train split (``--demos-limit`` games, default all);
2. ``pi0``: the policy's SFT on the demonstrations (the preset's ``policy`` section);
3. ``rollouts``: π₀ on the train split (the preset's ``rollout`` section: games, repeats,
   temperature, reset-50-50 share);
4. ``branches``: ``branches`` rollouts per game that replay one of π₀'s rollouts to a random step
   and take another of its proposals there (``training.rollout``, ``branch_from``): the same-state
   alternatives AgentPRM needs to rank a state's actions (skipped when the section says 0);
5. ``prm``: AgentPRM on π₀'s rollouts and branches (Monte-Carlo targets; the ``prm`` section);
6. ``world``: the world model on π₀'s rollouts (the ``world`` section): the states planners
   simulate from are the policy's, and its transitions are what the model must predict.

A stage whose ``base`` is ``pi0`` starts from the chain's π₀ (the PRM and the world model then
start from a model that already reads the transcripts).

``OUT/chain.json`` records the settings, every stage's metrics and its wall time (summed over the
runs that worked on it), rewritten after each stage.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mpr.training.common import load_train_config
from mpr.training.iterate import rollout_defaults
from mpr.training.rollout import RECORDS, RolloutConfig, rollout

from mpr.alfworld.env import EnvConfig
from mpr.config import require, to_dict
from mpr.owned import atomic_write_text, claim_dir

STAGES = ("demos", "pi0", "rollouts", "branches", "prm", "world")
RECORD = "chain.json"


@dataclass(frozen=True)
class ChainConfig:
    """``mpr train all``'s settings: the preset (and a YAML file / ``--set`` overrides applied to
    every training stage), how many train games the expert demonstrates (None: all), env workers."""

    preset: str = "cpu"
    config_file: str | None = None
    overrides: tuple[str, ...] = ()
    demos_limit: int | None = None
    workers: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        require(self.demos_limit is None or self.demos_limit >= 1, f"--demos-limit must be >= 1, got {self.demos_limit}")
        require(self.workers >= 0, f"--workers must be >= 0, got {self.workers}")


def train_all(config: ChainConfig, out: Path, progress: bool = True, echo: Callable[[str], None] = print
              ) -> dict[str, Any]:
    """Run (or resume) every stage of the chain into ``out``; returns the chain record."""
    from mpr.training.policy import train_policy_sft
    from mpr.training.prm import train_agentprm
    from mpr.training.world import train_world

    import dataclasses

    out = Path(out)
    configs = {stage: load_train_config(stage, config.preset, config.config_file, config.overrides)
               for stage in ("policy", "prm", "world")}
    configs = {stage: dataclasses.replace(c, base=str((out / "pi0").resolve())) if c.base == "pi0" else c
               for stage, c in configs.items()}
    defaults = rollout_defaults(config.preset)
    out = claim_dir(out, "chain", legacy=[lambda d: (d / "demos" / RECORDS).is_file()])
    record = _read_record(out, config)
    demos, rollouts, branches = out / "demos", out / "rollouts", out / "branches"
    prm_data = [str(rollouts)] + ([str(branches)] if defaults.branches else [])
    runs: dict[str, Callable[[], dict[str, Any]]] = {
        "demos": lambda: rollout(RolloutConfig(policy="expert", split="train", limit=config.demos_limit,
                                               workers=config.workers, seed=config.seed, env=EnvConfig()),
                                 demos, progress, echo),
        "pi0": lambda: train_policy_sft([str(demos)], out / "pi0", configs["policy"], progress, echo),
        "rollouts": lambda: rollout(RolloutConfig(policy=str(out / "pi0"), split="train", limit=defaults.limit,
                                                  repeats=defaults.repeats, temperature=defaults.temperature,
                                                  reset_half=defaults.reset_half, seed=config.seed,
                                                  workers=config.workers, env=EnvConfig()),
                                    rollouts, progress, echo),
        "branches": lambda: rollout(RolloutConfig(policy=str(out / "pi0"), split="train", limit=defaults.limit,
                                                  repeats=defaults.branches, temperature=defaults.temperature,
                                                  branch_from=str(rollouts), seed=config.seed,
                                                  workers=config.workers, env=EnvConfig()),
                                    branches, progress, echo) if defaults.branches else {"skipped": True},
        "prm": lambda: train_agentprm(prm_data, out / "prm", configs["prm"], None, progress, echo),
        "world": lambda: train_world([str(rollouts)], out / "world", configs["world"], (), progress, echo),
    }
    for k, stage in enumerate(STAGES, 1):
        echo(f"[{k}/{len(STAGES)}] {stage}: {_what(stage, out)}")
        t0 = time.perf_counter()
        result = runs[stage]()
        entry = record["stages"].setdefault(stage, {"seconds": 0.0})
        entry["seconds"] += time.perf_counter() - t0
        entry["result"] = _summary(result)
        atomic_write_text(out / RECORD, json.dumps(record, indent=2, default=str))
    total = sum(s["seconds"] for s in record["stages"].values())
    echo(f"chain complete in {out}: {total / 60:.1f} min of work in all (per stage: {out / RECORD})")
    return record


def _what(stage: str, out: Path) -> str:
    return {"demos": "handcoded-expert demonstrations of the train split",
            "pi0": "π₀, SFT on the demonstrations", "rollouts": "π₀ on the train split",
            "branches": "π₀ branching off its rollouts (same-state alternatives)",
            "prm": "AgentPRM on π₀'s rollouts and branches", "world": "world model on π₀'s rollouts"}[stage] + \
        f" -> {out / stage}"


def _read_record(out: Path, config: ChainConfig) -> dict[str, Any]:
    """The chain record of ``out`` (its stage times carried over), or a new one for ``config``."""
    path = out / RECORD
    settings = json.loads(json.dumps(to_dict(config), default=str))
    if path.is_file():
        record = json.loads(path.read_text())
        record["config"] = settings
        return record
    return {"config": settings, "stages": {}}


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    """A stage's result as the record keeps it: a rollout's summary, a checkpoint's metrics."""
    if "metrics" in result:
        return {k: v for k, v in result["metrics"].items() if not isinstance(v, list)}
    return {k: v for k, v in result.items() if not isinstance(v, (list, dict))}
