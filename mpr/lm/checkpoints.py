"""Trained checkpoints: a plain HF model directory plus ``mpr-checkpoint.json`` saying what it is.

Kinds: ``policy`` (causal LM, ranks/samples actions), ``world`` (causal LM, predicts the next
observation), ``prm`` (value head, sigmoid(logit) = Q(s, a) in [0, 1], AgentPRM), ``inverse-prm``
(value head, raw logit = Q(s, a), InversePRM), ``value`` (value head on states alone, V_ref for
reward shaping). Loading checks the kind, so a world model passed as ``--prm`` is one clear error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mpr.errors import MprError

META_FILE = "mpr-checkpoint.json"
KINDS = ("policy", "world", "prm", "inverse-prm", "value")
SCORER_KINDS = ("prm", "inverse-prm")


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    kind: str
    meta: dict[str, Any]


def write_meta(directory: Path, kind: str, **info: Any) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown checkpoint kind {kind!r}")
    from mpr.owned import atomic_write_text

    atomic_write_text(directory / META_FILE, json.dumps({"kind": kind, **info}, indent=2, default=str))


def load_checkpoint(path: str | Path, *kinds: str, flag: str = "checkpoint") -> Checkpoint:
    """Open a checkpoint directory and check it is one of ``kinds``; one clear error otherwise."""
    p = Path(path).expanduser()
    if not p.is_dir():
        raise MprError(f"{flag} {path}: no such checkpoint directory")
    meta_file = p / META_FILE
    if not meta_file.is_file():
        raise MprError(f"{flag} {path}: not an mpr checkpoint (no {META_FILE}; was training interrupted? "
                       "rerun the same `mpr train` command to finish it)")
    try:
        meta = json.loads(meta_file.read_text())
    except json.JSONDecodeError:
        raise MprError(f"{flag} {path}: {META_FILE} is corrupt") from None
    kind = meta.get("kind")
    if kinds and kind not in kinds:
        raise MprError(f"{flag} {path} is a {kind!r} checkpoint, expected {' or '.join(map(repr, kinds))}")
    return Checkpoint(p, kind, meta)


def ship_checkpoint(source: str | Path, out: Path, **info: Any) -> Checkpoint:
    """Copy a finished checkpoint to ``out`` as the package ships it: fp16 safetensors, its
    tokenizer and its metadata (plus ``info``, e.g. the command that made it). fp16 keeps the
    weights of a model trained in fp32 to ~3 significant digits; the engines load them in the dtype
    they run (``dtype: auto``), so the shipped model scores as the trained one within bf16 noise."""
    import shutil
    import tempfile

    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    from mpr.lm.weights import quiet_transformers

    ckpt = load_checkpoint(source, flag="checkpoint")
    quiet_transformers()
    loader = AutoModelForCausalLM if ckpt.kind in ("policy", "world") else AutoModelForSequenceClassification
    model = loader.from_pretrained(ckpt.path, dtype=torch.float16)
    tok = AutoTokenizer.from_pretrained(ckpt.path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    meta = {k: v for k, v in ckpt.meta.items() if k != "kind"}
    write_meta(tmp, ckpt.kind, **meta, shipped={"from": str(Path(source).resolve()), "dtype": "fp16", **info})
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return load_checkpoint(out, ckpt.kind)
