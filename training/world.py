"""``mpr train world``: fine-tune a causal LM to predict the next observation.

Examples are every transition (state, action -> observation) of the given rollouts and
demonstrations, merged by (state, action) (the games are deterministic, so a pair always leads to
the same observation). The prompt is :func:`mpr.lm.prompts.world_prompt`; only the observation tokens
(and the end-of-turn token) carry loss.

Metrics on held-out transitions — ``--val-rollouts`` (e.g. walkthroughs of valid_seen), or else
held-out train games: exact match of the greedy prediction with the real observation, and match
of the parsed facts (location, objects seen, inventory changes, open/closed; see
:mod:`mpr.worldmodel.facts`).
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
from mpr.worldmodel.facts import facts_match

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
    data = world_transitions(load_rollouts(*rollouts))
    if val_rollouts:
        train, val = data, world_transitions(load_rollouts(*val_rollouts))
        overlap = {t.state.task_id for t in train} & {t.state.task_id for t in val}
        if overlap:
            raise MprError(f"--val-rollouts shares {len(overlap)} games with --rollouts; use held-out games")
    else:
        train, val = split_by_game(data, lambda t: t.state.task_id, config.val_fraction)
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


def evaluate_world(model_dir: str, val: Sequence[Transition], config: TrainConfig) -> dict[str, Any]:
    """Greedy predictions for held-out transitions vs the real observations (one batched call)."""
    from mpr.compose import training_world_model

    if not val:
        return {"val_transitions": 0}
    wm = training_world_model(model_dir, config)
    t0 = time.perf_counter()
    preds = wm.predict([t.state for t in val], [t.action for t in val])
    seconds = time.perf_counter() - t0
    actual = [t.next_state.observation for t in val]
    return {
        "val_transitions": len(val),
        "val_exact_match": sum(p.strip() == a.strip() for p, a in zip(preds, actual)) / len(val),
        "val_facts_match": sum(facts_match(p, a) for p, a in zip(preds, actual)) / len(val),
        "val_empty_outputs": wm.empty_outputs,
        "val_generated_tokens_per_second": wm.engine.stats.generated_tokens / seconds if seconds > 0 else None,
        "val_examples_shown": [{"action": t.action, "actual": a, "predicted": p}
                               for t, a, p in list(zip(val, actual, preds))[:5]],
    }

