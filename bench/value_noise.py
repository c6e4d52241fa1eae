"""How far batch layouts move model outputs on this CPU: the tolerance behind record comparisons.

    python bench/value_noise.py [--json OUT]

A tiny from-scratch model (built from the valid_train games, as in the tests) scores the same
ALFWorld-style prompts and candidates (a) all in one batched call, (b) one prompt per call, and
(c) in reversed order, in fp32 and bf16 (where the CPU has bf16). Reported per dtype: the largest
absolute and relative difference of the summed candidate log-probs between layouts, and the CPU's
flags. ``mpr.run.episodes.VALUE_REL_TOL`` / ``VALUE_ABS_TOL`` must stay above what this prints on
every machine kind (the figures measured so far are in that module's comment).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mpr.alfworld.data import iter_game_files, list_tasks  # noqa: E402
from mpr.alfworld.env import SerialEnv  # noqa: E402
from mpr.lm.engine import EngineConfig, cpu_supports_bf16  # noqa: E402
from mpr.lm.hf_engine import HFEngine  # noqa: E402
from mpr.lm.weights import alfworld_corpus, build_tiny  # noqa: E402


def prompts_and_candidates(games: int) -> tuple[list[str], list[list[str]]]:
    """The first observation and admissible commands of ``games`` valid_seen games."""
    env = SerialEnv(1)
    prompts, cands = [], []
    try:
        for task in list_tasks("valid_seen", limit=games):
            (ts,) = env.reset([task.id])
            prompts.append(f"Your task is to: {ts.goal}\n{ts.observation}\n>")
            cands.append([" " + a for a in ts.admissible[:12]])
    finally:
        env.close()
    return prompts, cands


def flat(rows) -> list[float]:
    return [s.logprob for r in rows for s in r]


def noise(engine: HFEngine, prompts: list[str], cands: list[list[str]]) -> dict[str, float]:
    batched = flat(engine.score(prompts, cands))
    single = flat([engine.score([p], [c])[0] for p, c in zip(prompts, cands)])
    rev = flat(engine.score(prompts[::-1], cands[::-1])[::-1])
    diffs = [abs(a - b) for other in (single, rev) for a, b in zip(batched, other)]
    rel = [d / max(abs(a), 1e-9) for d, a in zip(diffs, batched + batched)]
    return {"max_abs": max(diffs), "max_rel": max(rel), "mean_abs_value": sum(map(abs, batched)) / len(batched),
            "pairs": len(batched)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--games", type=int, default=12)
    p.add_argument("--json")
    args = p.parse_args()
    prompts, cands = prompts_and_candidates(args.games)
    with tempfile.TemporaryDirectory() as d:
        from mpr.alfworld.data import games_root

        texts = alfworld_corpus(iter_game_files(games_root(), "valid_train")[:30])
        model = build_tiny(Path(d) / "tiny", texts=texts, vocab_size=1024, hidden=64, layers=2, heads=4)
        out = {"cpu_bf16": cpu_supports_bf16(), "cpu": _cpu_name()}
        for dtype in ("fp32", "bf16") if cpu_supports_bf16() else ("fp32",):
            engine = HFEngine(EngineConfig(model=str(model), dtype=dtype, threads=1, batch_size=8, max_length=512))
            out[dtype] = noise(engine, prompts, cands)
            print(f"{dtype}: max |batched - other layout| = {out[dtype]['max_abs']:.2e} "
                  f"(relative {out[dtype]['max_rel']:.2e}) over {out[dtype]['pairs']} pairs, "
                  f"mean |value| {out[dtype]['mean_abs_value']:.2f}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2))


def _cpu_name() -> str:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


if __name__ == "__main__":
    main()
