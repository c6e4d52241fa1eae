"""The language-model layer: turning text into numbers, batched.

What belongs here: the ``Engine`` interface and its configs (``engine``), its HF transformers and
vLLM backends (``hf_engine``, ``vllm_engine``) and the factory that picks one (``backends``), model
weights — the embedded default, the tiny from-scratch model (``weights``) — trained checkpoints
(``checkpoints``), LoRA (``lora``) and the one module that renders prompts and transcripts
(``prompts``). It knows nothing of policies, planners or episodes.
"""
