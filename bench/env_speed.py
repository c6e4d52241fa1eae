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
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mpr.data import list_tasks, load_walkthrough  # noqa: E402
from mpr.env import AlfworldGame, EnvConfig  # noqa: E402


def game_timings(tasks, cached: bool) -> dict[str, float]:
    """Fresh-load reset time, same-game reset time and walkthrough steps/s over ``tasks``."""
    game = AlfworldGame(EnvConfig(parse_cache=cached, pddl_cache=cached, expert=False, max_actions=100))
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


def pool_rate(tasks, workers: int) -> float:
    """Episodes/s of a walkthrough run on a pool (worker start-up included)."""
    from mpr.agents import WalkthroughPolicy
    from mpr.episodes import run_episodes
    from mpr.pool import EnvPool, PoolConfig
    from planners.greedy import GreedyPlanner

    t0 = time.perf_counter()
    with EnvPool(PoolConfig(num_workers=workers), EnvConfig(expert=False)) as pool:
        results = run_episodes(pool, GreedyPlanner(WalkthroughPolicy()), tasks)
    assert all(r.won for r in results), "walkthrough must win every game"
    return len(results) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--games", type=int, default=6)
    ap.add_argument("--pool-games", type=int, default=12)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    tasks = list_tasks("valid_unseen", limit=args.games)
    uncached = game_timings(tasks, cached=False)
    cached = game_timings(tasks, cached=True)
    pool_tasks = list_tasks("valid_unseen", limit=args.pool_games)
    one, two = pool_rate(pool_tasks, 1), pool_rate(pool_tasks, 2)
    report = {
        "games": len(tasks),
        "uncached": uncached,
        "cached": cached,
        "steps_per_s_speedup": cached["steps_per_s"] / uncached["steps_per_s"],
        "load_reset_speedup": uncached["load_reset_s"] / cached["load_reset_s"],
        "same_game_reset_speedup": uncached["same_game_reset_s"] / cached["same_game_reset_s"],
        "pool_games": len(pool_tasks),
        "pool_1_worker_episodes_per_s": one,
        "pool_2_workers_episodes_per_s": two,
        "pool_speedup_2_vs_1": two / one,
    }
    print(f"games: {len(tasks)} valid_unseen (walkthrough, {uncached['steps']} steps)")
    print(f"{'':28}{'uncached':>10}{'cached':>10}{'ratio':>8}")
    for key, label, invert in [("load_reset_s", "load+reset (s/game)", True),
                               ("same_game_reset_s", "reset, same game (s)", True),
                               ("steps_per_s", "env steps/s", False)]:
        ratio = uncached[key] / cached[key] if invert else cached[key] / uncached[key]
        print(f"{label:<28}{uncached[key]:>10.2f}{cached[key]:>10.2f}{ratio:>7.1f}x")
    print(f"pool, {len(pool_tasks)} walkthrough episodes: 1 worker {one:.2f} ep/s, 2 workers {two:.2f} ep/s "
          f"-> {two / one:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
