"""``mpr train prm`` / ``mpr train value``: process reward models and reference value models.

* AgentPRM (``objective="agentprm"``): a value-head LM regresses the Monte-Carlo targets Q̂(s, a)
  of :mod:`mpr.training.targets` with soft binary cross-entropy; the scorer reads sigmoid(logit).
  With ``shaping_ref`` (a ``value`` checkpoint), targets are the shaped ones instead.
* InversePRM (``objective="inverse"``): learned from demonstrations, no outcome rewards. Expert
  transitions (s, a, s′) are positives, with a′ drawn from the current policy at s′; learner
  transitions are negatives, with a′ the learner's next action. The classifier logit is
  Q(s, a) − γ·Q(s′, a′) (just Q(s, a) on an episode's last step), trained with the logistic loss;
  the scorer reads the raw Q(s, a).
* Value (``mpr train value``): V_ref(s) regressed on Monte-Carlo state values of a reference
  policy's rollouts — the reference for process reward shaping.

Validation is on held-out games (``val_fraction`` of the games, by task-id hash): loss, AUC
(won-vs-lost steps for AgentPRM; expert-vs-learner transitions for InversePRM) and pairwise
ranking accuracy among actions of the same state.

AgentPRM with ``prompt_format: transcript`` trains on whole episodes: every rollout is one sequence
(windows when long, cut as inference cuts), the value head is read at the last token of each policy
action and regressed on that step's merged target — one forward pass trains every step of an
episode; the scorer reads the head at the same place (``mpr.learned.scorer``).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mpr.training.common import (
    auc,
    encode,
    finished,
    load_model,
    pad_right,
    split_by_game,
    spread,
    train_and_save,
)
from mpr.training.rollout import load_rollouts, transitions
from mpr.training.targets import Target, mc_state_values, mc_targets, shaped_targets
from mpr.training.trainer import TrainConfig, check_checkpoint_dir

from mpr.core import State
from mpr.errors import MprError
from mpr.learned.scorer import sigmoid
from mpr.lm.prompts import TRANSCRIPT_RESERVE, prm_text

OBJECTIVES = ("agentprm", "inverse")


@dataclass(frozen=True)
class Pair:
    """An InversePRM example: (s, a) then (s′, a′); ``last``: no successor term; label 1 = expert."""

    state: State
    action: str
    next_state: State
    next_action: str
    last: bool
    label: float


def _values(model: Any, tok: Any, seqs: Sequence[Sequence[int]], batch_size: int) -> list[float]:
    import torch

    out: list[float] = []
    with torch.inference_mode():
        for i in range(0, len(seqs), batch_size):
            ids, mask = pad_right(seqs[i : i + batch_size], tok.pad_token_id, device=model.device)
            out.extend(model(input_ids=ids, attention_mask=mask).logits[:, 0].float().tolist())
    return out


def _forward(model: Any, tok: Any, seqs: Sequence[Sequence[int]]) -> Any:
    ids, mask = pad_right(seqs, tok.pad_token_id, device=model.device)
    return model(input_ids=ids, attention_mask=mask).logits[:, 0].float()


def _tokenize(tok: Any, state: State, action: str, max_length: int) -> list[int]:
    text = prm_text(state, action, lambda t: len(encode(tok, t)), max_length)
    return encode(tok, text)[-max_length:] or [tok.pad_token_id]


def ordered_pairs(targets: Sequence[Target]) -> list[tuple[int, int]]:
    """Index pairs (i, j) of actions of the same state whose targets differ (by 1e-9 or more)."""
    by_state: dict[str, list[int]] = defaultdict(list)
    for i, t in enumerate(targets):
        by_state[t.state.digest()].append(i)
    return [(idx[a], idx[b]) for idx in by_state.values() for a in range(len(idx)) for b in range(a + 1, len(idx))
            if abs(targets[idx[a]].value - targets[idx[b]].value) >= 1e-9]


def pair_accuracy(targets: Sequence[Target], preds: Sequence[float]) -> float | None:
    """Among actions of the same state with different targets, how often the prediction orders
    them like the targets (None when there are no such pairs)."""
    pairs = ordered_pairs(targets)
    right = sum((preds[i] - preds[j]) * (targets[i].value - targets[j].value) > 0 for i, j in pairs)
    return right / len(pairs) if pairs else None


def train_regression(kind: str, targets: list[Target], out: Path, config: TrainConfig, header: dict[str, Any],
                     progress: bool, echo: Callable[[str], None], stop_after: int | None = None) -> dict[str, Any]:
    """Soft-BCE regression of a value-head model on ``targets`` (kind "prm" or "value")."""
    import torch

    done = finished(out, kind, header, config, echo)
    if done:
        return done
    train, val = split_by_game(targets, lambda t: t.state.task_id, config.val_fraction)
    if not train:
        raise MprError("every game landed in the held-out set; lower val_fraction or add games")
    model, tok = load_model(config.base, "value", config)
    seqs = [_tokenize(tok, t.state, t.action, config.max_length) for t in train]
    y = torch.tensor([t.value for t in train], dtype=torch.float32, device=model.device)
    echo(f"{kind}: {len(train)} training targets from {len({t.state.task_id for t in train})} games, "
         f"{len(val)} held-out targets from {len({t.state.task_id for t in val})} games")

    def loss_fn(idx: list[int]) -> tuple[Any, int]:
        logits = _forward(model, tok, [seqs[i] for i in idx])
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, y[idx]), sum(len(seqs[i]) for i in idx)

    return train_and_save(model, tok, out, kind, config, header, len(train), loss_fn,
                          lambda saved: regression_metrics(saved, tok, spread(val, config.val_examples), config),
                          {"train_targets": len(train)}, progress, f"train {kind}", stop_after, output="sigmoid")


def regression_metrics(model: Any, tok: Any, val: list[Target], config: TrainConfig) -> dict[str, Any]:
    if not val:
        return {"val_targets": 0}
    seqs = [_tokenize(tok, t.state, t.action, config.max_length) for t in val]
    return regression_report(val, [sigmoid(x) for x in _values(model, tok, seqs, config.batch_size)])


def rank_report(val: Sequence[Target], preds: Sequence[float]) -> dict[str, Any]:
    """What only the order of predictions says: won-vs-lost AUC and same-state pair accuracy (the
    number of such pairs beside it)."""
    return {"val_targets": len(val), "val_auc_won": auc(preds, [t.success >= 0.5 for t in val]),
            "val_pair_accuracy": pair_accuracy(val, preds), "val_pairs": len(ordered_pairs(val))}


def regression_report(val: Sequence[Target], preds: Sequence[float]) -> dict[str, Any]:
    """Held-out soft-BCE loss and ``rank_report`` of predictions in [0, 1]."""
    loss = -sum(t.value * math.log(max(p, 1e-12)) + (1 - t.value) * math.log(max(1 - p, 1e-12))
                for t, p in zip(val, preds)) / len(val)
    return {**rank_report(val, preds), "val_loss": loss}


def with_alternatives(targets: Sequence[Target], chosen: Sequence[Target]) -> list[Target]:
    """``chosen`` (a spread of ``targets``) plus every other target of a state with several actions:
    a spread alone would split most same-state pairs, leaving pair accuracy to chance."""
    counts: dict[str, int] = defaultdict(int)
    for t in targets:
        counts[t.state.digest()] += 1
    picked = {id(t) for t in chosen}
    return list(chosen) + [t for t in targets if counts[t.state.digest()] > 1 and id(t) not in picked]


def transcript_values(model: Any, windows: Sequence[Any], pad: int) -> Any:
    """The value head's logits at every trained action's last token (``windows[i].action_ends``), in
    order: a [sum of len(action_ends)] tensor, differentiable."""
    import torch

    ids, mask = pad_right([w.ids for w in windows], pad, device=model.device)
    hidden = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1]
    rows = torch.tensor([i for i, w in enumerate(windows) for _ in w.action_ends], device=model.device)
    cols = torch.tensor([e for w in windows for e in w.action_ends], device=model.device)
    return model.score(hidden[rows, cols]).float()[:, 0]


def transcript_value_loss(model: Any, windows: Sequence[Any], targets: Sequence[Sequence[float]], pad: int
                          ) -> tuple[Any, int]:
    """Soft binary cross-entropy of :func:`transcript_values` against ``targets[i]`` (aligned with
    ``windows[i].action_ends``); and the batch's tokens."""
    import torch

    logits = transcript_values(model, windows, pad)
    y = torch.tensor([v for ts in targets for v in ts], dtype=torch.float32, device=model.device)
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, y), sum(len(w) for w in windows)


def transcript_value_data(episodes: Sequence[Any], targets: Sequence[Target], encode_fn: Callable[[str], list[int]],
                          max_length: int) -> tuple[list[Any], list[list[float]]]:
    """The training sequences of ``episodes`` (cut as the policy cuts, replayed prefixes context only)
    and, aligned with each one's ``action_ends``, the merged target of that (state, action)."""
    from mpr.training.transcripts import encode_states

    value = {(t.state.digest(), t.action): t.value for t in targets}
    windows, ys = [], []
    for ep in episodes:
        states = ep.states()
        for w in encode_states(states, encode_fn, max_length, TRANSCRIPT_RESERVE, first_trained=ep.prefix):
            keys = [(states[t].digest(), states[-1].turns[t].action) for t in w.turns]
            missing = [k for k in keys if k not in value]
            if missing:
                raise MprError(f"{ep.task_id}: no target for action {missing[0][1]!r} (rollout and targets disagree)")
            windows.append(w)
            ys.append([value[k] for k in keys])
    return windows, ys


def train_regression_transcripts(kind: str, episodes: Sequence[Any], targets: list[Target], out: Path,
                                 config: TrainConfig, header: dict[str, Any], progress: bool,
                                 echo: Callable[[str], None], stop_after: int | None = None) -> dict[str, Any]:
    """AgentPRM on whole episodes (see the module doc); one optimizer step is a length bucket of at
    most ``batch_size x max_length`` tokens."""
    import dataclasses
    from functools import partial

    from mpr.training.transcripts import bucketed

    done = finished(out, kind, header, config, echo)
    if done:
        return done
    train, held_out = split_by_game(list(episodes), lambda e: e.task_id, config.val_fraction)
    val_games = {e.task_id for e in held_out}
    val = [t for t in targets if t.state.task_id in val_games]
    if not train:
        raise MprError("every game landed in the held-out set; lower val_fraction or add games")
    model, tok = load_model(config.base, "value", config)
    windows, ys = transcript_value_data(train, targets, partial(encode, tok), config.max_length)
    buckets, held = bucketed(windows, config.batch_size * config.max_length)
    echo(f"{kind} (transcripts): {len(train)} episodes -> {len(windows)} sequences, {sum(map(len, ys))} steps; "
         f"{held}; {len(val)} held-out targets")

    def loss_fn(idx: list[int]) -> tuple[Any, int]:
        chosen = [i for k in idx for i in buckets[k]]
        return transcript_value_loss(model, [windows[i] for i in chosen], [ys[i] for i in chosen], tok.pad_token_id)

    return train_and_save(model, tok, out, kind, config, header, len(buckets), loss_fn,
                          lambda _saved: transcript_regression_metrics(
                              str(out), with_alternatives(val, spread(val, config.val_examples)), config),
                          {"train_steps": sum(map(len, ys)), "train_sequences": len(windows),
                           "train_tokens": sum(map(len, windows))},
                          progress, f"train {kind} (transcripts)", stop_after,
                          fit_config=dataclasses.replace(config, batch_size=1), output="sigmoid",
                          prompt_format="transcript")


def transcript_regression_metrics(model_dir: str, val: list[Target], config: TrainConfig) -> dict[str, Any]:
    """``regression_metrics`` with the held-out targets scored the way planners score them."""
    from mpr.compose import training_engine
    from mpr.learned.scorer import PRMScorer

    if not val:
        return {"val_targets": 0}
    scorer = PRMScorer(training_engine(model_dir, config), "sigmoid", prompt_format="transcript")
    return regression_report(val, scorer.score([t.state for t in val], [t.action for t in val]))


def train_agentprm(rollouts: Sequence[str], out: Path, config: TrainConfig, shaping_ref: str | None = None,
                   progress: bool = True, echo: Callable[[str], None] = print,
                   stop_after: int | None = None) -> dict[str, Any]:
    check_checkpoint_dir(out)
    episodes = load_rollouts(*rollouts)
    if shaping_ref:
        v_ref = ValueFunction(shaping_ref, config)
        targets = shaped_targets(episodes, v_ref, config.gamma)
    else:
        targets = mc_targets(episodes, config.gamma)
    header = {"stage": "prm", "objective": "agentprm", "rollouts": [str(Path(r).resolve()) for r in rollouts],
              "episodes": len(episodes), "shaping_ref": shaping_ref}
    if config.prompt_format == "transcript":
        return train_regression_transcripts("prm", episodes, targets, out, config, header, progress, echo, stop_after)
    return train_regression("prm", targets, out, config, header, progress, echo, stop_after)


def train_value(rollouts: Sequence[str], out: Path, config: TrainConfig, progress: bool = True,
                echo: Callable[[str], None] = print, stop_after: int | None = None) -> dict[str, Any]:
    check_checkpoint_dir(out)
    episodes = load_rollouts(*rollouts)
    header = {"stage": "value", "rollouts": [str(Path(r).resolve()) for r in rollouts], "episodes": len(episodes)}
    return train_regression("value", mc_state_values(episodes, config.gamma), out, config, header, progress, echo,
                            stop_after)


class ValueFunction:
    """V_ref(states) from a ``value`` checkpoint: sigmoid of its head, one batched pass."""

    def __init__(self, path: str, config: TrainConfig):
        from mpr.compose import training_engine
        from mpr.lm.checkpoints import load_checkpoint

        ckpt = load_checkpoint(path, "value", flag="--shaping-ref")
        self.engine = training_engine(str(ckpt.path), config)

    def __call__(self, states: list[State]) -> list[float]:
        texts = [prm_text(s, "", self.engine.count_tokens, self.engine.config.max_length) for s in states]
        return [sigmoid(v) for v in self.engine.value(texts)]


# -- InversePRM ---------------------------------------------------------------------------


def inverse_pairs(demos: Sequence[Any], learner: Sequence[Any], next_action: Callable[[list[State]], list[str]]
                  ) -> list[Pair]:
    """Positives from expert episodes (a′ from ``next_action``, one batched call), negatives from
    learner episodes (a′ = the learner's own next action)."""
    pairs: list[Pair] = []
    expert_steps = [st for ep in demos for st in transitions(ep) if st.t >= ep.prefix]
    needs = [st.next_state for st in expert_steps if not st.done]
    proposed = iter(next_action(needs) if needs else [])
    for st in expert_steps:
        pairs.append(Pair(st.state, st.action, st.next_state, "" if st.done else next(proposed), st.done, 1.0))
    for ep in learner:
        steps = [st for st in transitions(ep)]
        for i, st in enumerate(steps):
            if st.t < ep.prefix:
                continue
            nxt = "" if st.done else steps[i + 1].action
            pairs.append(Pair(st.state, st.action, st.next_state, nxt, st.done, 0.0))
    return pairs


def train_inverse(demos: Sequence[str], rollouts: Sequence[str], policy: Callable[[list[State]], list[str]] | None,
                  policy_name: str | None, out: Path, config: TrainConfig, progress: bool = True,
                  echo: Callable[[str], None] = print, stop_after: int | None = None) -> dict[str, Any]:
    """InversePRM. Chat format: (s, a, s′, a′) rows, a′ at expert next states from ``policy``.
    Transcript format: whole episodes (the won demonstrations vs the learner's rollouts), a′ the
    episode's own next action (``train_inverse_transcripts``); ``policy`` is not used."""
    import torch

    header = {"stage": "prm", "objective": "inverse", "demos": [str(Path(d).resolve()) for d in demos],
              "rollouts": [str(Path(r).resolve()) for r in rollouts], "policy": policy_name}
    done = finished(out, "inverse-prm", header, config, echo)
    if done:
        return done
    if config.prompt_format == "transcript":
        learner = load_rollouts(*rollouts)
        expert = [ep for ep in load_rollouts(*demos) if ep.won]
        return train_inverse_transcripts(expert, learner, out, config, header, mc_targets(learner, config.gamma),
                                         progress, echo, stop_after)
    if policy is None:
        raise MprError("InversePRM on chat rows needs --policy (it draws a' at the expert's next states)")
    pairs = inverse_pairs(load_rollouts(*demos), load_rollouts(*rollouts), policy)
    train, val = split_by_game(pairs, lambda p: p.state.task_id, config.val_fraction)
    if not any(p.label for p in train) or all(p.label for p in train):
        raise MprError("InversePRM needs both expert (--demos) and learner (--rollouts) transitions")
    model, tok = load_model(config.base, "value", config)
    first = [_tokenize(tok, p.state, p.action, config.max_length) for p in train]
    second = [_tokenize(tok, p.next_state, p.next_action, config.max_length) for p in train]
    y = torch.tensor([p.label for p in train], device=model.device)
    not_last = torch.tensor([0.0 if p.last else 1.0 for p in train], device=model.device)
    echo(f"inverse-prm: {len(train)} training transitions ({int(y.sum())} expert), {len(val)} held out")

    def loss_fn(idx: list[int]) -> tuple[Any, int]:
        q = _forward(model, tok, [first[i] for i in idx] + [second[i] for i in idx])
        logit = q[: len(idx)] - config.gamma * q[len(idx):] * not_last[idx]
        n_tok = sum(len(first[i]) + len(second[i]) for i in idx)
        return torch.nn.functional.binary_cross_entropy_with_logits(logit, y[idx]), n_tok

    return train_and_save(model, tok, out, "inverse-prm", config, header, len(train), loss_fn,
                          lambda saved: inverse_metrics(saved, tok, spread(val, config.val_examples), config),
                          {"train_pairs": len(train)}, progress, "train inverse-prm", stop_after, output="raw")


def inverse_logits(q: Any, windows: Sequence[Any], last_turns: Sequence[int], gamma: float) -> tuple[Any, Any]:
    """The InversePRM classifier logits of whole episodes: ``q`` holds Q at every trained action
    (``transcript_values`` order); step t of a window gets Q(s_t, a_t) − γ·Q(s_{t+1}, a_{t+1}) with
    a_{t+1} the episode's own next action, the episode's last step Q(s_t, a_t) alone. A step whose
    successor lies in the next window (a cut) has no logit. ``last_turns[i]``: the index of the
    last turn of window i's episode. Returns (logits, index into ``q`` of each logit's step)."""
    import torch

    logit_rows, k = [], 0
    for w, last in zip(windows, last_turns):
        for j, t in enumerate(w.turns):
            if t == last:
                logit_rows.append((k + j, None))
            elif j + 1 < len(w.turns) and w.turns[j + 1] == t + 1:
                logit_rows.append((k + j, k + j + 1))
        k += len(w.turns)
    here = torch.tensor([a for a, _ in logit_rows], dtype=torch.long, device=q.device)
    nxt = torch.tensor([b if b is not None else a for a, b in logit_rows], dtype=torch.long, device=q.device)
    has_next = torch.tensor([b is not None for _, b in logit_rows], dtype=q.dtype, device=q.device)
    return q[here] - gamma * q[nxt] * has_next, here


def train_inverse_transcripts(demos: Sequence[Any], learner: Sequence[Any], out: Path, config: TrainConfig,
                              header: dict[str, Any], targets: list[Target], progress: bool,
                              echo: Callable[[str], None], stop_after: int | None = None) -> dict[str, Any]:
    """InversePRM on whole episodes: the expert's episodes labelled 1, the learner's 0, every step's
    logit from one forward pass per episode (``inverse_logits``). Held out: the expert-vs-learner
    AUC on the held-out games' steps, and — beside AgentPRM on the same games — the won-vs-lost AUC
    of Q(s, a) on the learner's held-out Monte-Carlo ``targets``, scored as planners score."""
    import dataclasses
    from functools import partial

    import torch

    from mpr.training.transcripts import bucketed, encode_states

    key = lambda e: e.task_id  # noqa: E731
    labelled = [(ep, 1.0) for ep in demos] + [(ep, 0.0) for ep in learner]
    train, held_out = split_by_game(labelled, lambda x: key(x[0]), config.val_fraction)
    if not any(y for _, y in train) or all(y for _, y in train):
        raise MprError("InversePRM needs both expert (--demos) and learner (--rollouts) episodes")
    model, tok = load_model(config.base, "value", config)
    windows, lasts, labels = [], [], []
    for ep, y in train:
        for w in encode_states(ep.states(), partial(encode, tok), config.max_length, TRANSCRIPT_RESERVE,
                               first_trained=ep.prefix):
            windows.append(w)
            lasts.append(ep.num_actions - 1)
            labels.append(y)
    buckets, held = bucketed(windows, config.batch_size * config.max_length)
    echo(f"inverse-prm (transcripts): {len(train)} episodes ({sum(y for _, y in train):.0f} expert) -> "
         f"{len(windows)} sequences; {held}; {len(held_out)} held-out episodes")

    def loss_fn(idx: list[int]) -> tuple[Any, int]:
        chosen = [i for k in idx for i in buckets[k]]
        ws = [windows[i] for i in chosen]
        q = transcript_values(model, ws, tok.pad_token_id)
        logits, here = inverse_logits(q, ws, [lasts[i] for i in chosen], config.gamma)
        step_labels = torch.tensor([labels[i] for i in chosen for _ in windows[i].turns], device=q.device)
        return (torch.nn.functional.binary_cross_entropy_with_logits(logits, step_labels[here]),
                sum(len(w) for w in ws))

    val_games = {key(ep) for ep, _ in held_out}
    val_targets = [t for t in targets if t.state.task_id in val_games]
    return train_and_save(model, tok, out, "inverse-prm", config, header, len(buckets), loss_fn,
                          lambda _saved: inverse_transcript_metrics(str(out), held_out, val_targets, config),
                          {"train_episodes": len(train), "train_sequences": len(windows)},
                          progress, "train inverse-prm (transcripts)", stop_after,
                          fit_config=dataclasses.replace(config, batch_size=1), output="raw",
                          prompt_format="transcript")


def inverse_transcript_metrics(model_dir: str, held_out: Sequence[tuple[Any, float]], targets: list[Target],
                               config: TrainConfig) -> dict[str, Any]:
    """Expert-vs-learner AUC of Q(s, a) on held-out steps, and the won-vs-lost report on ``targets``."""
    from mpr.compose import training_engine
    from mpr.learned.scorer import PRMScorer

    scorer = PRMScorer(training_engine(model_dir, config), "raw", prompt_format="transcript")
    steps = [(st, y) for ep, y in held_out for st in transitions(ep) if st.t >= ep.prefix]
    steps = spread(steps, config.val_examples)
    out: dict[str, Any] = {"val_steps": len(steps)}
    if steps:
        q = scorer.score([st.state for st, _ in steps], [st.action for st, _ in steps])
        out["val_auc_expert_q"] = auc(q, [y > 0 for _, y in steps])
    if targets:
        val = with_alternatives(targets, spread(targets, config.val_examples))
        out.update(rank_report(val, scorer.score([t.state for t in val], [t.action for t in val])))
    return out


def inverse_metrics(model: Any, tok: Any, val: list[Pair], config: TrainConfig) -> dict[str, Any]:
    """Held-out logistic loss and AUCs (classifier logit, and Q(s, a) alone) of expert vs learner."""
    if not val:
        return {"val_pairs": 0}
    q1 = _values(model, tok, [_tokenize(tok, p.state, p.action, config.max_length) for p in val], config.batch_size)
    q2 = _values(model, tok, [_tokenize(tok, p.next_state, p.next_action, config.max_length) for p in val],
                 config.batch_size)
    logits = [a - (0 if p.last else config.gamma * b) for a, b, p in zip(q1, q2, val)]
    loss = sum(math.log1p(math.exp(-abs(z))) + max(z, 0) - z * p.label for z, p in zip(logits, val)) / len(val)
    return {"val_pairs": len(val), "val_loss": loss, "val_auc_expert": auc(logits, [p.label > 0 for p in val]),
            "val_auc_expert_q": auc(q1, [p.label > 0 for p in val])}
