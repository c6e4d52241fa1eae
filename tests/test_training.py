"""Training stages on tiny models: resumable, loadable, and what each stage promises."""

import json
import math

import pytest
from mpr.training.common import auc, load_train_config
from mpr.training.prm import pair_accuracy, train_agentprm, train_inverse, train_value
from mpr.training.targets import Target
from mpr.training.trainer import TrainConfig, batch_indices

from mpr.errors import ConfigError, MprError
from mpr.lm.checkpoints import load_checkpoint


@pytest.fixture(scope="module")
def cfg(tiny_model_dir):
    return TrainConfig(base=str(tiny_model_dir), max_steps=4, batch_size=4, max_length=256, checkpoint_every=1,
                       threads=1, val_examples=8, candidates=3, rounds=1, lr=3e-3)


@pytest.fixture(scope="module")
def prm_dir(cfg, random_rollouts, expert_rollouts, tmp_path_factory):
    out = tmp_path_factory.mktemp("prm") / "prm"
    train_agentprm([str(random_rollouts), str(expert_rollouts)], out, cfg, progress=False, echo=lambda _m: None)
    return out


@pytest.fixture(scope="module")
def sft_dir(cfg, expert_rollouts, tmp_path_factory):
    from mpr.training.policy import train_policy_sft

    out = tmp_path_factory.mktemp("policy") / "pi0"
    train_policy_sft([str(expert_rollouts)], out, cfg, progress=False, echo=lambda _m: None)
    return out


def weights(path):
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def test_batches_are_a_pure_function_of_seed_and_step():
    assert batch_indices(10, 4, 0, 5) == batch_indices(10, 4, 0, 5)
    epoch0 = [i for s in range(3) for i in batch_indices(10, 4, 0, s)]
    assert sorted(epoch0) == list(range(10))  # an epoch covers every example once
    assert batch_indices(10, 4, 0, 3) != batch_indices(10, 4, 1, 3)


def test_killed_training_resumes_to_identical_weights(cfg, prm_dir, random_rollouts, expert_rollouts, tmp_path):
    rollouts = [str(random_rollouts), str(expert_rollouts)]
    out = tmp_path / "prm"
    stopped = train_agentprm(rollouts, out, cfg, progress=False, echo=lambda _m: None, stop_after=2)
    assert stopped == {"stopped_at": 2} and not (out / "mpr-checkpoint.json").exists()
    meta = train_agentprm(rollouts, out, cfg, progress=False, echo=lambda _m: None)
    assert meta["metrics"]["steps"] == 4
    resumed, straight = weights(out), weights(prm_dir)
    assert resumed.keys() == straight.keys()
    assert all((resumed[k] == straight[k]).all() for k in straight)
    # A finished stage is not retrained; other settings in the same dir are refused.
    assert "already trained" in _echo(lambda e: train_agentprm(rollouts, out, cfg, progress=False, echo=e))
    import dataclasses

    with pytest.raises(MprError, match="other settings"):
        train_agentprm(rollouts, out, dataclasses.replace(cfg, lr=1e-4), progress=False, echo=lambda _m: None)


def test_a_setting_added_later_reads_as_its_default_in_saved_headers():
    from mpr.training.common import stage_header
    from mpr.training.trainer import TrainConfig, with_new_defaults

    now = stage_header({"stage": "policy"}, TrainConfig())
    old = {**now, "train": {k: v for k, v in now["train"].items() if k != "lm_weight"}}
    assert with_new_defaults(old) == now  # written before lm_weight existed: it had the default
    changed = stage_header({"stage": "policy"}, TrainConfig(lm_weight=0.5))
    assert with_new_defaults(old) != changed and with_new_defaults(now) == now


def _echo(fn):
    lines = []
    fn(lines.append)
    return "\n".join(lines)


def test_prm_checkpoint_scores_states_in_batches(prm_dir, random_rollouts):
    from mpr.training.rollout import load_rollouts, transitions

    from mpr.learned.scorer import PRMScorer
    from mpr.lm.engine import EngineConfig

    meta = load_checkpoint(prm_dir, "prm").meta
    assert math.isfinite(meta["metrics"]["val_loss"]) and meta["metrics"]["train_tokens_per_second"] > 0
    steps = [st for ep in load_rollouts(random_rollouts) for st in transitions(ep)][:6]
    scorer = PRMScorer.from_checkpoint(str(prm_dir), EngineConfig(threads=1, dtype="fp32", batch_size=4))
    batched = scorer.score([s.state for s in steps], [s.action for s in steps])
    single = [scorer.score([s.state], [s.action])[0] for s in steps]
    assert len(batched) == 6 and all(0 < v < 1 for v in batched)
    assert batched == pytest.approx(single, abs=1e-5)


def test_world_model_trains_and_predicts(cfg, expert_rollouts, random_rollouts, tmp_path):
    from mpr.training.rollout import load_rollouts, transitions
    from mpr.training.world import train_world
    from mpr.worldmodel.llm import LLMWorldModel

    from mpr.lm.engine import EngineConfig

    meta = train_world([str(random_rollouts)], tmp_path / "w", cfg, val_rollouts=(), progress=False,
                       echo=lambda _m: None)
    m = meta["metrics"]
    assert m["val_transitions"] > 0 and 0 <= m["val_exact_match"] <= m["val_facts_match"] + 1e-9 <= 1
    with pytest.raises(MprError, match="shares"):
        train_world([str(random_rollouts)], tmp_path / "w2", cfg, val_rollouts=[str(expert_rollouts)],
                    progress=False, echo=lambda _m: None)
    wm = LLMWorldModel.from_checkpoint(str(tmp_path / "w"), EngineConfig(threads=1, dtype="fp32"))
    steps = [st for ep in load_rollouts(expert_rollouts) for st in transitions(ep)][:3]
    preds = wm.predict([s.state for s in steps], [s.action for s in steps])
    assert len(preds) == 3 and all(isinstance(p, str) and p for p in preds)
    assert wm.predictions == 3


def test_sft_policy_plays_through_eval(sft_dir, games_root):
    from mpr.alfworld.env import EnvConfig
    from mpr.lm.engine import EngineConfig
    from mpr.run.evaluation import EvalConfig, play

    meta = load_checkpoint(sft_dir, "policy").meta
    m = meta["metrics"]
    assert meta["method"] == "sft" and 0 <= m["val_top1_agreement"] <= 1
    by_verb = m["val_top1_by_verb"]  # the overall agreement is the steps-weighted mean of the verbs'
    assert sum(v["steps"] for v in by_verb.values()) == m["val_steps"]
    assert sum(v["top1"] * v["steps"] for v in by_verb.values()) / m["val_steps"] == pytest.approx(
        m["val_top1_agreement"], abs=0.01)
    config = EvalConfig(agent="policy", env=EnvConfig(max_actions=2), model=EngineConfig(threads=1, dtype="fp32"),
                        policy_ckpt=str(sft_dir))
    result = play("valid_seen/" + _first_task("valid_seen"), config, echo=lambda _m: None)
    assert result.num_actions == 2 and result.error is None


def _first_task(split):
    from mpr.alfworld.data import list_tasks

    return list_tasks(split, limit=1)[0].id.split("/", 1)[1]


def test_rft_and_online_dpo_improve_from_the_current_policy(cfg, sft_dir, prm_dir, random_rollouts, tmp_path):
    import dataclasses

    from mpr.training.policy import train_policy_dpo, train_policy_rft

    improve = dataclasses.replace(cfg, base=str(sft_dir), max_steps=2)
    rft = train_policy_rft([str(random_rollouts)], str(prm_dir), tmp_path / "rft", improve, progress=False,
                           echo=lambda _m: None)
    assert rft["method"] == "rft" and (tmp_path / "rft" / "rft-targets.jsonl").exists()
    dpo = train_policy_dpo([str(random_rollouts)], str(prm_dir), tmp_path / "dpo", improve, progress=False,
                           echo=lambda _m: None)
    assert dpo["method"] == "dpo" and dpo["metrics"]["preference_pairs"] > 0
    assert load_checkpoint(tmp_path / "dpo", "policy").kind == "policy"
    with pytest.raises(MprError, match="expected 'policy'"):
        train_policy_rft([str(random_rollouts)], str(prm_dir), tmp_path / "x",
                         dataclasses.replace(cfg, base=str(prm_dir)), progress=False, echo=lambda _m: None)


def test_dpo_loss_prefers_the_chosen_action():
    import torch
    from mpr.training.policy import dpo_loss

    ref = torch.zeros(1)
    better = dpo_loss(torch.tensor([1.0]), torch.tensor([-1.0]), ref, ref, 0.5)
    worse = dpo_loss(torch.tensor([-1.0]), torch.tensor([1.0]), ref, ref, 0.5)
    assert better < math.log(2) < worse
    assert float(dpo_loss(ref, ref, ref, ref, 0.5)) == pytest.approx(math.log(2))


def test_inverse_prm_learns_from_demonstrations_without_rewards(cfg, expert_rollouts, random_rollouts, tmp_path):
    from mpr.training.prm import inverse_pairs
    from mpr.training.rollout import load_rollouts

    from mpr.alfworld.agents import make_policy
    from mpr.learned.scorer import PRMScorer

    policy = make_policy("random", 0)
    next_action = lambda states: [p[0] for p in policy.propose(states, 1)]  # noqa: E731
    pairs = inverse_pairs(load_rollouts(expert_rollouts), load_rollouts(random_rollouts), next_action)
    assert {p.label for p in pairs} == {0.0, 1.0}
    assert all(p.next_action == "" for p in pairs if p.last) and all(p.next_action for p in pairs if not p.last)
    meta = train_inverse([str(expert_rollouts)], [str(random_rollouts)], next_action, "random", tmp_path / "inv",
                         cfg, progress=False, echo=lambda _m: None)
    assert meta["kind"] == "inverse-prm" and meta["output"] == "raw"
    assert PRMScorer.from_checkpoint(str(tmp_path / "inv")).output == "raw"


def test_value_model_shapes_prm_targets(cfg, random_rollouts, expert_rollouts, tmp_path):
    v = train_value([str(random_rollouts)], tmp_path / "v", cfg, progress=False, echo=lambda _m: None)
    assert v["kind"] == "value"
    meta = train_agentprm([str(expert_rollouts)], tmp_path / "shaped", cfg, shaping_ref=str(tmp_path / "v"),
                          progress=False, echo=lambda _m: None)
    assert meta["header"]["shaping_ref"] == str(tmp_path / "v")
    with pytest.raises(MprError, match="expected 'value'"):
        train_agentprm([str(expert_rollouts)], tmp_path / "bad", cfg, shaping_ref=str(tmp_path / "shaped"),
                       progress=False, echo=lambda _m: None)


def test_auc_and_pair_accuracy():
    assert auc([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == 0.75
    assert auc([0.5, 0.5], [True, False]) == 0.5
    assert auc([0.1, 0.2], [True, True]) is None
    from mpr.core import State

    s = State("t", "g", "i")
    targets = [Target(s, "a", 1.0, 1, 1.0), Target(s, "b", 0.0, 1, 0.0), Target(s, "c", 0.0, 1, 0.0)]
    assert pair_accuracy(targets, [0.9, 0.1, 0.95]) == 0.5
    assert pair_accuracy(targets[1:], [0.1, 0.2]) is None


def test_presets_and_unknown_keys():
    tiny = load_train_config("prm", "tiny")
    assert tiny.base == "tiny" and load_train_config("policy", "cpu-small").lora
    assert load_train_config("prm", "tiny", overrides=["lr=5e-4"]).lr == 5e-4
    with pytest.raises(ConfigError, match="unknown key"):
        load_train_config("prm", "tiny", overrides=["learning_rate=1"])
    with pytest.raises(ConfigError, match="unknown preset"):
        load_train_config("prm", "huge")


def test_facts_parse_locations_objects_and_state():
    from mpr.worldmodel.facts import facts_match, parse_facts

    f = parse_facts("You arrive at drawer 1. The drawer 1 is open. In it, you see a cd 2, and a pen 1.")
    assert f == {("location", "drawer 1"), ("open", "drawer 1"), ("seen", "cd 2"), ("seen", "pen 1")}
    assert parse_facts("You arrive at shelf 2. On the shelf 2, you see nothing.") == {("location", "shelf 2")}
    assert parse_facts("You pick up the apple 2 from the countertop 1.") >= {("picked", "apple 2")}
    assert facts_match("You move the mug 1 to the desk 1.", "You move the mug 1 to the desk 1.")
    assert not facts_match("You arrive at desk 1.", "You arrive at desk 2.")
    assert json.dumps(sorted(parse_facts("Nothing happens."))) == '[["nothing", ""]]'


def test_one_iteration_runs_every_stage_and_resumes_as_a_no_op(sft_dir, tiny_model_dir, tmp_path):
    from mpr.training.iterate import IterateConfig, iterate

    config = IterateConfig(policy=str(sft_dir), limit=2, repeats=1, workers=0, reset_half=0.5,
                           overrides=(f"base={tiny_model_dir}", "max_steps=2", "max_length=256", "threads=1",
                                      "val_examples=4"))
    first = _echo(lambda e: iterate(config, tmp_path / "it", progress=False, echo=e))
    assert "[3/3]" in first
    assert load_checkpoint(tmp_path / "it" / "policy", "policy").meta["method"] == "rft"
    record = json.loads((tmp_path / "it" / "iteration.json").read_text())
    assert record["rollouts"]["episodes"] == 2
    again = _echo(lambda e: iterate(config, tmp_path / "it", progress=False, echo=e))
    assert "2 of 2 rollouts already recorded" in again and again.count("already trained") == 2


@pytest.mark.parametrize("head", ["prm", "policy"])
def test_lora_training_saves_a_merged_plain_model(cfg, expert_rollouts, random_rollouts, tmp_path, head):
    import dataclasses

    lora = dataclasses.replace(cfg, lora=True, lora_r=4, max_steps=2)
    if head == "prm":
        train_agentprm([str(random_rollouts)], tmp_path / "m", lora, progress=False, echo=lambda _m: None,
                       stop_after=1)
        meta = train_agentprm([str(random_rollouts)], tmp_path / "m", lora, progress=False, echo=lambda _m: None)
    else:
        from mpr.training.policy import train_policy_sft

        meta = train_policy_sft([str(expert_rollouts)], tmp_path / "m", lora, progress=False, echo=lambda _m: None)
    assert meta["metrics"]["steps"] == 2
    assert not (tmp_path / "m" / "adapter_config.json").exists()
    assert not any("lora" in k for k in weights(tmp_path / "m"))
    from mpr.lm.engine import EngineConfig
    from mpr.lm.hf_engine import HFEngine

    engine = HFEngine(EngineConfig(model=str(tmp_path / "m"), threads=1, dtype="fp32"))
    if head == "prm":
        assert len(engine.value(["Rate the last action.\n> look"])) == 1
    else:
        assert len(engine.score(["hello"], [[" look"]])[0]) == 1


def test_held_out_subsets_spread_over_the_whole_set():
    from mpr.training.common import spread

    assert spread(list(range(10)), 20) == list(range(10))
    assert spread(list(range(10)), 5) == [0, 2, 4, 6, 8]
    labels = [1] * 50 + [0] * 50  # e.g. expert pairs first, learner pairs after
    assert set(spread(labels, 10)) == {0, 1}


def test_transcript_prm_is_read_where_planners_score_it(cfg, random_rollouts, expert_rollouts, tmp_path):
    """AgentPRM on whole episodes: one value per policy action, at its last token; the scorer
    (transcript cut, siblings packed under tree attention) reads the same numbers."""
    import dataclasses
    from functools import partial

    import torch
    from mpr.training.common import encode, load_model
    from mpr.training.prm import transcript_value_data, transcript_values
    from mpr.training.rollout import load_rollouts
    from mpr.training.targets import mc_targets

    from mpr.compose import training_engine
    from mpr.learned.scorer import PRMScorer

    config = dataclasses.replace(cfg, prompt_format="transcript")
    rollouts = [str(random_rollouts), str(expert_rollouts)]
    out = tmp_path / "tprm"
    meta = train_agentprm(rollouts, out, config, progress=False, echo=lambda _m: None)
    assert meta["prompt_format"] == "transcript" and meta["metrics"]["steps"] == 4
    assert meta["metrics"]["train_steps"] > 0 and meta["metrics"]["val_targets"] > 0
    assert PRMScorer.from_checkpoint(str(out)).prompt_format == "transcript"

    episodes = load_rollouts(*rollouts)
    targets = mc_targets(episodes, config.gamma)
    model, tok = load_model(str(out), "value", config)
    model.eval()
    trained, states, actions, windows = [], [], [], 0
    for ep in episodes:
        ws, ys = transcript_value_data([ep], targets, partial(encode, tok), config.max_length)
        assert [len(y) for y in ys] == [len(w.action_ends) for w in ws]
        windows += len(ws)
        with torch.no_grad():
            trained += transcript_values(model, ws, tok.pad_token_id).tolist()
        ep_states = ep.states()
        for w in ws:
            states += [ep_states[t] for t in w.turns]
            actions += [ep_states[-1].turns[t].action for t in w.turns]
    assert windows > len(episodes)  # some episodes were cut into windows: the cut is checked too
    served = PRMScorer(training_engine(str(out), config), "raw", prompt_format="transcript").score(states, actions)
    assert len(served) == len(trained) > 20
    assert max(abs(a - b) for a, b in zip(served, trained)) < 1e-4


def test_transcript_world_model_predicts_from_the_ids_it_was_trained_on(cfg, random_rollouts, expert_rollouts,
                                                                         tmp_path):
    """Whole-episode world model: the prompt it is served (the state's transcript cut by the world
    model's rule, then the action's segment) is, id for id, the training window up to where the
    observation starts; predictions are one line each; held-out metrics split by kind."""
    import dataclasses
    from functools import partial

    from mpr.training.common import encode
    from mpr.training.rollout import load_rollouts, transitions
    from mpr.training.transcripts import encode_states
    from mpr.training.world import train_world, world_targets
    from mpr.worldmodel.facts import observation_kind
    from mpr.worldmodel.llm import TRANSCRIPT_WORLD_RESERVE, LLMWorldModel

    from mpr.compose import training_engine
    from mpr.lm.prompts import action_segment, fitted_transcript

    config = dataclasses.replace(cfg, prompt_format="transcript", max_length=384)
    out = tmp_path / "tw"
    meta = train_world([str(random_rollouts), str(expert_rollouts)], out, config, progress=False, echo=lambda _m: None)
    m = meta["metrics"]
    assert meta["prompt_format"] == "transcript" and m["steps"] == 4
    assert sum(k["transitions"] for k in m["val_by_kind"].values()) == m["val_transitions"] > 0

    engine = training_engine(str(out), config)
    enc = partial(encode, engine.tokenizer)
    checked = cut = 0
    for ep in load_rollouts(str(random_rollouts)):
        states = ep.states()
        for w in encode_states(states, enc, config.max_length, TRANSCRIPT_WORLD_RESERVE):
            targets = world_targets(w)
            assert sum(targets) > sum(w.observation_mask)  # + the token that ends each observation
            for t in w.turns:
                prompt = fitted_transcript(states[t], engine, TRANSCRIPT_WORLD_RESERVE) + [action_segment(states[-1].turns[t].action)]
                ids = [i for seg in prompt for i in enc(seg)]
                assert tuple(ids) == w.ids[: len(ids)] and w.observation_mask[len(ids)], (ep.task_id, t)
                checked += 1
                cut += "omitted" in prompt[1] or prompt[1].startswith("[")
    assert checked > 20 and cut > 0  # cut prompts are checked too
    wm = LLMWorldModel.from_checkpoint(str(out))
    assert wm.prompt_format == "transcript"
    steps = [st for ep in load_rollouts(str(expert_rollouts)) for st in transitions(ep)][:4]
    preds = wm.predict([s.state for s in steps], [s.action for s in steps])
    assert len(preds) == 4 and all(p and "\n" not in p for p in preds)
    assert {observation_kind(s.state, s.action) for s in steps} <= {"determined", "unseen"}


def test_transcript_rft_is_dagger_with_the_prm_as_teacher(cfg, expert_rollouts, random_rollouts, tmp_path):
    import dataclasses

    from mpr.training.policy import prm_labelled, train_policy_rft, train_policy_sft
    from mpr.training.rollout import load_rollouts

    config = dataclasses.replace(cfg, prompt_format="transcript")
    quiet = dict(progress=False, echo=lambda _m: None)
    train_policy_sft([str(expert_rollouts)], tmp_path / "pi0", config, **quiet)
    train_agentprm([str(random_rollouts)], tmp_path / "prm", config, **quiet)
    episodes = load_rollouts(str(random_rollouts))
    s0 = episodes[0].states()
    labelled = prm_labelled(episodes, [(s0[1], "look", 0.9)])
    assert labelled[0].states()[1].expert_action == "look" and labelled[0].states()[0].expert_action is None
    meta = train_policy_rft([str(random_rollouts)], str(tmp_path / "prm"), tmp_path / "pi1",
                            dataclasses.replace(config, base=str(tmp_path / "pi0")), **quiet)
    assert meta["method"] == "rft" and meta["prompt_format"] == "transcript" and meta["metrics"]["steps"] == 4
    assert meta["metrics"]["val_steps"] > 0  # agreement with the PRM-best actions of held-out games
    with pytest.raises(MprError, match="set prompt_format to match"):
        train_policy_rft([str(random_rollouts)], str(tmp_path / "prm"), tmp_path / "pi1b",
                         dataclasses.replace(cfg, base=str(tmp_path / "pi0")), **quiet)


def test_inverse_logits_pair_each_step_with_the_episodes_next_one():
    """Q(s_t,a_t) − γ·Q(s_t+1,a_t+1) within a window; the episode's last step alone; a step whose
    successor was cut into the next window has no logit."""
    import torch
    from mpr.training.prm import inverse_logits
    from mpr.training.transcripts import EncodedEpisode

    def window(turns):
        return EncodedEpisode((0,) * 3, (False,) * 3, (False,) * 3, tuple(range(len(turns))), tuple(turns))

    q = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])  # window A: turns 0, 1, 2 — window B: turns 3, 4
    logits, here = inverse_logits(q, [window([0, 1, 2]), window([3, 4])], [4, 4], 0.5)
    assert here.tolist() == [0, 1, 3, 4]  # turn 2's successor (turn 3) is in the next window
    assert logits.tolist() == pytest.approx([1 - 0.5 * 2, 2 - 0.5 * 3, 4 - 0.5 * 5, 5])


def test_transcript_inverse_prm_trains_on_whole_episodes_and_reports_beside_agentprm(
        cfg, expert_rollouts, random_rollouts, tmp_path):
    import dataclasses

    from mpr.learned.scorer import PRMScorer

    config = dataclasses.replace(cfg, prompt_format="transcript")
    meta = train_inverse([str(expert_rollouts)], [str(random_rollouts)], None, None, tmp_path / "tinv", config,
                         progress=False, echo=lambda _m: None)
    assert meta["kind"] == "inverse-prm" and meta["output"] == "raw" and meta["prompt_format"] == "transcript"
    m = meta["metrics"]
    assert m["steps"] == 4 and m["train_episodes"] > 0 and m["val_steps"] > 0
    assert "val_auc_won" in m and "val_auc_expert_q" in m  # side by side with AgentPRM's report
    scorer = PRMScorer.from_checkpoint(str(tmp_path / "tinv"))
    assert scorer.prompt_format == "transcript" and scorer.output == "raw"
