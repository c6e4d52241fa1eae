"""Training throughput (tokens/s of forward + backward + AdamW step), as ratios within one run.

    python bench/train_speed.py [--threads 2] [--length 384] [--batch 8] [--steps 4] [--json OUT]

Arms: the tiny preset's base (from-scratch Llama, ~4M params, full fine-tuning), SmolLM2-135M with
LoRA r=16 (the cpu-small preset) and SmolLM2-135M full fine-tuning. Batches are real policy-SFT
examples (walkthrough prompts of valid_train games, the tiny tokenizer and SmolLM2's own), cut to
``--length`` tokens. Each figure is the median step of ``--steps`` timed steps after one warm-up.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mpr.training.trainer import TrainConfig  # noqa: E402


def batch_for(tok, length: int, batch: int):
    """``batch`` rows of ``length`` tokens from walkthrough policy prompts (real ALFWorld text)."""
    import torch

    from mpr.alfworld.data import list_tasks, load_walkthrough
    from mpr.core import State, Turn
    from mpr.lm.prompts import ChatFormat, policy_prompt, policy_target

    chat = ChatFormat.from_tokenizer(tok)
    rows = []
    for task in list_tasks("valid_train", limit=batch):
        plan = load_walkthrough(task)
        state = State(task.id, "put a mug in the cabinet.", "You are in the middle of a room.",
                      tuple(Turn(a, f"You did {a}.") for a in plan[:-1]), admissible=tuple(plan))
        ids = tok(policy_prompt(state, chat, "sample") + policy_target(plan[-1]), add_special_tokens=False)["input_ids"]
        rows.append((ids * (length // max(1, len(ids)) + 1))[:length])
    return torch.tensor(rows)


def measure(base: str, lora: bool, threads: int, length: int, batch: int, steps: int) -> dict:
    import torch
    from mpr.training.common import load_model

    cfg = TrainConfig(base=base, lora=lora, threads=threads)
    model, tok = load_model(base, "causal", cfg)
    ids = batch_for(tok, length, batch)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    model.train()
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - t0)
    step = statistics.median(times)
    return {"base": base, "lora": lora, "trainable_params": sum(p.numel() for p in params),
            "seconds_per_step": step, "tokens_per_second": ids.numel() / step}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--length", type=int, default=384)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    arms = [("tiny", False), ("default", True), ("default", False)]
    results = [measure(b, lo, args.threads, args.length, args.batch, args.steps) for b, lo in arms]
    tiny = results[0]["tokens_per_second"]
    for r in results:
        name = f"{r['base']}{' + LoRA' if r['lora'] else ' (full)'}"
        print(f"{name:<22} {r['trainable_params'] / 1e6:8.2f}M trainable  {r['tokens_per_second']:8.0f} tok/s  "
              f"({r['tokens_per_second'] / tiny:.3f}x tiny)")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=2))


if __name__ == "__main__":
    main()
