"""The GPU check (docs/gpu.md): training and scoring on CUDA against this project's CPU figures.

    python bench/gpu_check.py --demos DIR [--device cuda] [--steps 300] [--compare-steps 5]
                              [--batch 4] [--length 1024] [--json docs/results/gpu/check.json]

On one machine, in one run:

1. **Loss agreement**: the shipped default policy's architecture (``mpr/lm/shipped/policy/config.json``
   and its tokenizer), initialised from seed 0, trained ``--compare-steps`` AdamW steps on the same
   buckets of whole-episode transcripts (``--demos``: won expert episodes, as ``--preset cpu`` trains)
   on the CPU and on ``--device``, both fp32 (TF32 off): the per-step losses must agree within
   ``LOSS_RTOL`` (relative). bf16 autocast on the device is reported beside them, not held to it.
2. **Training throughput**: ``--steps`` steps on ``--device`` with the training loop's autocast rule
   (bf16 where the device has it), ``--batch x --length`` tokens per step, against the CPU's
   tokens/s recorded in the shipped policy's metadata (measured on the 2-core machine that trained it).
3. **Scoring**: one beam step's candidates — the shipped policy ranking every admissible action of
   ``--states`` held-out decision states in one batched call (``LLMPolicy.rank``, transcript format,
   HF engine) — timed on the CPU and on ``--device``, cold (first call) and warm (median of 5).

Needs torch, transformers, tokenizers and safetensors; not alfworld or vllm. Without an installed
mpr it runs from the source tree (the folders ``training/``, ``planners/`` and ``worldmodel/`` are
mapped to their ``mpr.*`` names, as pyproject.toml installs them). ``--device cpu`` runs the same
steps on the CPU alone (a smoke run: the comparison is then CPU against CPU).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import statistics
import sys
import time
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "mpr" / "lm" / "shipped" / "policy"
LOSS_RTOL = 1e-3
"""fp32 on CPU vs fp32 on CUDA, per step over the first steps: kernels sum in other orders, and AdamW
carries the difference forward; 1e-3 relative is far below a training signal (a step moves the loss
by ~1e-2 early on) and far above fp32 rounding (~1e-6 at step 1)."""


def import_mpr() -> None:
    """Make ``mpr.training`` & co. importable from the source tree when mpr is not installed."""
    sys.path.insert(0, str(REPO))
    import mpr

    for name in ("training", "planners", "worldmodel"):
        full = f"mpr.{name}"
        if full in sys.modules or importlib.util.find_spec(full) is not None:
            continue
        spec = importlib.util.spec_from_file_location(full, REPO / name / "__init__.py",
                                                      submodule_search_locations=[str(REPO / name)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[full] = module
        setattr(mpr, name, module)
        spec.loader.exec_module(module)


def fresh_model(device: str):
    """The shipped policy's architecture, weights drawn from seed 0 (on the CPU, then moved)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(SHIPPED), dtype=torch.float32)
    return model.to(device)


def training_buckets(episodes, tok, batch: int, length: int, count: int) -> list:
    """``count`` buckets of whole-episode windows (``batch x length`` tokens each), the first ones of
    seed 0's order, as ``train policy --sft`` with ``prompt_format: transcript`` draws them."""
    from mpr.training.common import encode
    from mpr.training.trainer import batch_indices
    from mpr.training.transcripts import bucket, encode_episodes

    windows = encode_episodes(episodes, partial(encode, tok), length)
    buckets = bucket([len(w) for w in windows], batch * length)
    order = [batch_indices(len(buckets), 1, 0, s)[0] for s in range(count)]
    return [[windows[i] for i in buckets[k]] for k in order]


def train_steps(device: str, dtype: str, batches: list, pad: int, lm_weight: float = 1.0) -> dict:
    """AdamW steps (lr 2e-3, clip 1.0: the cpu preset's) on ``batches``; per-step losses and tokens/s
    (the first step, which compiles kernels and allocates, left out of the rate)."""
    import torch

    from mpr.training.policy import transcript_loss
    from mpr.training.trainer import autocast_context, autocast_dtype

    model = fresh_model(device)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    autocast = autocast_context(dtype, device)
    model.train()
    losses, seconds, tokens = [], 0.0, 0
    for k, windows in enumerate(batches):
        t0 = time.perf_counter()
        with autocast():
            loss, n_tok = transcript_loss(model, windows, pad, lm_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.detach()))  # a sync point on CUDA, so the timing is real
        if k:
            seconds, tokens = seconds + time.perf_counter() - t0, tokens + n_tok
    return {"device": device, "autocast": autocast_dtype(dtype, device), "steps": len(batches), "losses": losses,
            "tokens_per_second": tokens / seconds if seconds else None}


def time_scoring(device: str, states: list) -> dict:
    """One batched ranking of every admissible action of ``states`` by the shipped policy."""
    from mpr.compose import prompt_format_of
    from mpr.learned.policy import LLMPolicy, PolicyConfig
    from mpr.lm.engine import EngineConfig
    from mpr.lm.hf_engine import HFEngine

    engine = HFEngine(EngineConfig(model=str(SHIPPED), device=device, dtype="auto", threads=0,
                                   transcript_cache_tokens=0))
    policy = LLMPolicy(engine, PolicyConfig(mode="score", prompt_format=prompt_format_of(str(SHIPPED))))
    t0 = time.perf_counter()
    policy.rank(states)
    cold = time.perf_counter() - t0
    warm = []
    for _ in range(5):
        t0 = time.perf_counter()
        policy.rank(states)
        warm.append(time.perf_counter() - t0)
    candidates = sum(len(s.admissible) for s in states)
    return {"device": device, "dtype": str(engine.dtype), "states": len(states), "candidates": candidates,
            "cold_seconds": cold, "warm_seconds": statistics.median(warm),
            "candidates_per_second": candidates / statistics.median(warm)}


def held_out_states(episodes, n: int) -> list:
    """``n`` decision states (with admissible lists) spread over the held-out games' episodes."""
    from mpr.training.common import split_by_game, spread
    from mpr.training.rollout import transitions

    _, val = split_by_game(list(episodes), lambda e: e.task_id, 0.1)
    states = [st.state for ep in val for st in transitions(ep) if st.state.admissible]
    return spread(states, n)


def device_name(device: str) -> str:
    import torch

    if device == "cuda":
        return torch.cuda.get_device_name(0)
    return platform.processor() or platform.machine()


def run(args: argparse.Namespace) -> dict:
    import torch

    from mpr.lm.engine import resolve_device
    from mpr.training.common import split_by_game
    from mpr.training.rollout import load_rollouts
    from transformers import AutoTokenizer

    device = resolve_device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 in the comparison
    torch.backends.cudnn.allow_tf32 = False
    torch.set_num_threads(args.threads)
    episodes = [ep for ep in load_rollouts(args.demos) if ep.won]
    train, _ = split_by_game(episodes, lambda e: e.task_id, 0.1)
    tok = AutoTokenizer.from_pretrained(SHIPPED)
    batches = training_buckets(train, tok, args.batch, args.length, max(args.steps, args.compare_steps))
    first = batches[: args.compare_steps]
    cpu = train_steps("cpu", "fp32", first, tok.pad_token_id)
    dev = train_steps(device, "fp32", first, tok.pad_token_id)
    dev_bf16 = train_steps(device, "auto", first, tok.pad_token_id)
    rel = [abs(a - b) / abs(a) for a, b in zip(cpu["losses"], dev["losses"])]
    speed = train_steps(device, "auto", batches[: args.steps], tok.pad_token_id)
    shipped = json.loads((SHIPPED / "mpr-checkpoint.json").read_text())
    cpu_tok_s = shipped["metrics"]["train_tokens_per_second"]
    states = held_out_states(episodes, args.states)
    scoring = [time_scoring("cpu", states)] + ([time_scoring(device, states)] if device != "cpu" else [])
    return {
        "device": device, "device_name": device_name(device), "torch": torch.__version__,
        "demos": {"won_episodes": len(episodes), "train_episodes": len(train)},
        "bucket": {"batch": args.batch, "length": args.length},
        "loss_agreement": {"steps": args.compare_steps, "cpu_fp32": cpu["losses"], "device_fp32": dev["losses"],
                           "device_autocast": dev_bf16["losses"], "autocast": dev_bf16["autocast"],
                           "max_relative_difference": max(rel), "tolerance": LOSS_RTOL, "agree": max(rel) <= LOSS_RTOL},
        "training": {"steps": speed["steps"], "autocast": speed["autocast"],
                     "tokens_per_second": speed["tokens_per_second"], "final_loss": speed["losses"][-1],
                     "cpu_tokens_per_second": cpu_tok_s,
                     "cpu_figure_from": "mpr/lm/shipped/policy/mpr-checkpoint.json (2 cores, bf16 autocast)",
                     "speedup_vs_cpu": speed["tokens_per_second"] / cpu_tok_s if speed["tokens_per_second"] else None},
        "scoring": scoring,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--demos", required=True, help="A rollout dir of expert demonstrations (`mpr rollout --policy expert`).")
    ap.add_argument("--device", default="cuda", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--compare-steps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--length", type=int, default=1024)
    ap.add_argument("--states", type=int, default=8, help="Decision states in the timed beam step.")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    import_mpr()
    result = run(args)
    la, tr = result["loss_agreement"], result["training"]
    print(f"{result['device_name']} ({result['device']}), torch {result['torch']}")
    print(f"loss agreement over {la['steps']} steps, cpu fp32 vs {result['device']} fp32: max relative difference "
          f"{la['max_relative_difference']:.2e} (tolerance {la['tolerance']:.0e}): {'ok' if la['agree'] else 'DIFFERS'}")
    print(f"training: {tr['tokens_per_second']:.0f} tokens/s ({tr['autocast']}) over {tr['steps']} steps, "
          f"vs {tr['cpu_tokens_per_second']:.0f} on the 2-core CPU: {tr['speedup_vs_cpu']:.1f}x")
    for s in result["scoring"]:
        print(f"scoring on {s['device']} ({s['dtype']}): {s['candidates']} candidates of {s['states']} states, "
              f"cold {s['cold_seconds'] * 1e3:.0f} ms, warm {s['warm_seconds'] * 1e3:.1f} ms "
              f"({s['candidates_per_second']:.0f} candidates/s)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"args": vars(args), **result}, indent=2) + "\n")
    sys.exit(0 if la["agree"] else 1)


if __name__ == "__main__":
    main()
