"""Environment speed, measured as ratios within one run.

    python bench/env_speed.py [--games 6] [--pool-games 12] [--json OUT]

Reports, on the same valid_unseen games:
  * load+reset seconds per fresh game, and reset seconds for a game already loaded,
    with and without the PDDL-translation cache;
  * env steps/s while playing the walkthrough, with and without the text-generation
    (grammar parse) caches;
  * episodes/s of a walkthrough evaluation on a pool of 1 vs 2 worker processes.
The uncached configuration runs first in a fresh process state; caches are
process-wide patches that are switched, not merely re-used.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mpr.alfworld.data import list_tasks, load_walkthrough  # noqa: E402
from mpr.alfworld.env import AlfworldGame, EnvConfig  # noqa: E402


def game_timings(tasks, cached: bool, cache_dir: str) -> dict[str, float]:
    """Fresh-load reset time, same-game reset time and walkthrough steps/s over ``tasks``."""
    from mpr.alfworld import speedups

    speedups.install(False, False)  # drop any wrappers (and their in-memory caches) from a previous run
    game = AlfworldGame(EnvConfig(parse_cache=cached, pddl_cache=cached, pddl_cache_dir=cache_dir, expert=False,
                                  max_actions=100))
    load_reset, re_reset, steps, step_time = [], [], 0, 0.0
    for task in tasks:
        t0 = time.perf_counter()
        game.reset(task.id)
        load_reset.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        game.reset(task.id)
        re_reset.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for action in load_walkthrough(task):
            game.step(action)
            steps += 1
        step_time += time.perf_counter() - t0
    game.close()
    return {
        "load_reset_s": sum(load_reset) / len(load_reset),
        "same_game_reset_s": sum(re_reset) / len(re_reset),
        "steps_per_s": steps / step_time,
        "steps": steps,
    }


def pool_rate(tasks, workers: int, cache_dir: str) -> float:
    """Episodes/s of a walkthrough run on a pool (worker start-up excluded)."""
    from mpr.planners.greedy import GreedyPlanner

    from mpr.alfworld.agents import WalkthroughPolicy
    from mpr.alfworld.pool import EnvPool, PoolConfig
    from mpr.run.episodes import run_episodes

    with EnvPool(PoolConfig(num_workers=workers), EnvConfig(expert=False, pddl_cache_dir=cache_dir)) as pool:
        pool.reset([tasks[0].id] * workers)  # workers started and engines imported before timing
        t0 = time.perf_counter()
        results = run_episodes(pool, GreedyPlanner(WalkthroughPolicy()), tasks)
        elapsed = time.perf_counter() - t0
    assert all(r.won for r in results), "walkthrough must win every game"
    return len(results) / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--games", type=int, default=6)
    ap.add_argument("--pool-games", type=int, default=30)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    cache_dir = tempfile.mkdtemp(prefix="mpr-bench-pddl-")
    tasks = list_tasks("valid_unseen", limit=args.games)
    runs = {
        "uncached": game_timings(tasks, cached=False, cache_dir=cache_dir),
        "cached, cold disk": game_timings(tasks, cached=True, cache_dir=cache_dir),
        "cached, warm disk": game_timings(tasks, cached=True, cache_dir=cache_dir),
    }
    pool_tasks = list_tasks("valid_unseen", limit=args.pool_games)
    pool_rate(pool_tasks, 2, cache_dir)  # warm the translation cache so both pool runs see the same state
    one, two = pool_rate(pool_tasks, 1, cache_dir), pool_rate(pool_tasks, 2, cache_dir)
    base = runs["uncached"]
    report = {
        "games": len(tasks),
        **runs,
        "pool_games": len(pool_tasks),
        "pool_1_worker_episodes_per_s": one,
        "pool_2_workers_episodes_per_s": two,
        "pool_speedup_2_vs_1": two / one,
    }
    print(f"games: {len(tasks)} valid_unseen (walkthrough, {base['steps']} steps); ratios vs uncached")
    print(f"{'':24}" + "".join(f"{name:>24}" for name in runs))
    for key, label, higher_better in [("load_reset_s", "load+reset (s/game)", False),
                                      ("same_game_reset_s", "reset, same game (s)", False),
                                      ("steps_per_s", "env steps/s", True)]:
        cells = []
        for r in runs.values():
            ratio = r[key] / base[key] if higher_better else base[key] / r[key]
            cells.append(f"{r[key]:>14.2f} ({ratio:>5.1f}x)")
        print(f"{label:<24}" + "".join(f"{c:>24}" for c in cells))
    print(f"pool, {len(pool_tasks)} walkthrough episodes (warm disk cache): 1 worker {one:.2f} ep/s, "
          f"2 workers {two:.2f} ep/s -> {two / one:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
