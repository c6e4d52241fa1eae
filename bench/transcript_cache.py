"""Greedy decisions over transcripts with the KV cache carried across turns vs every prompt encoded in full.

    python bench/transcript_cache.py [--model tiny|default|DIR] [--games 8] [--threads 2] [--json OUT]

The handcoded expert plays ``--games`` valid_seen games; then both engines (the same model, fp32)
replay those episodes as a policy would see them — at every turn of every episode, one batched
``score_segments`` call ranks the state's admissible actions as continuations of its transcript
(turns of all episodes in lockstep, like the episode loop). Reported: tokens the model computed
per decision, decisions/s, and the largest score difference between the two (they must agree).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def expert_states(games: int) -> list[list]:
    """The states of expert episodes on ``games`` valid_seen games, one list per episode."""
    from mpr.alfworld.env import EnvConfig
    from mpr.training.rollout import RolloutConfig, load_rollouts, rollout

    with tempfile.TemporaryDirectory() as d:
        rollout(RolloutConfig(policy="expert", split="valid_seen", limit=games, workers=2, env=EnvConfig()),
                Path(d) / "r", progress=False, echo=lambda _m: None)
        return [ep.states()[:-1] for ep in load_rollouts(Path(d) / "r", allow_valid_unseen=False)]


def replay(engine, episodes: list[list]) -> tuple[dict, list[float]]:
    from mpr.learned.policy import LLMPolicy, PolicyConfig
    from mpr.lm.prompts import action_segment

    policy = LLMPolicy(engine, PolicyConfig(mode="score", prompt_format="transcript"))
    scores: list[float] = []
    decisions, t0 = 0, time.perf_counter()
    for t in range(max(map(len, episodes))):
        states = [ep[t] for ep in episodes if t < len(ep)]
        segs = [policy.transcript(s) for s in states]
        rows = engine.score_segments(segs, [[action_segment(a) for a in s.admissible] for s in states])
        scores += [x.logprob for r in rows for x in r]
        decisions += len(states)
    seconds = time.perf_counter() - t0
    return {"decisions": decisions, "seconds": seconds, "decisions_per_second": decisions / seconds,
            "tokens_per_decision": engine.stats.prompt_tokens / decisions}, scores


def main() -> None:
    from mpr.lm.engine import EngineConfig
    from mpr.lm.hf_engine import HFEngine

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--games", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json")
    args = ap.parse_args()
    episodes = expert_states(args.games)
    base = dict(model=args.model, dtype="fp32", threads=args.threads, batch_size=16, max_length=1024)
    full, full_scores = replay(HFEngine(EngineConfig(**base, transcript_cache_tokens=0)), episodes)
    cached, cached_scores = replay(HFEngine(EngineConfig(**base)), episodes)
    diff = max(abs(a - b) for a, b in zip(full_scores, cached_scores))
    print(f"{len(episodes)} expert episodes, {full['decisions']} decisions, model {args.model}, {args.threads} threads")
    for name, r in (("encoded in full", full), ("cache carried", cached)):
        print(f"{name:<16} {r['tokens_per_decision']:>8.0f} tokens/decision {r['decisions_per_second']:>8.2f} decisions/s")
    print(f"cache carried / in full: {full['tokens_per_decision'] / cached['tokens_per_decision']:.1f}x fewer tokens, "
          f"{cached['decisions_per_second'] / full['decisions_per_second']:.2f}x decisions/s; "
          f"largest score difference {diff:.1e}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"args": vars(args), "full": full, "cached": cached,
                                               "max_abs_score_difference": diff}, indent=2))


if __name__ == "__main__":
    main()
