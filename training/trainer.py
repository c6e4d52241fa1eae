"""The one training loop every stage uses: resumable, seeded, atomic.

A stage hands :func:`fit` a model, the number of examples and a ``loss(indices) -> (loss, tokens)``
function. Batches are a pure function of (seed, step): step s of epoch e takes the s-th slice of a
permutation drawn from ``seed`` and ``e``. So a run resumed from a saved step sees exactly the
batches an uninterrupted run would — together with the restored weights, optimizer and scheduler
state, the final weights are bit-identical (tested).

The state (trainable weights, optimizer, scheduler, step, log) goes to ``OUT/train-state.pt``
every ``checkpoint_every`` steps and at the end, written to a temp file and renamed, so a kill at
any moment leaves the previous complete state. The finished model is saved as a plain HF
directory in ``OUT`` and ``mpr-checkpoint.json`` is written last: its presence means "complete".
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mpr.config import require, to_dict
from mpr.errors import MprError
from mpr.lm.engine import DEVICES, DTYPES
from mpr.owned import check_dir, claim_dir

STATE_FILE = "train-state.pt"
PROMPT_FORMATS = ("chat", "transcript")


def _proves_checkpoint_dir(folder: Path) -> bool:
    """A training folder mpr wrote before output markers existed: its checkpoint metadata, training
    state, RFT targets or DPO rounds (names only mpr writes)."""
    from mpr.lm.checkpoints import META_FILE

    return any((folder / name).is_file() for name in (META_FILE, STATE_FILE, "rft-targets.jsonl")) or any(
        folder.glob("dpo-round-*"))


CHECKPOINT_LEGACY = (_proves_checkpoint_dir,)


def check_checkpoint_dir(out: Path) -> None:
    """Refuse a training ``--out`` mpr may not write to, reading only (inputs are checked next)."""
    check_dir(out, "checkpoint", legacy=CHECKPOINT_LEGACY)


def claim_checkpoint_dir(out: Path) -> Path:
    """Make ``out`` (a training stage's ``--out``) an mpr checkpoint folder, or refuse it (mpr.owned)."""
    return claim_dir(out, "checkpoint", legacy=CHECKPOINT_LEGACY)


@dataclass(frozen=True)
class TrainConfig:
    """One training stage's settings (presets in ``training/presets/*.yaml``).

    base: the model to start from ("tiny", "default", a model dir or a checkpoint dir).
    lora: train LoRA adapters (rank ``lora_r``) instead of all weights; merged when saved.
    epochs / max_steps: length (max_steps > 0 wins). lr decays linearly to 10% after warmup.
    max_length: tokens per example (oldest turns are dropped to fit, see mpr.lm.prompts).
    val_fraction: share of games held out (by a hash of the task id) for validation metrics.
    val_examples: at most this many held-out examples are decoded/ranked for metrics.
    gamma: discount of AgentPRM / InversePRM targets. dpo_beta: the DPO KL-anchor strength.
    candidates: actions sampled per state for RFT / DPO. rounds: online DPO rounds.
    threads: torch threads (0: $MPR_THREADS or the core count).
    device: "auto" (CUDA when torch sees a GPU, else the CPU), "cpu" or "cuda" (an error line where
        there is none). Checkpoints and training states are the same files either way; a run
        started on one device resumes on the other.
    dtype: "auto" (bf16 autocast where the hardware has native bf16 — on a CPU AMX or AVX512-BF16,
        on a GPU Ampere or later — else fp32), "bf16" or "fp32". Weights and optimizer state stay
        fp32 either way; autocast runs the matmuls in bf16 (1.6-2.3x training tokens/s on an AMD EPYC
        with AVX512-BF16, ../shared/models.md). No fp16 (it would need loss scaling).
    grad_accum: micro-batches of ``batch_size`` per optimizer step (the mean of their losses), so a
        large effective batch fits a small memory; ``epochs`` still counts micro-batches.
    grad_checkpointing: recompute activations in the backward pass (HF gradient checkpointing):
        less memory for long sequences or big models, ~30% more compute.
    only_won: SFT on the won demonstrations only (a lost expert episode is mostly wandering);
        episodes with expert labels (DAgger rollouts) are kept won or lost.
    dagger_branches: transcript SFT on labelled episodes: at most this many disagreement branches
        per episode (each re-reads the transcript up to its state; ``training.transcripts``).
    max_games: SFT on at most this many training games (0: all), a deterministic sample by a hash
        of the task id, held-out games unchanged: the points of a learning curve.
    lm_weight: transcript policy SFT: weight of an auxiliary next-token loss on every token that is
        not an action (the game's text and the task restated after it), added to the action loss
        (0: action tokens only). Copying the restated task and the receptacle names is the
        match-the-goal skill a from-scratch model otherwise learns from one `take` per episode.
    decision_weight: transcript policy SFT: weight of an extra loss on each action's first word
        token (its verb: ``take`` vs ``go`` vs ``close``), added to the action loss (0: none). The
        action mean dilutes that one deciding token among the segment's marker, object number and
        ``from <receptacle>``, which the verb and the observation already determine.
    prompt_format: "chat" (one row per (state, action): system prompt, history, admissible list) or
        "transcript" (policy SFT on whole episodes: one sequence per episode, loss on its action
        tokens, ``batch_size x max_length`` tokens per step in length buckets; see mpr.lm.prompts).
    """

    base: str = "tiny"
    lora: bool = False
    lora_r: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 0
    epochs: float = 1.0
    max_steps: int = 0
    batch_size: int = 8
    max_length: int = 512
    seed: int = 0
    checkpoint_every: int = 50
    val_fraction: float = 0.1
    val_examples: int = 200
    gamma: float = 0.9
    dpo_beta: float = 0.1
    candidates: int = 4
    rounds: int = 4
    threads: int = 0
    prompt_format: str = "chat"
    dtype: str = "auto"
    only_won: bool = False
    dagger_branches: int = 8
    max_games: int = 0
    lm_weight: float = 0.0
    decision_weight: float = 0.0
    device: str = "auto"
    grad_accum: int = 1
    grad_checkpointing: bool = False

    def __post_init__(self) -> None:
        require(self.lr > 0, f"lr must be > 0, got {self.lr}")
        require(self.epochs > 0 or self.max_steps > 0, "need epochs > 0 or max_steps > 0")
        require(self.max_steps >= 0, f"max_steps must be >= 0, got {self.max_steps}")
        require(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        require(self.max_length >= 32, f"max_length must be >= 32, got {self.max_length}")
        require(self.checkpoint_every >= 1, f"checkpoint_every must be >= 1, got {self.checkpoint_every}")
        require(0 <= self.val_fraction < 1, f"val_fraction must be in [0, 1), got {self.val_fraction}")
        require(0 < self.gamma <= 1, f"gamma must be in (0, 1], got {self.gamma}")
        require(self.dpo_beta > 0, f"dpo_beta must be > 0, got {self.dpo_beta}")
        require(self.candidates >= 2, f"candidates must be >= 2, got {self.candidates}")
        require(self.rounds >= 1, f"rounds must be >= 1, got {self.rounds}")
        require(self.lora_r >= 1, f"lora_r must be >= 1, got {self.lora_r}")
        require(self.max_games >= 0, f"max_games must be >= 0, got {self.max_games}")
        require(self.lm_weight >= 0, f"lm_weight must be >= 0, got {self.lm_weight}")
        require(self.decision_weight >= 0, f"decision_weight must be >= 0, got {self.decision_weight}")
        require(self.dagger_branches >= 0, f"dagger_branches must be >= 0, got {self.dagger_branches}")
        require(self.threads >= 0, f"threads must be >= 0, got {self.threads}")
        require(self.dtype in DTYPES, f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        require(self.device in DEVICES, f"device must be one of {DEVICES}, got {self.device!r}")
        require(self.grad_accum >= 1, f"grad_accum must be >= 1, got {self.grad_accum}")
        require(self.prompt_format in PROMPT_FORMATS,
                f"prompt_format must be one of {PROMPT_FORMATS}, got {self.prompt_format!r}")

    def total_steps(self, num_examples: int) -> int:
        """Optimizer steps: ``max_steps``, or ``epochs`` passes of micro-batches, ``grad_accum`` per step."""
        if self.max_steps:
            return self.max_steps
        return max(1, math.ceil(self.epochs * math.ceil(num_examples / self.batch_size) / self.grad_accum))


@dataclass
class FitResult:
    steps: int
    resumed_from: int
    tokens: int
    seconds: float  # training time summed over all steps (earlier, killed processes included)
    final_loss: float

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


def batch_indices(num_examples: int, batch_size: int, seed: int, step: int) -> list[int]:
    """The example indices of ``step``: a pure function of (seed, step) — see the module doc."""
    import torch

    per_epoch = math.ceil(num_examples / batch_size)
    epoch, k = divmod(step, per_epoch)
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    perm = torch.randperm(num_examples, generator=g).tolist()
    return perm[k * batch_size : (k + 1) * batch_size]


def fit(
    model: Any,
    num_examples: int,
    loss_fn: Callable[[list[int]], tuple[Any, int]],
    config: TrainConfig,
    out: Path,
    header: dict[str, Any],
    progress: bool = True,
    desc: str = "train",
    stop_after: int | None = None,
) -> FitResult:
    """Train ``model`` (its parameters with requires_grad) on ``num_examples`` examples.

    ``loss_fn(indices)`` returns (scalar loss, tokens in the batch). ``header`` identifies the
    run: a saved state written under a different header is refused, not mixed.
    ``stop_after``: return after that many steps of this call, as a kill would (tests).
    """
    import torch

    require(num_examples > 0, "no training examples (are the rollouts empty?)")
    claim_checkpoint_dir(out)
    total = config.total_steps(num_examples)
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, _schedule(config.warmup_steps, total))
    header = {**json.loads(json.dumps(header)), "train": settings(config), "examples": num_examples}
    step, log = _restore(out / STATE_FILE, model, optim, sched, header)
    resumed_from, tokens, seconds, last = step, 0, 0.0, float("nan")
    bar = _bar(total, step, desc, progress)
    autocast = autocast_context(config.dtype, _device_of(model))
    model.train()
    try:
        while step < total:
            if stop_after is not None and step - resumed_from >= stop_after:
                break
            t0 = time.perf_counter()
            last, n_tok = _optimizer_step(params, optim, sched, loss_fn, autocast, config, num_examples, step)
            step += 1
            dt = time.perf_counter() - t0
            seconds, tokens = seconds + dt, tokens + n_tok
            log.append({"step": step, "loss": last, "tokens": n_tok, "seconds": dt})
            bar.update(1)
            bar.set_postfix(loss=f"{last:.4f}", tok_s=f"{tokens / max(seconds, 1e-9):.0f}")
            if step % config.checkpoint_every == 0 or step == total:
                save_state(out / STATE_FILE, model, optim, sched, step, header, log)
    finally:
        bar.close()
        model.eval()
    # Throughput and loss over every step of the run, including steps of earlier (killed) processes.
    if log:
        tokens, seconds, last = sum(e["tokens"] for e in log), sum(e["seconds"] for e in log), log[-1]["loss"]
    return FitResult(step, resumed_from, tokens, seconds, last)


def _optimizer_step(params: list, optim: Any, sched: Any, loss_fn: Callable[[list[int]], tuple[Any, int]],
                    autocast: Callable[[], Any], config: TrainConfig, num_examples: int, step: int) -> tuple[float, int]:
    """Optimizer step ``step``: the gradients of its ``grad_accum`` micro-batches (each loss divided
    by ``grad_accum``, so the step follows the mean), clipped to norm 1. Returns (the micro-batches'
    mean loss, their tokens)."""
    import torch

    optim.zero_grad(set_to_none=True)
    losses, tokens = [], 0
    for k in range(config.grad_accum):
        micro = step * config.grad_accum + k
        with autocast():
            loss, n_tok = loss_fn(batch_indices(num_examples, config.batch_size, config.seed, micro))
        (loss / config.grad_accum).backward()
        losses.append(float(loss.detach()))
        tokens += n_tok
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optim.step()
    sched.step()
    return sum(losses) / len(losses), tokens


def _device_of(model: Any) -> str:
    """"cuda" or "cpu": where the model's weights are."""
    return next(model.parameters()).device.type


def autocast_dtype(dtype: str, device: str, cuda_bf16: bool | None = None) -> str:
    """What the forward pass autocasts to ("bf16" or "fp32") for the ``dtype`` setting on ``device``.
    "auto": bf16 where the hardware computes it natively (the CPU's AMX / AVX512-BF16; a GPU that
    torch says supports it, Ampere and later), else fp32. "bf16" on a GPU without it is an error.
    ``cuda_bf16``: what torch says, unless given (tests)."""
    from mpr.lm.engine import cpu_supports_bf16

    if device == "cpu":
        return "bf16" if dtype == "bf16" or (dtype == "auto" and cpu_supports_bf16()) else "fp32"
    if dtype == "fp32":
        return "fp32"
    if cuda_bf16 is None:
        import torch

        cuda_bf16 = torch.cuda.is_bf16_supported()
    if dtype == "bf16" and not cuda_bf16:
        raise MprError("dtype bf16: this GPU has no bf16 support; use --set dtype=fp32 (or auto)")
    return "bf16" if cuda_bf16 else "fp32"


def autocast_context(dtype: str, device: str = "cpu") -> Callable[[], Any]:
    """A factory of the forward pass's autocast context for the ``dtype`` setting on ``device``."""
    import contextlib

    import torch

    if autocast_dtype(dtype, device) != "bf16":
        return contextlib.nullcontext
    return lambda: torch.autocast(device, dtype=torch.bfloat16)


def _schedule(warmup: int, total: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        span = max(1, total - warmup)
        return 1.0 - 0.9 * min(1.0, (step - warmup) / span)

    return factor


def trainable_state(model: Any) -> dict[str, Any]:
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k in names}


def save_state(path: Path, model: Any, optim: Any, sched: Any, step: int, header: dict[str, Any],
               log: list[dict[str, Any]]) -> None:
    """Atomically write the resumable training state (a kill leaves the previous one intact)."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"header": header, "step": step, "model": trainable_state(model), "optim": optim.state_dict(),
                "sched": sched.state_dict(), "log": log}, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _restore(path: Path, model: Any, optim: Any, sched: Any, header: dict[str, Any]) -> tuple[int, list]:
    import torch

    if not path.exists():
        return 0, []
    try:
        state = torch.load(path, weights_only=False, map_location="cpu")  # a CUDA run resumes on a CPU too
    except Exception as exc:
        raise MprError(f"{path} is unreadable ({exc.__class__.__name__}); delete it to start this stage over") from None
    saved = with_new_defaults(state.get("header") or {})
    if saved != header:
        diff = _diff(saved, header)
        raise MprError(f"{path.parent} holds a training run with different settings ({diff}); "
                       "use another --out or the same settings")
    missing = model.load_state_dict(state["model"], strict=False)
    if missing.unexpected_keys:
        raise MprError(f"{path} does not match this model (unexpected weights {missing.unexpected_keys[:3]})")
    optim.load_state_dict(state["optim"])
    sched.load_state_dict(state["sched"])
    return int(state["step"]), list(state["log"])


def with_new_defaults(header: dict[str, Any]) -> dict[str, Any]:
    """A saved stage header with the ``TrainConfig`` fields added after it was written filled in at
    their defaults: a run from before a new setting existed had that setting's default, so it still
    matches (and resumes under) the same settings."""
    train = header.get("train")
    if not isinstance(train, dict):
        return header
    defaults = settings(TrainConfig())
    return {**header, "train": {**{k: v for k, v in defaults.items() if k not in train}, **train}}


def settings(config: TrainConfig) -> dict[str, Any]:
    """``config`` as saved in stage headers and training states (JSON values, as read back)."""
    return json.loads(json.dumps(to_dict(config), default=str))


def _diff(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> str:
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    parts = []
    for k in keys:
        if isinstance(a.get(k), dict) and isinstance(b.get(k), dict):
            parts.append(_diff(a[k], b[k], f"{prefix}{k}."))
        else:
            parts.append(f"{prefix}{k}")
    return ", ".join(parts)


def _bar(total: int, initial: int, desc: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="step", disable=not enabled, dynamic_ncols=True)


def read_log(out: Path) -> list[dict[str, Any]]:
    """The per-step log of a run (from its saved state)."""
    import torch

    path = out / STATE_FILE
    return list(torch.load(path, weights_only=False)["log"]) if path.exists() else []
