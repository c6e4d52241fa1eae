"""``mpr train policy``: π₀ by SFT on demonstrations, and improvement against a PRM (stage 3).

* SFT (``method="sft"``): every (state, action) of the demonstrations; the prompt is the policy's
  "sample"-mode prompt and the target ``REASON: choose the best admissible action.\\nACTION: <a>``
  (:func:`mpr.lm.prompts.policy_target`), so the trained model serves both policy modes.
* Rejection-sampling fine-tuning (``method="rft"``): for every state of the learner's rollouts, the
  current policy proposes ``candidates`` actions (plus the one it took); the PRM scores them in one
  batched call; SFT on the PRM-best action, starting from the current policy.
* Online DPO (``method="dpo"``): ``rounds`` rounds; each round draws states from the rollouts, the
  *current* policy samples ``candidates`` actions per state, the PRM picks the best and worst as
  (chosen, rejected), and the policy takes DPO steps with the previous policy as the frozen
  reference (the KL anchor, strength ``dpo_beta``). Each round is resumable on its own.

Held-out metric: top-1 agreement of the policy's ranking of admissible actions with the demonstrated
(SFT) or PRM-best (RFT/DPO) action on held-out games.
"""

from __future__ import annotations

import copy
import json
import math
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mpr.training.common import (
    finish_checkpoint,
    finished,
    load_model,
    sample_games,
    save_model,
    split_by_game,
    spread,
    train_and_save,
)
from mpr.training.rollout import load_rollouts, transitions
from mpr.training.sft import example, sft_loss, target_logprobs
from mpr.training.trainer import STATE_FILE, TrainConfig, claim_checkpoint_dir, fit

from mpr.compose import ranking_policy, sampling_policy, training_scorer
from mpr.core import State
from mpr.errors import MprError
from mpr.learned.scorer import score_candidates
from mpr.owned import atomic_write_text

METHODS = ("sft", "rft", "dpo")


def demo_steps(episodes: Sequence[Any]) -> list[tuple[State, str]]:
    """(state, action) of every policy step, merged by (state, action), states with admissible lists;
    the action is the expert's label where the episode carries labels (DAgger)."""
    seen: dict[tuple[str, str], tuple[State, str]] = {}
    for ep in episodes:
        for st in transitions(ep):
            action = st.state.expert_action if ep.expert_actions else st.action
            if st.t >= ep.prefix and st.state.admissible and action is not None:
                seen.setdefault((st.state.digest(), action), (st.state, action))
    return list(seen.values())


def rollout_states(episodes: Sequence[Any]) -> list[State]:
    """Distinct decision states of the rollouts (with admissible lists), first-seen order."""
    seen: dict[str, State] = {}
    for ep in episodes:
        for st in transitions(ep):
            if st.t >= ep.prefix and st.state.admissible:
                seen.setdefault(st.state.digest(), st.state)
    return list(seen.values())


def _prompt_fn(tok: Any, config: TrainConfig) -> Callable[[State, str], tuple[list[int], list[int]]]:
    from mpr.lm.prompts import ChatFormat, policy_prompt, policy_target

    chat = ChatFormat.from_tokenizer(tok)
    count = lambda text: len(tok(text, add_special_tokens=False)["input_ids"])

    def make(state: State, action: str) -> tuple[list[int], list[int]]:
        target = policy_target(action)
        budget = config.max_length - count(target) - 1
        return example(tok, policy_prompt(state, chat, "sample", count, budget), target)

    return make


def _sft(steps: list[tuple[State, str]], out: Path, config: TrainConfig, header: dict[str, Any], progress: bool,
         echo: Callable[[str], None], stop_after: int | None, desc: str) -> dict[str, Any]:
    train, val = split_by_game(steps, lambda x: x[0].task_id, config.val_fraction)
    if not train:
        raise MprError("no training steps (every game is held out, or the rollouts have no admissible lists)")
    model, tok = load_model(config.base, "causal", config)
    make = _prompt_fn(tok, config)
    examples = [make(s, a) for s, a in train]
    echo(f"policy ({header['method']}): {len(train)} (state, action) training examples from {len({s.task_id for s, _ in train})} games, "
         f"{len(val)} held out")
    return train_and_save(
        model, tok, out, "policy", config, header, len(examples),
        lambda idx: sft_loss(model, [examples[i] for i in idx], tok.pad_token_id),
        lambda _saved: ranking_accuracy(str(out), spread(val, config.val_examples), config), {"train_examples": len(train)},
        progress, desc, stop_after, method=header["method"])


def ranking_accuracy(model_dir: str, val: Sequence[tuple[State, str]], config: TrainConfig) -> dict[str, Any]:
    """How often the policy's top-ranked admissible action is the reference action (held-out games)."""
    if not val:
        return {"val_steps": 0}
    policy = ranking_policy(model_dir, config)
    top = policy.propose([s for s, _ in val], 1)
    hits: dict[str, list[bool]] = {}
    for t, (_, a) in zip(top, val):
        hits.setdefault(a.split(" ", 1)[0], []).append(t[0] == a)
    # by the reference action's verb: the overall figure hides the rare decisions that win games
    # (`take` is ~1 in 13 expert actions), which a policy can miss while agreeing on most `go to`s
    by_verb = {v: {"steps": len(h), "top1": round(sum(h) / len(h), 3)} for v, h in sorted(hits.items())}
    return {"val_steps": len(val), "val_top1_agreement": sum(map(sum, hits.values())) / len(val),
            "val_top1_by_verb": by_verb}


def train_policy_sft(demos: Sequence[str], out: Path, config: TrainConfig, progress: bool = True,
                     echo: Callable[[str], None] = print, stop_after: int | None = None) -> dict[str, Any]:
    header = {"stage": "policy", "method": "sft", "demos": [str(Path(d).resolve()) for d in demos]}
    done = finished(out, "policy", header, config, echo)
    if done:
        return done
    episodes = load_rollouts(*demos)
    labelled = sum(1 for ep in episodes if ep.expert_actions)
    if labelled:
        echo(f"policy (sft): {labelled} episodes carry the expert's labels (DAgger): trained toward them")
    if config.only_won:
        episodes = [ep for ep in episodes if ep.won or ep.expert_actions]
        echo(f"policy (sft): {len(episodes)} won or labelled episodes kept (only_won)")
    if config.max_games:
        episodes = sample_games(episodes, lambda e: e.task_id, config.max_games, config.val_fraction)
        echo(f"policy (sft): {len(episodes)} demonstrations of at most {config.max_games} training games "
             "and the held-out games (max_games)")
    if config.prompt_format == "transcript":
        return _sft_transcripts(episodes, out, config, header, progress, echo, stop_after)
    return _sft(demo_steps(episodes), out, config, header, progress, echo, stop_after, "train policy (sft)")


def _sft_transcripts(episodes: Sequence[Any], out: Path, config: TrainConfig, header: dict[str, Any],
                     progress: bool, echo: Callable[[str], None], stop_after: int | None) -> dict[str, Any]:
    """Whole-episode SFT: every demonstration becomes one sequence (windows when it is longer than
    ``max_length``) whose action tokens carry the loss; one step is a length bucket of at most
    ``batch_size x max_length`` tokens."""
    import dataclasses

    from functools import partial

    from mpr.training.common import encode
    from mpr.training.transcripts import bucket, decision_mask, decision_offset, encode_episodes, padding_share

    train, val = split_by_game(list(episodes), lambda e: e.task_id, config.val_fraction)
    if not train:
        raise MprError("no training episodes (every game is held out)")
    model, tok = load_model(config.base, "causal", config)
    windows = encode_episodes(train, partial(encode, tok), config.max_length, relabel=True,
                              max_branches=config.dagger_branches)
    lengths = [len(w) for w in windows]
    buckets = bucket(lengths, config.batch_size * config.max_length)
    actions = sum(len(w.turns) for w in windows)
    echo(f"policy (sft, transcripts): {len(train)} episodes -> {len(windows)} sequences, {actions} actions, "
         f"{sum(lengths):,} tokens in {len(buckets)} buckets ({100 * padding_share(lengths, buckets):.1f}% padding); "
         f"{len(val)} episodes held out")
    step_config = dataclasses.replace(config, batch_size=1)  # one bucket per optimizer step
    val_steps = spread(demo_steps(val), config.val_examples)
    offset = decision_offset(partial(encode, tok))
    decisions = lambda w: decision_mask(w, offset)
    return train_and_save(
        model, tok, out, "policy", config, header, len(buckets),
        lambda idx: transcript_loss(model, [windows[i] for k in idx for i in buckets[k]], tok.pad_token_id,
                                    config.lm_weight, decision_weight=config.decision_weight,
                                    decisions=decisions),
        lambda _saved: ranking_accuracy(str(out), val_steps, config),
        {"train_examples": actions, "train_sequences": len(windows), "train_tokens": sum(lengths),
         "padding_share": padding_share(lengths, buckets)},
        progress, "train policy (sft, transcripts)", stop_after, fit_config=step_config, method=header["method"],
        prompt_format="transcript")


def transcript_loss(model: Any, windows: Sequence[Any], pad: int, lm_weight: float = 0.0,
                    targets: Callable[[Any], Sequence[bool]] | None = None, decision_weight: float = 0.0,
                    decisions: Callable[[Any], Sequence[bool]] | None = None) -> tuple[Any, int]:
    """Mean cross-entropy over the target tokens of a batch of encoded episodes — ``targets(w)``
    marks them, the action tokens by default — plus ``lm_weight`` times the mean over their other
    tokens (each window's first token has no target), plus ``decision_weight`` times the mean over
    the tokens ``decisions(w)`` marks (each action's verb, ``transcripts.decision_mask``); and the
    batch's tokens. Both weights 0: the target loss alone."""
    import torch

    from mpr.training.common import pad_right

    mark = targets or (lambda w: w.action_mask)
    ids, mask = pad_right([w.ids for w in windows], pad, device=model.device)
    acts, _ = pad_right([[int(a) for a in mark(w)] for w in windows], 0, device=model.device)
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
    act = acts[:, 1:].bool()
    loss = nll[act].mean()
    if lm_weight:
        context = mask[:, 1:].bool() & ~act
        loss = loss + lm_weight * nll[context].mean()
    if decision_weight:
        if decisions is None:
            raise ValueError("decision_weight needs the decisions mask")
        dec, _ = pad_right([[int(d) for d in decisions(w)] for w in windows], 0, device=model.device)
        picked = dec[:, 1:].bool()
        if picked.any():
            loss = loss + decision_weight * nll[picked].mean()
    return loss, int(mask.sum())


def _require_policy_base(config: TrainConfig, transcripts: bool = False) -> str:
    """The policy checkpoint RFT / DPO improve. DPO trains the chat format's (state, action) rows;
    RFT (``transcripts``) also improves a transcript policy, on whole episodes."""
    from mpr.compose import prompt_format_of
    from mpr.lm.checkpoints import load_checkpoint

    base = str(load_checkpoint(config.base, "policy", flag="policy improvement base (--init)").path)
    formats = {config.prompt_format, prompt_format_of(base)}
    if len(formats) > 1:
        raise MprError(f"--init {base} is a {prompt_format_of(base)}-format policy; set prompt_format to match it")
    if formats != {"chat"} and not transcripts:
        raise MprError("dpo improves chat-format policies; improve a transcript policy with --rft")
    return base


def prm_best_actions(states: list[State], policy: Any, scorer: Any, n: int, taken: dict[str, str] | None = None
                     ) -> list[tuple[State, str, float]]:
    """For every state: the PRM-best of the policy's ``n`` proposals (plus the action taken in the
    rollout). One propose call and one score call for all states."""
    proposals = policy.propose(states, n)
    cands = []
    for s, props in zip(states, proposals):
        extra = [taken[s.digest()]] if taken and s.digest() in taken else []
        cands.append(list(dict.fromkeys(props + extra)))
    best = []
    for s, cs, sc in zip(states, cands, score_candidates(scorer, states, cands)):
        k = max(range(len(cs)), key=lambda i: sc[i])
        best.append((s, cs[k], sc[k]))
    return best


def train_policy_rft(rollouts: Sequence[str], prm: str, out: Path, config: TrainConfig, progress: bool = True,
                     echo: Callable[[str], None] = print, stop_after: int | None = None) -> dict[str, Any]:
    base = _require_policy_base(config, transcripts=True)
    header = {"stage": "policy", "method": "rft", "rollouts": [str(Path(r).resolve()) for r in rollouts],
              "prm": str(Path(prm).resolve()), "init": base}
    done = finished(out, "policy", header, config, echo)
    if done:
        return done
    episodes = load_rollouts(*rollouts)
    taken = {st.state.digest(): st.action for ep in episodes for st in transitions(ep)}
    states = rollout_states(episodes)
    data_file = out / "rft-targets.jsonl"
    if data_file.exists():  # computed before a kill: reuse, so a resumed run trains on the same data
        rows = [json.loads(line) for line in data_file.read_text().splitlines()]
        by_digest = {s.digest(): s for s in states}
        best = [(by_digest[r["state"]], r["action"], r["score"]) for r in rows]
    else:
        echo(f"rft: proposing {config.candidates} actions for {len(states)} states and scoring them with the PRM")
        best = prm_best_actions(states, sampling_policy(base, config, config.seed), training_scorer(prm, config),
                                config.candidates, taken)
        claim_checkpoint_dir(out)
        atomic_write_text(data_file, "".join(json.dumps({"state": s.digest(), "action": a, "score": v}) + "\n"
                                             for s, a, v in best))
    changed = sum(a != taken.get(s.digest()) for s, a, _ in best)
    echo(f"rft: PRM-best action differs from the rollout's action in {changed} of {len(best)} states")
    if config.prompt_format == "transcript":
        return _sft_transcripts(prm_labelled(episodes, best), out, config, header, progress, echo, stop_after)
    return _sft([(s, a) for s, a, _ in best], out, config, header, progress, echo, stop_after, "train policy (rft)")


def prm_labelled(episodes: Sequence[Any], best: Sequence[tuple[State, str, float]]) -> list[Any]:
    """The rollouts with the PRM-best action as each state's label (``expert_actions``): transcript
    RFT is then DAgger with the PRM as the teacher (``training.transcripts.encode_relabeled``: the
    rollout's own actions where the PRM agrees, a branch to its choice where it does not)."""
    import dataclasses

    label = {s.digest(): a for s, a, _ in best}
    return [dataclasses.replace(ep, expert_actions=tuple(label.get(s.digest()) for s in ep.states()))
            for ep in episodes]


# -- online DPO ------------------------------------------------------------------------------


def dpo_loss(pi_c: Any, pi_r: Any, ref_c: Any, ref_r: Any, beta: float) -> Any:
    """−log σ(β·[(log π(c) − log π_ref(c)) − (log π(r) − log π_ref(r))]), averaged."""
    import torch

    return -torch.nn.functional.logsigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r))).mean()


def _distinct_candidates(policy: Any, states: list[State], n: int, rng: random.Random) -> list[list[str]]:
    """``min(n, #admissible)`` distinct actions per state, drawn without replacement from the current
    policy's softmax over admissible actions (one batched ranking call)."""
    out = []
    for ranked in policy.rank(states):
        pool = [(a, v) for a, v in ranked]
        chosen: list[str] = []
        while pool and len(chosen) < n:
            top = max(v for _, v in pool)
            k = rng.choices(range(len(pool)), weights=[math.exp(v - top) for _, v in pool])[0]
            chosen.append(pool.pop(k)[0])
        out.append(chosen)
    return out


def train_policy_dpo(rollouts: Sequence[str], prm: str, out: Path, config: TrainConfig, progress: bool = True,
                     echo: Callable[[str], None] = print, stop_after: int | None = None) -> dict[str, Any]:
    import torch

    base = _require_policy_base(config)
    header = {"stage": "policy", "method": "dpo", "rollouts": [str(Path(r).resolve()) for r in rollouts],
              "prm": str(Path(prm).resolve()), "init": base}
    done = finished(out, "policy", header, config, echo)
    if done:
        return done
    states = rollout_states(load_rollouts(*rollouts))
    train_states, val_states = split_by_game(states, lambda s: s.task_id, config.val_fraction)
    model, tok = load_model(base, "causal", config)
    reference = copy.deepcopy(model).eval()  # π_prev: the KL anchor
    for p in reference.parameters():
        p.requires_grad_(False)
    make = _prompt_fn(tok, config)
    scorer = training_scorer(prm, config)
    per_round = min(len(train_states), config.batch_size * max(1, config.max_steps or 4))
    pairs_total = 0
    for r in range(config.rounds):
        round_dir = claim_checkpoint_dir(out) / f"dpo-round-{r}"
        marker = round_dir / "done.json"
        if marker.exists():  # finished before a kill: restore its weights and move on
            state = torch.load(round_dir / STATE_FILE, weights_only=False, map_location="cpu")
            model.load_state_dict(state["model"], strict=False)
            pairs_total += json.loads(marker.read_text())["pairs"]
            continue
        rng = random.Random(config.seed * 1009 + r)
        batch = rng.sample(train_states, per_round)
        pairs = _preference_pairs(model, base, config, batch, scorer, make, config.seed * 1009 + r, rng)
        if not pairs:
            echo(f"dpo round {r}: the PRM scored every candidate pair equally; no update")
            round_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(marker, json.dumps({"pairs": 0}))
            continue
        loss_fn = _dpo_loss_fn(model, reference, pairs, tok.pad_token_id, config.dpo_beta)
        round_cfg = _round_config(config, len(pairs))
        result = fit(model, len(pairs), loss_fn, round_cfg, round_dir, {**header, "round": r}, progress,
                     f"dpo round {r + 1}/{config.rounds}", stop_after)
        if result.steps < round_cfg.total_steps(len(pairs)):
            return {"stopped_at_round": r}
        # The round's state file holds its final weights; the marker says the round is complete.
        atomic_write_text(marker, json.dumps({"pairs": len(pairs), "loss": result.final_loss}))
        pairs_total += len(pairs)
        echo(f"dpo round {r + 1}: {len(pairs)} preference pairs, final loss {result.final_loss:.4f}")
    save_model(model, tok, out, config)
    val = prm_best_actions(spread(val_states, config.val_examples), sampling_policy(base, config, config.seed), scorer,
                           config.candidates) if val_states else []
    metrics = ranking_accuracy(str(out), [(s, a) for s, a, _ in val], config)
    metrics.update(preference_pairs=pairs_total, rounds=config.rounds)
    return finish_checkpoint(out, "policy", config, header, metrics=metrics, method="dpo")


def _preference_pairs(model: Any, base: str, config: TrainConfig, batch: list[State], scorer: Any, make: Any,
                      seed: int, rng: random.Random) -> list[tuple[Any, Any]]:
    """(chosen, rejected) encodings per state: the PRM's best and worst of the live policy's distinct
    candidates (states whose candidates all score alike give no pair)."""
    model.eval()
    cands = _distinct_candidates(sampling_policy(base, config, seed, live_model=model), batch, config.candidates, rng)
    pairs = []
    for s, cs, sc in zip(batch, cands, score_candidates(scorer, batch, cands)):
        hi, lo = max(range(len(cs)), key=lambda i: sc[i]), min(range(len(cs)), key=lambda i: sc[i])
        if len(cs) > 1 and sc[hi] - sc[lo] > 1e-6:
            pairs.append((make(s, cs[hi]), make(s, cs[lo])))
    return pairs


def _dpo_loss_fn(model: Any, reference: Any, pairs: list[tuple[Any, Any]], pad_id: int,
                 beta: float) -> Callable[[list[int]], tuple[Any, int]]:
    """The DPO loss over a batch of pair indices, against the frozen reference's log-probs."""
    import torch

    with torch.no_grad():
        ref_c = target_logprobs(reference, [c for c, _ in pairs], pad_id)
        ref_r = target_logprobs(reference, [rj for _, rj in pairs], pad_id)

    def loss_fn(idx: list[int]) -> tuple[Any, int]:
        pi = target_logprobs(model, [pairs[i][0] for i in idx] + [pairs[i][1] for i in idx], pad_id)
        n_tok = sum(len(p) + len(t) for i in idx for p, t in pairs[i])
        return dpo_loss(pi[: len(idx)], pi[len(idx):], ref_c[idx], ref_r[idx], beta), n_tok

    return loss_fn


def _round_config(config: TrainConfig, num_pairs: int) -> TrainConfig:
    import dataclasses

    return dataclasses.replace(config, epochs=1.0, max_steps=0, warmup_steps=0,
                               checkpoint_every=max(1, math.ceil(num_pairs / config.batch_size)))
