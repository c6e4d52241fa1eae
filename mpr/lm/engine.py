"""The one LLM engine interface every learned part of mpr uses, and its config.

Three batched verbs; lists in, aligned lists out:

* ``generate(prompts, n, sampling)`` -> ``list[list[Generation]]``: ``n`` samples per prompt.
* ``score(prompts, candidates)`` -> ``list[list[ContinuationScore]]``: log-probability of each
  candidate continuation given its prompt; ``candidates[i]`` all share ``prompts[i]``, which is
  encoded once. Prompt and candidate are tokenized separately and their ids concatenated, so BPE
  never merges across the boundary.
* ``value(texts)`` -> ``list[float]``: the scalar head of a value model (num_labels=1), fp32.

Implementations: ``mpr.lm.hf_engine.HFEngine`` (default) and ``mpr.lm.vllm_engine.VLLMEngine``
(the only module that imports vllm). ``mpr.lm.backends.make_engine`` picks one: this module
imports neither backend, so the backends depend on it and not the other way round.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from mpr.config import require

DTYPES = ("auto", "bf16", "fp32")
BACKENDS = ("auto", "hf", "vllm")
DEVICES = ("auto", "cpu", "cuda")


def default_threads() -> int:
    """``$MPR_THREADS`` if set, else the number of usable cores (capped at 8)."""
    env = os.environ.get("MPR_THREADS")
    if env:
        return max(1, int(env))
    return max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


@dataclass(frozen=True)
class EngineConfig:
    """How a model is run.

    model: "default" (SmolLM2-135M-Instruct, see ``mpr models prepare``), "tiny" (the
        from-scratch test model), a local HF directory, or a hub id.
    backend: "hf", "vllm", or "auto" (vllm when importable, else hf).
    dtype: "bf16", "fp32", or "auto" (bf16 on AMX/bf16-capable CPUs and on GPUs, else fp32).
        Value heads always run in fp32.
    threads: torch intra-op threads (pin it: on a shared machine torch's default can be 50x slower).
    batch_size: rows per forward pass. max_length: prompt tokens kept (see ``mpr.lm.prompts``).
    device: "cpu", "cuda", or "auto".
    vllm_memory_fraction: on a GPU, the share of its memory a vLLM engine may reserve (summed over
        the engines of a process).
    vllm_kv_tokens: on a CPU, the tokens a vLLM engine's KV cache holds; its size in bytes follows
        from the model's shape (layers x KV heads x head dim x dtype), not from the machine's RAM.
    transcript_cache_tokens: tokens of transcript KV caches the HF engine keeps across turns and
        siblings (``mpr.lm.transcript_cache``; 0: off, every prompt is encoded in full).
    """

    model: str = "default"
    backend: str = "hf"
    dtype: str = "auto"
    threads: int = 0
    batch_size: int = 16
    max_length: int = 1024
    device: str = "auto"
    vllm_memory_fraction: float = 0.25
    vllm_kv_tokens: int = 32768
    transcript_cache_tokens: int = 65536

    def __post_init__(self) -> None:
        require(0 < self.vllm_memory_fraction < 1, "vllm_memory_fraction must be in (0, 1)")
        require(self.vllm_kv_tokens >= 256, f"vllm_kv_tokens must be >= 256, got {self.vllm_kv_tokens}")
        require(self.transcript_cache_tokens >= 0,
                f"transcript_cache_tokens must be >= 0 (0: off), got {self.transcript_cache_tokens}")
        require(self.backend in BACKENDS, f"backend must be one of {BACKENDS}, got {self.backend!r}")
        require(self.dtype in DTYPES, f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        require(self.threads >= 0, f"threads must be >= 0 (0: default), got {self.threads}")
        require(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        require(self.max_length >= 16, f"max_length must be >= 16, got {self.max_length}")
        require(self.device in DEVICES, f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.threads == 0:
            object.__setattr__(self, "threads", default_threads())


@dataclass(frozen=True)
class SamplingConfig:
    """Sampling for ``generate``. temperature 0 means greedy decoding."""

    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 64
    stop: tuple[str, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        require(self.temperature >= 0, f"temperature must be >= 0, got {self.temperature}")
        require(0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p}")
        require(self.max_new_tokens >= 1, f"max_new_tokens must be >= 1, got {self.max_new_tokens}")


@dataclass(frozen=True)
class Generation:
    text: str
    num_tokens: int


@dataclass(frozen=True)
class ContinuationScore:
    """Sum of token log-probs of a continuation, and its token count (mean = logprob / num_tokens)."""

    logprob: float
    num_tokens: int

    @property
    def mean_logprob(self) -> float:
        return self.logprob / max(1, self.num_tokens)


@dataclass
class EngineStats:
    """Counters for compute accounting (planner budgets, benchmarks)."""

    calls: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0


@runtime_checkable
class Engine(Protocol):
    config: EngineConfig
    stats: EngineStats

    def generate(self, prompts: Sequence[str], n: int, sampling: SamplingConfig) -> list[list[Generation]]: ...

    def score(self, prompts: Sequence[str], candidates: Sequence[Sequence[str]]) -> list[list[ContinuationScore]]: ...

    def value(self, texts: Sequence[str]) -> list[float]: ...

    def count_tokens(self, text: str) -> int: ...


@runtime_checkable
class HasTokenizer(Protocol):
    """An engine that exposes its HF tokenizer (prompts use its chat template when it has one)."""

    tokenizer: Any


@runtime_checkable
class GroupedValues(Protocol):
    """An engine that values many continuations of one shared prefix with one encoding of it:
    ``value_groups(prefixes, continuations)[i][k]`` is the value of ``prefixes[i] + continuations[i][k]``."""

    def value_groups(self, prefixes: Sequence[str], continuations: Sequence[Sequence[str]]) -> list[list[float]]: ...


@runtime_checkable
class SegmentScoring(Protocol):
    """An engine that scores continuations of prompts given as segments, each tokenized on its own
    and the ids concatenated (the ids whole-episode training uses; see ``mpr.lm.prompts``), and
    counts a segment's tokens the same way (what a transcript's cut is measured in)."""

    def count_segment_tokens(self, segment: str) -> int: ...

    def score_segments(self, prompts: Sequence[Sequence[str]],
                       candidates: Sequence[Sequence[str]]) -> list[list[ContinuationScore]]: ...


@runtime_checkable
class SegmentGeneration(Protocol):
    """An engine that generates after prompts given as segments (tokenized one by one, as
    ``SegmentScoring``): a transcript world model continues the ids it was trained on."""

    def count_segment_tokens(self, segment: str) -> int: ...

    def generate_segments(self, prompts: Sequence[Sequence[str]], n: int,
                          sampling: SamplingConfig) -> list[list[Generation]]: ...


@runtime_checkable
class SegmentValues(Protocol):
    """An engine that values continuations of prompts given as segments (tokenized one by one, as
    ``SegmentScoring``): ``value_segments(prompts, candidates)[i][k]`` is the value head read at the
    last token of ``candidates[i][k]`` after ``prompts[i]`` — a transcript PRM's Q(s, a), where
    training reads it (``mpr.training.transcripts``: each action's last token)."""

    def count_segment_tokens(self, segment: str) -> int: ...

    def value_segments(self, prompts: Sequence[Sequence[str]],
                       candidates: Sequence[Sequence[str]]) -> list[list[float]]: ...


def tokenizer_of(engine: Any) -> Any:
    """The engine's tokenizer, or None for engines without one."""
    return engine.tokenizer if isinstance(engine, HasTokenizer) else None


class TokenizerMixin:
    """What both engines do with their HF tokenizer, and the score verb's argument contract."""

    tokenizer: Any
    stats: EngineStats

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` with no special tokens added (prompts carry their own)."""
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def count_tokens(self, text: str) -> int:
        return len(self.encode(text))

    def _start_score(self, prompts: Sequence[str], candidates: Sequence[Sequence[str]]) -> bool:
        """Validate ``score`` arguments and count the call; False when there is nothing to score."""
        if len(prompts) != len(candidates):
            raise ValueError("score: prompts and candidates differ in length")
        if not prompts:
            return False
        self.stats.calls += 1
        return True


def cpu_supports_bf16() -> bool:
    """AMX or AVX512-BF16 on this CPU (without them bf16 matmuls are slower than fp32)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_device(name: str, cuda_available: bool | None = None) -> str:
    """"cpu" or "cuda" for a device setting: "auto" is CUDA when torch sees a GPU; "cuda" where it
    sees none is one error line, not a traceback from deep inside ``model.to``.
    ``cuda_available``: what torch says, unless given (tests)."""
    from mpr.errors import MprError

    require(name in DEVICES, f"device must be one of {DEVICES}, got {name!r}")
    if name == "cpu":
        return "cpu"
    detail = ""
    if cuda_available is None:
        import torch

        cuda_available = torch.cuda.is_available()
        detail = f" (torch {torch.__version__}, " + (f"CUDA {torch.version.cuda} build)" if torch.version.cuda
                                                      else "a CPU-only build)")
    if name == "cuda" and not cuda_available:
        raise MprError(f"--device cuda: torch sees no CUDA device here{detail}; use --device cpu or auto")
    return "cuda" if cuda_available else "cpu"


def auto_dtype(name: str, device: str) -> str:
    """Resolve "auto" to "bf16" or "fp32" for ``device`` ("cpu" or "cuda"); other names pass through."""
    if name != "auto":
        return name
    return "bf16" if device == "cuda" or cpu_supports_bf16() else "fp32"


def regroup(flat: Sequence[Any], candidates: Sequence[Sequence[str]]) -> list[list[Any]]:
    """Split a flat list (one item per candidate, in order) back into one list per prompt."""
    it = iter(flat)
    return [[next(it) for _ in cs] for cs in candidates]


def truncate_at_stop(text: str, stop: Sequence[str]) -> str:
    """Cut ``text`` at the first occurrence of any stop string."""
    cut = len(text)
    for s in stop:
        i = text.find(s)
        if i != -1:
            cut = min(cut, i)
    return text[:cut]
