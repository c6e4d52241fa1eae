"""Episodes per minute: Ray with 1 actor vs 2 actors (and the local pool), on the same games, in one run.

    python bench/ray_speed.py [--games 12] [--policy expert|CKPT] [--max-actions 30] [--json OUT]

Each configuration plays the same valid_seen games into a fresh records file; reported: wall seconds
(Ray start-up and actor start-up included, as a user sees it), episodes per minute, and the speed-up of
2 actors over 1. ``--policy CKPT``: a trained policy (models load once per actor) instead of the
handcoded expert. Every run's records are checked to agree (``mpr.run.episodes.record_differences``:
discrete content exactly, values within the measured batch-layout tolerance, timings aside).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mpr.alfworld.env import EnvConfig  # noqa: E402
from mpr.lm.engine import EngineConfig  # noqa: E402
from mpr.run.episodes import record_differences  # noqa: E402
from mpr.run.executor import ExecutorConfig  # noqa: E402


def comparable(path: Path) -> dict:
    return {d["task_id"]: d for d in map(json.loads, path.read_text().splitlines())
            if d.get("type") == "episode"}


def run(args: argparse.Namespace, name: str, executor: ExecutorConfig, workers: int, tmp: Path) -> dict:
    from mpr.run.evaluation import EvalConfig, evaluate

    agent = "expert" if args.policy == "expert" else "policy"
    config = EvalConfig(agent=agent, policy_ckpt=None if agent == "expert" else args.policy, split="valid_seen",
                        limit=args.games, workers=workers, env=EnvConfig(max_actions=args.max_actions,
                                                                        expert=agent == "expert"),
                        model=EngineConfig(threads=1), executor=executor)
    out = tmp / f"{name}.jsonl"
    t0 = time.perf_counter()
    summary = evaluate(config, out, progress=False, echo=lambda _m: None)
    wall = time.perf_counter() - t0
    return {"run": name, "episodes": summary["episodes_run_now"], "wall_seconds": wall,
            "episodes_per_minute": 60 * summary["episodes_run_now"] / wall, "records": out}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--games", type=int, default=12)
    p.add_argument("--policy", default="expert")
    p.add_argument("--max-actions", type=int, default=30)
    p.add_argument("--json")
    args = p.parse_args()
    ray_cfg = ExecutorConfig(kind="ray", cpus=2, slots=1)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        rows = [run(args, "local, 1 worker", ExecutorConfig(), 1, tmp),
                run(args, "local, 2 workers", ExecutorConfig(), 2, tmp),
                run(args, "ray, 1 actor", dataclasses.replace(ray_cfg, actors=1), 0, tmp),
                run(args, "ray, 2 actors", dataclasses.replace(ray_cfg, actors=2), 0, tmp)]
        first = comparable(rows[0]["records"])
        same = all(not record_differences(comparable(r["records"]), first) for r in rows[1:])
    print(f"{'run':<18} {'episodes':>8} {'wall s':>8} {'ep/min':>8}")
    for r in rows:
        print(f"{r['run']:<18} {r['episodes']:>8} {r['wall_seconds']:>8.1f} {r['episodes_per_minute']:>8.1f}")
    speedup = rows[3]["episodes_per_minute"] / rows[2]["episodes_per_minute"]
    print(f"ray 2 actors / 1 actor: {speedup:.2f}x; local 2 / 1 workers: "
          f"{rows[1]['episodes_per_minute'] / rows[0]['episodes_per_minute']:.2f}x; records equal: {same}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        meta = {"games": args.games, "policy": args.policy, "max_actions": args.max_actions, "split": "valid_seen"}
        Path(args.json).write_text(json.dumps({"meta": meta, "rows": [{k: v for k, v in r.items() if k != "records"}
                                                                     for r in rows],
                                               "speedup_ray_2_over_1": speedup, "records_equal": same}, indent=2))


if __name__ == "__main__":
    main()
