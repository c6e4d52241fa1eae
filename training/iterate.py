"""``mpr train iterate``: one AgentPRM iteration — rollouts -> targets -> PRM -> policy.

Stages write to ``OUT/rollouts``, ``OUT/prm`` and ``OUT/policy``. Each stage is resumable on its
own and skipped when already complete, so rerunning the command after a kill continues where it
stopped. The new policy checkpoint is ``OUT/policy``; ``OUT/iteration.json`` records the settings
and every stage's metrics.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from mpr.training.common import PRESETS_DIR, load_train_config
from mpr.training.rollout import RECORDS, RolloutConfig, rollout

from mpr.alfworld.env import EnvConfig
from mpr.config import from_mapping, load_yaml, require, to_dict
from mpr.owned import atomic_write_text, claim_dir


@dataclass(frozen=True)
class RolloutDefaults:
    """A preset's ``rollout:`` section: how much an iteration rolls out."""

    limit: int | None = None
    repeats: int = 4
    temperature: float = 1.0
    reset_half: float = 0.5  # `mpr train all` (`mpr train iterate` takes --reset-half)
    branches: int = 0  # `mpr train all`: branch rollouts per game off π₀'s rollouts (0: none; training.rollout)

    def __post_init__(self) -> None:
        require(self.branches >= 0, f"rollout branches must be >= 0, got {self.branches}")


@dataclass(frozen=True)
class IterateConfig:
    policy: str
    method: str = "rft"
    split: str = "train"
    limit: int | None = None
    repeats: int | None = None
    reset_half: float = 0.5
    workers: int = 2
    seed: int = 0
    preset: str = "tiny"
    config_file: str | None = None
    overrides: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        require(self.method in ("rft", "dpo"), f"method must be rft or dpo, got {self.method!r}")
        require(self.split in ("train", "valid_train"), "iterations train on train or valid_train only")


def rollout_defaults(preset: str) -> RolloutDefaults:
    data = load_yaml(PRESETS_DIR / f"{preset}.yaml") if (PRESETS_DIR / f"{preset}.yaml").is_file() else {}
    return from_mapping(RolloutDefaults, data.get("rollout"), where=f"preset {preset} rollout section")


def iterate(config: IterateConfig, out: Path, progress: bool = True, echo: Callable[[str], None] = print
            ) -> dict[str, Any]:
    from mpr.training.policy import train_policy_dpo, train_policy_rft
    from mpr.training.prm import train_agentprm

    prm_cfg = load_train_config("prm", config.preset, config.config_file, config.overrides)
    policy_cfg = load_train_config("policy", config.preset, config.config_file, config.overrides)
    defaults = rollout_defaults(config.preset)
    out = claim_dir(out, "iteration", legacy=[lambda d: (d / "rollouts" / RECORDS).is_file()])
    echo(f"[1/3] rollouts of {config.policy}")
    rollout_cfg = RolloutConfig(policy=config.policy, split=config.split, limit=config.limit or defaults.limit,
                                repeats=config.repeats or defaults.repeats, temperature=defaults.temperature,
                                reset_half=config.reset_half, seed=config.seed, workers=config.workers,
                                env=EnvConfig())
    rollout_summary = rollout(rollout_cfg, out / "rollouts", progress, echo)
    echo("[2/3] AgentPRM targets and PRM")
    prm_meta = train_agentprm([str(out / "rollouts")], out / "prm", prm_cfg, None, progress, echo)
    echo(f"[3/3] policy improvement ({config.method})")
    policy_cfg = dataclasses.replace(policy_cfg, base=config.policy)
    fn = train_policy_rft if config.method == "rft" else train_policy_dpo
    policy_meta = fn([str(out / "rollouts")], str(out / "prm"), out / "policy", policy_cfg, progress, echo)
    record = {"config": to_dict(config), "rollouts": rollout_summary, "prm": prm_meta.get("metrics"),
              "policy": policy_meta.get("metrics"), "new_policy": str(out / "policy")}
    atomic_write_text(out / "iteration.json", json.dumps(record, indent=2, default=str))
    echo(f"new policy: {out / 'policy'}  (evaluate: mpr eval --agent policy --policy {out / 'policy'} --split valid_seen)")
    return {"metrics": {"rollout_success": rollout_summary["success_rate"], **(policy_meta.get("metrics") or {})}}
