"""Whole-episode training throughput by model size and dtype, in one run (the sweep's cost axis).

    python bench/model_sizes.py --demos DIR [--sizes tiny,small,medium] [--threads 2] [--steps 4]
                                [--length 1024] [--batch 4] [--json OUT]

For each from-scratch size (``mpr.lm.weights.SCRATCH_SIZES``, the ALFWorld tokenizer) and each dtype
this CPU can run (fp32; bf16 autocast where it has AMX or AVX512-BF16), the median seconds of
``--steps`` optimizer steps (forward + backward + AdamW, after one warm-up) on the same bucket of
real expert transcripts (``--batch x --length`` tokens, as ``prompt_format: transcript`` trains).
Reported: parameters, fp16 size, tokens/s, decisions (actions) trained per second, and the minutes
one epoch over the demonstrations takes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mpr.training.trainer import TrainConfig, autocast_context  # noqa: E402


def timed(run, steps: int) -> float:
    run()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(size: str, dtype: str, episodes: list, args: argparse.Namespace) -> dict:
    import torch

    from mpr.training.common import encode, load_model
    from mpr.training.policy import transcript_loss
    from mpr.training.transcripts import bucket, encode_episodes

    config = TrainConfig(base=size, threads=args.threads, batch_size=args.batch, max_length=args.length, dtype=dtype)
    model, tok = load_model(size, "causal", config)
    windows = encode_episodes(episodes, partial(encode, tok), config.max_length)
    lengths = [len(w) for w in windows]
    buckets = bucket(lengths, config.batch_size * config.max_length)
    # a bucket of typical length (the median one), not the longest
    chosen = sorted(buckets, key=lambda b: lengths[b[0]])[len(buckets) // 2]
    batch = [windows[i] for i in chosen]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    autocast = autocast_context(dtype)
    model.train()

    def run():
        with autocast():
            loss, _ = transcript_loss(model, batch, tok.pad_token_id)
        opt.zero_grad()
        loss.backward()
        opt.step()

    seconds = timed(run, args.steps)
    params = sum(p.numel() for p in model.parameters())
    tokens = sum(len(w) for w in batch)
    tok_s = tokens / seconds
    return {"size": size, "dtype": dtype, "params": params, "fp16_mb": params * 2 / 1e6,
            "tokens_per_second": tok_s, "decisions_per_second": sum(len(w.turns) for w in batch) / seconds,
            "epoch_tokens": sum(lengths), "epoch_minutes": sum(lengths) / tok_s / 60}


def main() -> None:
    from mpr.lm.engine import cpu_supports_bf16
    from mpr.training.rollout import load_rollouts

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--demos", required=True)
    ap.add_argument("--sizes", default="tiny,small,medium")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--length", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--json")
    args = ap.parse_args()
    episodes = [ep for ep in load_rollouts(args.demos) if ep.won]
    dtypes = ["fp32"] + (["bf16"] if cpu_supports_bf16() else [])
    rows = [measure(size, dtype, episodes, args) for size in args.sizes.split(",") for dtype in dtypes]
    print(f"{len(episodes)} won expert episodes, {args.threads} threads, buckets of {args.batch} x {args.length} tokens")
    print(f"{'size':<8} {'dtype':<5} {'params':>7} {'fp16 MB':>8} {'tok/s':>7} {'decisions/s':>11} {'min/epoch':>9}")
    for r in rows:
        print(f"{r['size']:<8} {r['dtype']:<5} {r['params'] / 1e6:>6.1f}M {r['fp16_mb']:>8.1f} "
              f"{r['tokens_per_second']:>7.0f} {r['decisions_per_second']:>11.1f} {r['epoch_minutes']:>9.1f}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"args": vars(args), "episodes": len(episodes),
                                               "bf16_native": cpu_supports_bf16(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
