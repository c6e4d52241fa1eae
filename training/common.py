"""What every training stage shares: base models, tokenized batches, held-out games, saving.

Stage layout of ``OUT`` (a checkpoint directory once finished): ``train-state.pt`` (resumable
state, see :mod:`mpr.training.trainer`), the HF model files, ``train_config.json`` (the resolved
config) and ``mpr-checkpoint.json`` (written last; kind, base, data, metrics).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mpr.training.trainer import TrainConfig, settings

from mpr.config import from_mapping, load_yaml, to_dict
from mpr.errors import ConfigError, MprError
from mpr.lm.checkpoints import META_FILE, load_checkpoint, write_meta
from mpr.owned import atomic_write_text

PRESETS_DIR = Path(__file__).parent / "presets"
STAGES = ("prm", "value", "world", "policy")
SECTIONS = STAGES + ("rollout",)  # rollout: how much `mpr train iterate` rolls out


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def load_train_config(stage: str, preset: str = "tiny", config_file: str | None = None,
                      overrides: Sequence[str] = ()) -> TrainConfig:
    """A stage's TrainConfig: the preset's section, then a YAML file's section, then ``key=value`` overrides.
    Unknown keys anywhere are an error."""
    path = PRESETS_DIR / f"{preset}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown preset {preset!r}; choose one of: {', '.join(preset_names())}")
    merged: dict[str, Any] = dict(_section(load_yaml(path), stage, str(path)))
    if config_file:
        merged.update(_section(load_yaml(config_file), stage, config_file))
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected key=value")
        import yaml

        merged[key.strip()] = yaml.safe_load(raw)
    return from_mapping(TrainConfig, _typed(merged, stage), where=f"{stage} training config")


def _typed(values: dict[str, Any], stage: str) -> dict[str, Any]:
    """Numbers given as strings (YAML reads ``5e-4`` as a string) become numbers; anything that is
    not a number where one is expected is an error naming the key."""
    import dataclasses

    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    out = dict(values)
    for key, value in values.items():
        default = defaults.get(key)
        if isinstance(default, bool) or key not in defaults or isinstance(default, str):
            continue
        kind = float if isinstance(default, float) else int
        try:
            out[key] = kind(value) if not isinstance(value, bool) else _fail()
        except (TypeError, ValueError):
            raise ConfigError(f"{stage} training config: {key} must be a number, got {value!r}") from None
    return out


def _fail() -> Any:
    raise ValueError


def _section(data: dict[str, Any], stage: str, where: str) -> dict[str, Any]:
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{where}: unknown section(s) {', '.join(map(repr, unknown))}; valid: {', '.join(SECTIONS)}")
    return dict(data.get(stage) or {})


def resolve_base(base: str) -> str:
    """A model directory for ``base``; a from-scratch size (``SCRATCH_SIZES``) is built on first use (seconds)."""
    from mpr.lm import weights as models

    if base == "pi0":
        raise MprError("base: pi0 is the π₀ of `mpr train all` (training/chain.py); for one stage on its own "
                       "give --set base=PI0_CHECKPOINT")
    if base in models.SCRATCH_SIZES and not (models.scratch_model_dir(base) / models.READY_MARKER).exists():
        models.build_scratch(base)
    if Path(base).expanduser().is_dir() and (Path(base).expanduser() / META_FILE).exists():
        return str(load_checkpoint(base, flag="base").path)
    return models.resolve_model(base)


def load_model(base: str, head: str, config: TrainConfig) -> tuple[Any, Any]:
    """(model, tokenizer) to train from ``base``: a causal LM (``head="causal"``) or a one-output
    value model (``head="value"``, fp32, head initialised from ``config.seed``); LoRA-wrapped if
    ``config.lora``; on ``config.device`` (initialised on the CPU first, so the same seed gives the
    same weights on either device), with gradient checkpointing if ``config.grad_checkpointing``."""
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
    )

    from mpr.lm.engine import default_threads, resolve_device
    from mpr.lm.weights import quiet_transformers

    quiet_transformers()
    device = resolve_device(config.device)  # before the load: a missing GPU is one line, not minutes in
    torch.set_num_threads(config.threads or default_threads())
    path = resolve_base(base)
    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    torch.manual_seed(config.seed)
    try:
        if head == "value":
            model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=torch.float32)
            model.config.pad_token_id = tok.pad_token_id
        else:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    except Exception as exc:
        raise MprError(f"cannot load base model {base!r} ({path}): {exc.__class__.__name__}: "
                       f"{str(exc).splitlines()[0][:200]}") from None
    if config.grad_checkpointing:
        # Non-reentrant: works when no input requires grad (frozen embeddings under LoRA).
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if config.lora:
        from mpr.lm.lora import LoraConfig, add_lora

        model = add_lora(model, LoraConfig(r=config.lora_r, alpha=2 * config.lora_r), value_head=(head == "value"))
    return model.to(device), tok


def encode(tok: Any, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def pad_right(seqs: Sequence[Sequence[int]], pad: int, fill: int | None = None, device: Any = None
              ) -> tuple[Any, Any]:
    """[B, T] ids (padded with ``fill`` or ``pad``) and the attention mask, on ``device`` (the model's;
    None: the CPU)."""
    import torch

    width = max(1, max(map(len, seqs)))
    ids = torch.full((len(seqs), width), pad if fill is None else fill, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            ids[i, : len(s)] = torch.tensor(list(s))
            mask[i, : len(s)] = 1
    if device is not None:
        ids, mask = ids.to(device), mask.to(device)
    return ids, mask


def is_held_out(task_id: str, fraction: float) -> bool:
    """Deterministic game-level split: a game is held out when its id hashes below ``fraction``."""
    return fraction > 0 and (zlib.crc32(task_id.encode()) % 10_000) / 10_000 < fraction


def split_by_game(items: Sequence[Any], task_of: Callable[[Any], str], fraction: float) -> tuple[list, list]:
    """(train, held-out) by game; with at least two games, at least one game is held out."""
    train = [x for x in items if not is_held_out(task_of(x), fraction)]
    val = [x for x in items if is_held_out(task_of(x), fraction)]
    games = sorted({task_of(x) for x in items})
    if fraction > 0 and not val and len(games) >= 2:
        last = games[-1]
        train = [x for x in items if task_of(x) != last]
        val = [x for x in items if task_of(x) == last]
    return train, val


def sample_games(items: Sequence[Any], task_of: Callable[[Any], str], n: int, fraction: float) -> list[Any]:
    """``items`` of at most ``n`` training games plus every held-out game (so runs on fewer games
    are validated on the same games): the training games with the smallest salted hash of their id,
    a deterministic sample that does not depend on the order the items were recorded in."""
    games = sorted({task_of(x) for x in items if not is_held_out(task_of(x), fraction)},
                   key=lambda t: (zlib.crc32(f"sample:{t}".encode()), t))
    keep = set(games[:n])
    return [x for x in items if task_of(x) in keep or is_held_out(task_of(x), fraction)]


def stage_header(header: dict[str, Any], config: TrainConfig) -> dict[str, Any]:
    """What identifies a finished stage: its inputs plus its training settings."""
    return {**json.loads(json.dumps(header, default=str)), "train": settings(config)}


def spread(items: Sequence[Any], n: int) -> list[Any]:
    """At most ``n`` items taken evenly across ``items`` (deterministic). Held-out sets are stored in
    data order — episodes of one game, or expert pairs before learner pairs — so a plain ``[:n]``
    would measure one game or one class only."""
    if len(items) <= n:
        return list(items)
    return [items[(i * len(items)) // n] for i in range(n)]


def finished(out: Path, kind: str, header: dict[str, Any], config: TrainConfig,
             echo: Callable[[str], None]) -> dict[str, Any] | None:
    """The metadata of an already finished stage in ``out`` (same settings; says so), else None.
    A finished checkpoint of another kind or other settings is an error, never overwritten; so is a
    folder mpr did not write (see :func:`mpr.owned.claim_dir`)."""
    from mpr.training.trainer import check_checkpoint_dir, with_new_defaults

    check_checkpoint_dir(out)  # read-only: inputs are checked before anything is written
    if not (out / META_FILE).exists():
        return None
    meta = load_checkpoint(out, flag="--out").meta
    if meta.get("kind") != kind:
        raise MprError(f"--out {out} already holds a {meta.get('kind')!r} checkpoint; choose another --out")
    if with_new_defaults(meta.get("header") or {}) != stage_header(header, config):
        raise MprError(f"--out {out} holds a {kind} checkpoint trained with other settings; choose another --out")
    method = f" {header['method']}" if "method" in header else ""
    echo(f"{out}: already trained ({kind}{method}); nothing to do")
    return meta


def save_model(model: Any, tok: Any, out: Path, config: TrainConfig) -> Any:
    """Save the model (LoRA merged) as a plain HF dir in ``out``; returns the saved (merged) model.
    The directory is not a checkpoint until :func:`finish_checkpoint` writes the metadata."""
    from mpr.lm.weights import quiet_transformers

    quiet_transformers()
    model = model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
    model.save_pretrained(out)
    tok.save_pretrained(out)
    atomic_write_text(out / "train_config.json", json.dumps(to_dict(config), indent=2))
    return model


def finish_checkpoint(out: Path, kind: str, config: TrainConfig, header: dict[str, Any], **info: Any) -> dict[str, Any]:
    """Write ``mpr-checkpoint.json`` (atomically, last): from now on ``out`` is a complete checkpoint."""
    from mpr.lm.weights import SCRATCH_SIZES, SCRATCH_VERSION

    base = {"base": config.base}
    if config.base in SCRATCH_SIZES:  # a from-scratch name means a different build (tokenizer) per version
        base["base_version"] = SCRATCH_VERSION
    meta = json.loads(json.dumps({**base, "header": stage_header(header, config), **info}, default=str))
    write_meta(out, kind, **meta)
    return {"kind": kind, **meta}


def train_and_save(model: Any, tok: Any, out: Path, kind: str, config: TrainConfig, header: dict[str, Any],
                   num_examples: int, loss_fn: Callable[[list[int]], tuple[Any, int]],
                   evaluate: Callable[[Any], dict[str, Any]], counts: dict[str, Any], progress: bool, desc: str,
                   stop_after: int | None = None, fit_config: TrainConfig | None = None,
                   **info: Any) -> dict[str, Any]:
    """The end of every stage: train (resumably), save the model, measure it on held-out data, and
    write the metadata. ``evaluate(saved_model)`` returns the held-out metrics; ``counts`` says how
    much data went in. A run stopped early returns ``{"stopped_at": step}`` and writes nothing.
    ``fit_config``: what the optimizer loop runs with, when it differs from the stage's ``config``
    (which the metadata records)."""
    from mpr.training.trainer import fit

    fit_config = fit_config or config
    result = fit(model, num_examples, loss_fn, fit_config, out, header, progress, desc, stop_after)
    if result.steps < fit_config.total_steps(num_examples):
        return {"stopped_at": result.steps}
    saved = save_model(model, tok, out, config)
    metrics = {**evaluate(saved), **counts, "train_tokens_per_second": result.tokens_per_second,
               "final_train_loss": result.final_loss, "steps": result.steps}
    return finish_checkpoint(out, kind, config, header, metrics=metrics, **info)


def auc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """Area under the ROC curve (ties count half); None when only one class is present."""
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    if not pos or not neg:
        return None
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):  # average ranks over ties
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    rank_pos = sum(r for r, y in zip(ranks, labels) if y)
    return (rank_pos - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))
