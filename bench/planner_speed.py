"""Planner cost on real ALFWorld states: overhead outside model calls, and decision times.

    python bench/planner_speed.py --policy CKPT --prm CKPT --world CKPT [--roots 4] [--threads 1] [--json OUT]
    python bench/planner_speed.py --default-model [--threads 2] [--json OUT]

Roots are real states: the first few walkthrough steps of valid_seen games (admissible commands
from the game). Every planner runs at its default settings (greedy; best-of-n N=8; beam W=4 D=3
C=8; mcts 32 simulations, 4 leaves/iteration, C=8) on all roots in one batched call, memo
cleared between repeats. Reported per planner: wall seconds per decision, the share spent inside
model calls (PlanStats.model_seconds: policy, world model incl. deriving the simulated state's
admissible list, scorer) and the rest — the planner's own bookkeeping ("overhead"; goal <= 5%).

``--default-model``: policy, world model and scorer all on the 135M base model (the zero-shot
judge as scorer), one root: the time of one beam decision (W=4, D=3, C=8) and its compute.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mpr.planners.config import PlannerConfig  # noqa: E402

from mpr.alfworld.env import EnvConfig  # noqa: E402
from mpr.compose import make_planner  # noqa: E402
from mpr.lm.engine import EngineConfig  # noqa: E402


def real_roots(count: int, steps: int = 3) -> list:
    """States after 0..steps-1 walkthrough actions of the first valid_seen games."""
    from mpr.planners.greedy import GreedyPlanner

    from mpr.alfworld.agents import WalkthroughPolicy
    from mpr.alfworld.data import list_tasks
    from mpr.alfworld.env import SerialEnv
    from mpr.run.episodes import run_episodes

    tasks = list_tasks("valid_seen", limit=max(1, (count + steps - 1) // steps))
    env = SerialEnv(1, EnvConfig(expert=False, max_actions=steps))
    try:
        episodes = run_episodes(env, GreedyPlanner(WalkthroughPolicy()), tasks, record_admissible=True)
    finally:
        env.close()
    return [s for e in episodes for s in e.states()[:steps]][:count]


def parts(args) -> tuple:
    from mpr.worldmodel.llm import LLMWorldModel

    from mpr.learned.policy import LLMPolicy, PolicyConfig
    from mpr.learned.scorer import JudgeScorer, PRMScorer
    from mpr.lm.backends import make_engine

    engine = EngineConfig(threads=args.threads, dtype=args.dtype)
    if args.default_model:
        shared = make_engine(engine)
        return LLMPolicy(shared, PolicyConfig()), LLMWorldModel(shared), JudgeScorer(shared)
    from mpr.lm.checkpoints import load_checkpoint

    policy_engine = make_engine(dataclasses.replace(engine, model=str(load_checkpoint(args.policy, "policy").path)))
    return (LLMPolicy(policy_engine, PolicyConfig()), LLMWorldModel.from_checkpoint(args.world, engine),
            PRMScorer.from_checkpoint(args.prm, engine))


def measure(name: str, roots: list, models: tuple, repeats: int) -> dict:
    runs = []
    for r in range(repeats + 1):  # the first run warms up (weights, caches); not reported
        planner = make_planner(PlannerConfig(name=name), *models)
        t0 = time.perf_counter()
        decisions = planner(roots)
        wall = time.perf_counter() - t0
        if r:
            runs.append((wall, sum(d.stats.model_seconds for d in decisions), decisions))
    wall, model, decisions = sorted(runs, key=lambda x: x[0])[len(runs) // 2]
    stats = [d.stats for d in decisions]
    return {
        "planner": name,
        "roots": len(roots),
        "seconds_per_call": wall,
        "seconds_per_decision": wall / len(roots),
        "model_seconds": model,
        "overhead_seconds": wall - model,
        "overhead_share": (wall - model) / wall,
        "model_calls": stats[0].model_calls,
        "requests": sum(s.requests for s in stats),
        "prompt_tokens": sum(s.prompt_tokens for s in stats),
        "generated_tokens": sum(s.generated_tokens for s in stats),
        "nodes": sum(s.nodes for s in stats),
        "wall_seconds_all_repeats": [round(x[0], 3) for x in runs],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--policy")
    p.add_argument("--prm")
    p.add_argument("--world")
    p.add_argument("--default-model", action="store_true")
    p.add_argument("--roots", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--dtype", default="auto")
    p.add_argument("--planners", default="greedy,best-of-n,beam,mcts")
    p.add_argument("--json")
    args = p.parse_args()
    if not args.default_model and not (args.policy and args.prm and args.world):
        p.error("give --policy, --prm and --world checkpoints, or --default-model")
    roots = real_roots(1 if args.default_model else args.roots)
    models = parts(args)
    names = ["beam"] if args.default_model else args.planners.split(",")
    rows = [measure(n, roots, models, args.repeats) for n in names]
    print(f"{'planner':<10} {'roots':>5} {'s/decision':>10} {'in models':>10} {'overhead':>9} {'calls':>6} "
          f"{'nodes':>6} {'prompt tok':>10} {'gen tok':>8}")
    for r in rows:
        print(f"{r['planner']:<10} {r['roots']:>5} {r['seconds_per_decision']:>10.3f} {r['model_seconds']:>10.2f} "
              f"{100 * r['overhead_share']:>8.2f}% {r['model_calls']:>6} {r['nodes']:>6} {r['prompt_tokens']:>10} "
              f"{r['generated_tokens']:>8}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        meta = {"threads": args.threads, "default_model": args.default_model, "policy": args.policy,
                "prm": args.prm, "world": args.world, "repeats": args.repeats, "settings": "planner defaults"}
        Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
