"""``mpr train world``: fine-tune a causal LM to predict the next observation.

Examples are every transition (state, action -> observation) of the given rollouts and
demonstrations, merged by (state, action) (the games are deterministic, so a pair always leads to
the same observation). The prompt is :func:`mpr.lm.prompts.world_prompt`; only the observation tokens
(and the end-of-turn token) carry loss.

With ``prompt_format: transcript`` the model trains on whole episodes instead (one sequence per
rollout, cut as inference cuts): the loss is on every observation the game printed and the token
that ends its line, so one forward pass trains every step, and predictions continue the state's
transcript (:class:`mpr.worldmodel.llm.LLMWorldModel`).

Metrics on held-out transitions — ``--val-rollouts`` (e.g. walkthroughs of valid_seen), or else
held-out train games: exact match of the greedy prediction with the real observation, and match
of the parsed facts (location, objects seen, inventory changes, open/closed; see
:mod:`mpr.worldmodel.facts`) — overall and by kind (``observation_kind``): observations the history
determines, and first visits of a place, which no model can know.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mpr.training.common import (
    finished,
    load_model,
    split_by_game,
    spread,
    train_and_save,
)
from mpr.training.rollout import Transition, load_rollouts, transitions
from mpr.training.sft import example, sft_loss
from mpr.training.trainer import TrainConfig
from mpr.worldmodel.facts import OBSERVATION_KINDS, facts_f1, facts_match, observation_kind

from mpr.errors import MprError


def world_transitions(episodes: Sequence[Any]) -> list[Transition]:
    """Every transition, merged by (state, action), in first-seen order."""
    seen: dict[tuple[str, str], Transition] = {}
    for ep in episodes:
        for st in transitions(ep):
            seen.setdefault((st.state.digest(), st.action), st)
    return list(seen.values())


def train_world(rollouts: Sequence[str], out: Path, config: TrainConfig, val_rollouts: Sequence[str] = (),
                progress: bool = True, echo: Callable[[str], None] = print,
                stop_after: int | None = None) -> dict[str, Any]:
    from mpr.lm.prompts import ChatFormat, world_prompt

    header = {"stage": "world", "rollouts": [str(Path(r).resolve()) for r in rollouts],
              "val_rollouts": [str(Path(r).resolve()) for r in val_rollouts]}
    done = finished(out, "world", header, config, echo)
    if done:
        return done
    episodes = load_rollouts(*rollouts)
    if val_rollouts:
        train_eps, val_eps = episodes, load_rollouts(*val_rollouts)
        overlap = {e.task_id for e in train_eps} & {e.task_id for e in val_eps}
        if overlap:
            raise MprError(f"--val-rollouts shares {len(overlap)} games with --rollouts; use held-out games")
    else:
        train_eps, val_eps = split_by_game(episodes, lambda e: e.task_id, config.val_fraction)
    val = world_transitions(val_eps)
    if config.prompt_format == "transcript":  # trains on the episodes themselves, not merged transitions
        return _train_world_transcripts(train_eps, val, out, config, header, progress, echo, stop_after)
    train = world_transitions(train_eps)
    model, tok = load_model(config.base, "causal", config)
    chat = ChatFormat.from_tokenizer(tok)
    count = lambda text: len(tok(text, add_special_tokens=False)["input_ids"])

    def make(t: Transition) -> tuple[list[int], list[int]]:
        target = t.next_state.observation
        budget = config.max_length - count(target) - 1
        return example(tok, world_prompt(t.state, t.action, chat, count, budget), target)

    examples = [make(t) for t in train]
    echo(f"world: {len(train)} training transitions from {len({t.state.task_id for t in train})} games, "
         f"{len(val)} held-out transitions from {len({t.state.task_id for t in val})} games")
    return train_and_save(
        model, tok, out, "world", config, header, len(examples),
        lambda idx: sft_loss(model, [examples[i] for i in idx], tok.pad_token_id),
        lambda _saved: evaluate_world(str(out), spread(val, config.val_examples), config),
        {"train_transitions": len(train)}, progress, "train world", stop_after)


def world_targets(window: Any) -> list[bool]:
    """A transcript world model's target tokens: each printed observation and the token after it
    (the end of its line, so the model learns where an observation stops)."""
    obs = window.observation_mask
    return [o or (i > 0 and obs[i - 1]) for i, o in enumerate(obs)]


def _train_world_transcripts(episodes: Sequence[Any], val: Sequence[Transition], out: Path, config: TrainConfig,
                             header: dict[str, Any], progress: bool, echo: Callable[[str], None],
                             stop_after: int | None) -> dict[str, Any]:
    """Whole-episode training on the observation tokens; one step is a length bucket of at most
    ``batch_size x max_length`` tokens."""
    import dataclasses
    from functools import partial

    from mpr.training.common import encode
    from mpr.training.policy import transcript_loss
    from mpr.training.transcripts import bucketed, encode_states
    from mpr.worldmodel.llm import TRANSCRIPT_WORLD_RESERVE

    model, tok = load_model(config.base, "causal", config)
    enc = partial(encode, tok)
    windows = [w for ep in episodes for w in encode_states(ep.states(), enc, config.max_length, TRANSCRIPT_WORLD_RESERVE)]
    buckets, held = bucketed(windows, config.batch_size * config.max_length)
    observed = sum(sum(w.observation_mask) for w in windows)
    echo(f"world (transcripts): {len(episodes)} episodes -> {len(windows)} sequences, {observed:,} observation "
         f"tokens; {held}; {len(val)} held-out transitions")
    return train_and_save(
        model, tok, out, "world", config, header, len(buckets),
        lambda idx: transcript_loss(model, [windows[i] for k in idx for i in buckets[k]], tok.pad_token_id,
                                    targets=world_targets),
        lambda _saved: evaluate_world(str(out), spread(val, config.val_examples), config, "transcript"),
        {"train_transitions": sum(len(w.turns) for w in windows), "train_sequences": len(windows),
         "train_tokens": sum(map(len, windows))},
        progress, "train world (transcripts)", stop_after, fit_config=dataclasses.replace(config, batch_size=1),
        prompt_format="transcript")


def evaluate_world(model_dir: str, val: Sequence[Transition], config: TrainConfig,
                   prompt_format: str = "chat") -> dict[str, Any]:
    """Greedy predictions for held-out transitions vs the real observations (one batched call):
    exact and facts match overall, and exact match and facts F1 by observation kind."""
    from mpr.compose import training_world_model

    if not val:
        return {"val_transitions": 0}
    wm = training_world_model(model_dir, config, prompt_format)
    t0 = time.perf_counter()
    preds = wm.predict([t.state for t in val], [t.action for t in val])
    seconds = time.perf_counter() - t0
    actual = [t.next_state.observation for t in val]
    kinds = [observation_kind(t.state, t.action) for t in val]
    by_kind = {}
    for kind in OBSERVATION_KINDS:
        rows = [(p, a) for p, a, k in zip(preds, actual, kinds) if k == kind]
        by_kind[kind] = {"transitions": len(rows),
                         "exact_match": sum(p.strip() == a.strip() for p, a in rows) / len(rows) if rows else None,
                         "facts_f1": sum(facts_f1(p, a) for p, a in rows) / len(rows) if rows else None}
    return {
        "val_transitions": len(val),
        "val_exact_match": sum(p.strip() == a.strip() for p, a in zip(preds, actual)) / len(val),
        "val_facts_match": sum(facts_match(p, a) for p, a in zip(preds, actual)) / len(val),
        "val_by_kind": by_kind,
        "val_empty_outputs": wm.empty_outputs,
        "val_generated_tokens_per_second": wm.engine.stats.generated_tokens / seconds if seconds > 0 else None,
        "val_examples_shown": [{"action": t.action, "actual": a, "predicted": p}
                               for t, a, p in list(zip(val, actual, preds))[:5]],
    }

