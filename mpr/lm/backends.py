"""Pick an engine backend: the one module that knows both implementations of ``Engine``."""

from __future__ import annotations

from mpr.lm.engine import Engine, EngineConfig


def make_engine(config: EngineConfig) -> Engine:
    """The engine for ``config.backend`` ("auto": vLLM when importable, else HF)."""
    backend = config.backend
    if backend == "auto":
        import importlib.util

        backend = "vllm" if importlib.util.find_spec("vllm") is not None else "hf"
    if backend == "vllm":
        from mpr.lm.vllm_engine import VLLMEngine

        return VLLMEngine(config)
    from mpr.lm.hf_engine import HFEngine

    return HFEngine(config)
