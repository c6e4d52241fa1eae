"""Training on a device: the device and dtype rules, gradient accumulation and checkpointing, the gpu
preset, and the GPU check's script, as far as a CPU can check them (docs/gpu.md)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mpr.training.common import load_train_config
from mpr.training.trainer import TrainConfig, autocast_dtype, fit

from mpr.errors import ConfigError, MprError
from mpr.lm.engine import resolve_device

REPO = Path(__file__).resolve().parent.parent


def test_device_rules():
    assert resolve_device("cpu", cuda_available=True) == "cpu"
    assert resolve_device("auto", cuda_available=True) == "cuda"
    assert resolve_device("auto", cuda_available=False) == "cpu"
    assert resolve_device("cuda", cuda_available=True) == "cuda"
    with pytest.raises(MprError, match="--device cuda: torch sees no CUDA device") as err:
        resolve_device("cuda", cuda_available=False)
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="device must be one of"):
        resolve_device("tpu")


def test_autocast_rules():
    # CPU: bf16 only where asked or (auto) where the CPU has it; a GPU: bf16 where torch says it can.
    assert autocast_dtype("fp32", "cpu") == "fp32" and autocast_dtype("bf16", "cpu") == "bf16"
    assert autocast_dtype("auto", "cuda", cuda_bf16=True) == "bf16"
    assert autocast_dtype("auto", "cuda", cuda_bf16=False) == "fp32"
    assert autocast_dtype("fp32", "cuda", cuda_bf16=True) == "fp32"
    assert autocast_dtype("bf16", "cuda", cuda_bf16=True) == "bf16"
    with pytest.raises(MprError, match="no bf16 support"):
        autocast_dtype("bf16", "cuda", cuda_bf16=False)


def test_device_settings_are_validated_and_counted():
    with pytest.raises(ConfigError, match="device must be one of"):
        TrainConfig(device="gpu")
    with pytest.raises(ConfigError, match="grad_accum must be >= 1"):
        TrainConfig(grad_accum=0)
    # epochs count micro-batches: 10 examples in batches of 4 = 3 per epoch, 2 epochs = 6 micro-batches
    assert TrainConfig(epochs=2, batch_size=4).total_steps(10) == 6
    assert TrainConfig(epochs=2, batch_size=4, grad_accum=2).total_steps(10) == 3
    assert TrainConfig(epochs=2, batch_size=4, grad_accum=4).total_steps(10) == 2
    assert TrainConfig(max_steps=5, grad_accum=4).total_steps(10) == 5


def test_gpu_preset_validates_every_stage():
    from mpr.app.benchmark import load_recipe

    for stage in ("prm", "value", "world", "policy"):
        c = load_train_config(stage, "gpu")
        assert c.device == "cuda" and c.dtype == "auto" and c.grad_checkpointing and c.grad_accum >= 1
        assert "/" in c.base  # a hub id: any HF causal LM, overridable with --set base=...
    assert load_train_config("policy", "gpu").prompt_format == "transcript"
    assert load_train_config("policy", "gpu", overrides=["base=/models/llama-3b", "lora=true"]).lora
    recipe = load_recipe(REPO / "bench/configs/gpu.yaml")
    assert {a.budget for a in recipe.arms if a.planner == "best-of-n"} == {4, 8, 16}
    assert recipe.models.policy and recipe.models.prm and recipe.models.world


def _toy_fit(tmp_path, name, batch_size, grad_accum):
    """A linear regression on 16 fixed examples; mean-squared error per batch."""
    import torch

    torch.manual_seed(0)
    x, y = torch.randn(16, 5), torch.randn(16, 1)
    model = torch.nn.Linear(5, 1)

    def loss_fn(idx):
        return torch.nn.functional.mse_loss(model(x[idx]), y[idx]), len(idx)

    config = TrainConfig(lr=0.05, epochs=3, batch_size=batch_size, grad_accum=grad_accum, checkpoint_every=2,
                         threads=1, dtype="fp32", device="cpu")
    result = fit(model, 16, loss_fn, config, tmp_path / name, {"toy": 1}, progress=False)
    return model, result


def test_gradient_accumulation_equals_one_big_batch(tmp_path):
    big, r_big = _toy_fit(tmp_path, "big", batch_size=4, grad_accum=1)
    acc, r_acc = _toy_fit(tmp_path, "acc", batch_size=2, grad_accum=2)
    small, _ = _toy_fit(tmp_path, "small", batch_size=2, grad_accum=1)
    assert r_big.steps == r_acc.steps == 12 and r_acc.tokens == r_big.tokens == 48
    for a, b, c in zip(big.parameters(), acc.parameters(), small.parameters()):
        assert (a - b).abs().max() < 1e-5  # the mean of two half-batch means = the batch mean
        assert (a - c).abs().max() > 1e-3  # twice the steps on half batches lands elsewhere


def test_gradient_checkpointing_gives_the_same_gradients(tiny_model_dir):
    from mpr.training.common import load_model
    from mpr.training.policy import transcript_loss
    from mpr.training.transcripts import EncodedEpisode

    grads = []
    for checkpointing in (False, True):
        config = TrainConfig(base=str(tiny_model_dir), threads=1, dtype="fp32", device="cpu",
                             grad_checkpointing=checkpointing)
        model, tok = load_model(config.base, "causal", config)
        assert model.is_gradient_checkpointing == checkpointing
        ids = tok("Your task is to: put a mug in desk.\nYou are in the middle of a room.", add_special_tokens=False)
        ids = tuple(ids["input_ids"] + tok("\n> go to desk 1\n", add_special_tokens=False)["input_ids"])
        n = len(ids)
        window = EncodedEpisode(ids, tuple(i >= n - 6 for i in range(n)), (False,) * n, (n - 1,), (0,))
        model.train()
        loss, _ = transcript_loss(model, [window], tok.pad_token_id, lm_weight=1.0)
        loss.backward()
        grads.append({k: p.grad.clone() for k, p in model.named_parameters()})
    plain, recomputed = grads
    assert plain.keys() == recomputed.keys()
    for k in plain:
        assert (plain[k] - recomputed[k]).abs().max() <= 1e-5 * (1 + plain[k].abs().max()), k


def test_the_gpu_check_runs_on_the_cpu_and_writes_its_record(expert_rollouts, tmp_path):
    out = tmp_path / "check.json"
    proc = subprocess.run([sys.executable, str(REPO / "bench/gpu_check.py"), "--demos", str(expert_rollouts),
                           "--device", "cpu", "--steps", "3", "--compare-steps", "2", "--batch", "1",
                           "--length", "256", "--states", "2", "--threads", "1", "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads(out.read_text())
    agreement = record["loss_agreement"]
    assert agreement["agree"] and len(agreement["cpu_fp32"]) == 2 and agreement["cpu_fp32"][1] < agreement["cpu_fp32"][0]
    assert record["training"]["steps"] == 3 and record["training"]["tokens_per_second"] > 0
    assert record["training"]["cpu_tokens_per_second"] > 0  # from the shipped policy's metadata
    assert record["scoring"][0]["candidates"] > 0 and "loss agreement" in proc.stdout
