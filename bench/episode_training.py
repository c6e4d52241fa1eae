"""Whole-episode vs per-transition policy SFT on the same demonstrations, in one run.

    python bench/episode_training.py [--games 24] [--demos DIR] [--threads 2] [--steps 6] [--length 384] [--json OUT]

The same handcoded-expert episodes (``--demos``, else rolled out here on ``--games`` train games)
become (a) today's rows, one per (state, action) with the chat prompt re-reading the whole history
(``prompt_format: chat``), and (b) one sequence per episode with the loss on its action tokens
(``prompt_format: transcript``). Reported for each: tokens per epoch, padding share, and, from
``--steps`` timed optimizer steps of the tiny preset's model at the preset's batch (8 rows of at most
``--length`` tokens, or buckets of 8 x ``--length`` tokens), tokens/s, rows/s and decisions/s — actions trained per second,
the figure that says how fast a policy learns from the same data.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mpr.training.trainer import TrainConfig  # noqa: E402


def demos(args: argparse.Namespace, tmp: Path) -> list:
    from mpr.alfworld.env import EnvConfig
    from mpr.training.rollout import RolloutConfig, load_rollouts, rollout

    if args.demos:
        return load_rollouts(args.demos)
    rollout(RolloutConfig(policy="expert", split="train", limit=args.games, workers=2, env=EnvConfig()),
            tmp / "demos", progress=False, echo=lambda _m: None)
    return load_rollouts(tmp / "demos")


def chat_rows(episodes: list, tok, config: TrainConfig) -> list[tuple[list[int], list[int]]]:
    from mpr.training.policy import _prompt_fn, demo_steps

    make = _prompt_fn(tok, config)
    return [make(s, a) for s, a in demo_steps(episodes)]


def timed(step, steps: int) -> float:
    """Median seconds of ``steps`` calls after one warm-up."""
    step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def report(episodes: int, threads: int, chat: dict, transcript: dict) -> float:
    """Print the table; returns transcripts' decisions/s over chat rows'."""
    print(f"{episodes} expert episodes, tiny model, {threads} threads")
    print(f"{'':<12} {'rows':>6} {'decisions':>9} {'tokens/epoch':>12} {'padding':>8} {'tok/s':>8} {'decisions/s':>11}")
    for name, r in (("chat rows", chat), ("transcripts", transcript)):
        print(f"{name:<12} {r['rows']:>6} {r['decisions']:>9} {r['tokens_per_epoch']:>12,} "
              f"{100 * r['padding_share']:>7.1f}% {r['tokens_per_second']:>8.0f} {r['decisions_per_second']:>11.1f}")
    ratio = transcript["decisions_per_second"] / chat["decisions_per_second"]
    print(f"transcripts / chat rows: {chat['tokens_per_epoch'] / transcript['tokens_per_epoch']:.1f}x fewer tokens "
          f"per epoch, {ratio:.1f}x the decisions trained per second")
    return ratio


def main() -> None:
    import torch

    from mpr.training.common import encode, load_model
    from mpr.training.policy import transcript_loss
    from mpr.training.sft import sft_loss
    from mpr.training.transcripts import bucket, encode_episodes, padding_share

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--games", type=int, default=24)
    ap.add_argument("--demos")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--length", type=int, default=384, help="max_length: tokens per row / window (the tiny preset's)")
    ap.add_argument("--json")
    args = ap.parse_args()
    config = TrainConfig(base="tiny", threads=args.threads, batch_size=8, max_length=args.length)
    with tempfile.TemporaryDirectory() as d:
        episodes = demos(args, Path(d))
    model, tok = load_model("tiny", "causal", config)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    model.train()

    def step(loss_fn):
        def run():
            loss, _ = loss_fn()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return run

    rows = chat_rows(episodes, tok, config)
    row_lengths = [len(p) + len(t) for p, t in rows]
    row_batches = bucket(row_lengths, config.batch_size * max(row_lengths))  # fixed rows per step, sorted
    first_rows = [rows[i] for i in sorted(range(len(rows)), key=lambda i: -row_lengths[i])[: config.batch_size]]
    chat_s = timed(step(lambda: sft_loss(model, first_rows, tok.pad_token_id)), args.steps)
    windows = encode_episodes(episodes, partial(encode, tok), config.max_length)
    lengths = [len(w) for w in windows]
    buckets = bucket(lengths, config.batch_size * config.max_length)
    big = [windows[i] for i in buckets[0]]
    tr_s = timed(step(lambda: transcript_loss(model, big, tok.pad_token_id)), args.steps)
    actions = sum(len(w.turns) for w in windows)
    chat = {"rows": len(rows), "decisions": len(rows), "tokens_per_epoch": sum(row_lengths),
            "padding_share": padding_share(row_lengths, [list(range(i, min(i + 8, len(rows))))
                                                         for i in range(0, len(rows), 8)]),
            "steps_per_epoch": len(row_batches), "seconds_per_step": chat_s,
            "tokens_per_second": sum(len(p) + len(t) for p, t in first_rows) / chat_s,
            "decisions_per_second": len(first_rows) / chat_s}
    transcript = {"rows": len(windows), "decisions": actions, "tokens_per_epoch": sum(lengths),
                  "padding_share": padding_share(lengths, buckets), "steps_per_epoch": len(buckets),
                  "seconds_per_step": tr_s, "tokens_per_second": sum(len(w) for w in big) / tr_s,
                  "decisions_per_second": sum(len(w.turns) for w in big) / tr_s}
    ratio = report(len(episodes), args.threads, chat, transcript)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"args": vars(args), "episodes": len(episodes), "chat": chat,
                                               "transcript": transcript, "decisions_per_second_ratio": ratio},
                                              indent=2))


if __name__ == "__main__":
    main()
