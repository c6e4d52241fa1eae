"""The ``mpr`` command line. Commands only parse flags and call library functions.

Errors a user can cause are printed as one ``error: ...`` line with exit code 2;
heavy libraries are imported inside commands so ``mpr --help`` is instant.
"""

from __future__ import annotations

import functools
import logging
import sys
from typing import Any

import click

from mpr.errors import MprError
from mpr.lm.engine import BACKENDS, DTYPES
from mpr.planners.config import PLANNERS


INTERRUPTED = "\ninterrupted: finished episodes are saved; rerun the same command to resume"


class _Group(click.Group):
    """Turns MprError and click's own usage errors into one clear line, Ctrl-C into a resumable note."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False  # click's errors come here instead of its 3-line usage text
        try:
            code = super().main(*args, **kwargs)
        except click.exceptions.NoArgsIsHelpError as exc:  # `mpr` alone: the help, as click prints it
            click.echo(exc.ctx.get_help() if exc.ctx else str(exc), err=True)
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx else "mpr"
            click.echo(f"error: {' '.join(exc.format_message().split())} (see `{where} --help`)", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"error: {' '.join(exc.format_message().split())}", err=True)
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            click.echo(INTERRUPTED, err=True)
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MprError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo(INTERRUPTED, err=True)
            ctx.exit(130)


@click.group(cls=_Group)
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def main(verbose: int) -> None:
    """mpr: model-predictive planning for LLM agents on ALFWorld."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


# -- data -------------------------------------------------------------------------------


@main.group()
def data() -> None:
    """Install and inspect the ALFWorld game files."""


@data.command("prepare")
@click.option("--from", "source", type=click.Path(), default=None, envvar="MPR_ALFWORLD_ARCHIVE",
              help="The games archive (alfworld-json_2.1.1-games.tar.xz) or a dir holding json_2.1.1/ "
                   "[env: MPR_ALFWORLD_ARCHIVE]. Without it, ALFWorld's own downloader is used (needs internet).")
@click.option("--data-dir", type=click.Path(), default=None,
              help="Where to install (default: $ALFWORLD_DATA or ~/.cache/alfworld).")
def data_prepare(source: str | None, data_dir: str | None) -> None:
    """Install the json_2.1.1 games, verify split counts, add what the expert needs. Idempotent."""
    from mpr.alfworld import data as mdata

    counts = mdata.prepare(source, data_dir, log=click.echo)
    root = mdata.games_root(data_dir)
    click.echo(f"ready: {root}  " + "  ".join(f"{s}={n}" for s, n in counts.items()))


@main.command("tasks")
@click.option("--split", default="valid_unseen", show_default=True)
@click.option("--task-type", default=None)
@click.option("--limit", type=int, default=None)
@click.option("--data-dir", type=click.Path(), default=None)
def tasks_cmd(split: str, task_type: str | None, limit: int | None, data_dir: str | None) -> None:
    """List task ids of a split (what --task accepts)."""
    from mpr.alfworld.data import list_tasks

    for t in list_tasks(split, data_dir, task_type, limit):
        click.echo(t.id)


# -- episodes ---------------------------------------------------------------------------

_AGENT_HELP = ("walkthrough (replays the game's solution), expert (ALFWorld's handcoded expert), random, "
               "llm (a language-model policy, see --model), policy (a trained policy, --policy CKPT) "
               "or prm (the admissible action a trained PRM scores highest, --prm CKPT); or a planner name "
               "(best-of-n, beam, mcts: shorthand for --planner NAME with the policy proposing). "
               "Default: policy — --policy CKPT, else the default policy shipped with mpr.")


def model_options(fn: Any) -> Any:
    """Flags that choose and run the LLM policy's model (used by eval and plan)."""
    options = [
        click.option("--model", default="default", show_default=True,
                     help="default (SmolLM2-135M-Instruct), tiny, a local HF model dir, or a hub id."),
        click.option("--policy-mode", type=click.Choice(["auto", "score", "score-sample", "sample"]), default="auto",
                     show_default=True, help="score: rank admissible actions by log-prob (top-N); score-sample: "
                     "draw from softmax(log-prob/T); sample: generate and parse REASON/ACTION; auto: "
                     "score-sample for best-of-n (N draws), score otherwise."),
        click.option("--rank-by", type=click.Choice(["auto", "action", "prefix"]), default="auto",
                     show_default=True,
                     help="score mode: order admissible actions by their own log-prob (action) or word by "
                          "word by the probability of their prefix (prefix; see mpr.learned.policy); "
                          "auto: prefix for transcript policies, action for chat prompts."),
        click.option("--backend", type=click.Choice(BACKENDS), default="hf", show_default=True),
        click.option("--dtype", type=click.Choice(DTYPES), default="auto", show_default=True),
        click.option("--threads", type=int, default=0, help="torch threads (0: $MPR_THREADS or the core count)."),
        click.option("--batch-size", type=int, default=16, show_default=True),
        click.option("--policy", "policy_ckpt", type=click.Path(), default=None,
                     help="A policy checkpoint (`mpr train policy`) for --agent policy and the planners "
                          "[the shipped default policy]."),
        click.option("--prm", type=click.Path(), default=None,
                     help="A PRM checkpoint (`mpr train prm`): for --agent prm, and the planners' scorer "
                          "(default: the base model as a zero-shot judge)."),
        click.option("--world", type=click.Path(), default=None,
                     help="A world-model checkpoint (`mpr train world`) for beam/mcts (default: the base model "
                          "zero-shot); with greedy, its prediction is printed beside every real observation."),
        click.option("--planner", type=click.Choice(PLANNERS), default="greedy",
                     show_default=True, help="How each real step is decided."),
        click.option("--oracle-world", is_flag=True,
                     help="Simulate with the real game instead of a world model (an upper bound for ablations)."),
        click.option("--no-cache", is_flag=True, help="Do not memoize predictions/scores on (state, action)."),
        click.option("--n", type=int, default=None, help="best-of-n: proposals per step [8]."),
        click.option("--width", type=int, default=None, help="beam: paths kept per depth [4]."),
        click.option("--depth", type=int, default=None, help="beam: actions per path [3]."),
        click.option("--candidates", type=int, default=None, help="beam/mcts: proposals per node [8]."),
        click.option("--aggregate", type=click.Choice(["last", "min", "mean", "discounted"]), default=None,
                     help="beam: how a path's step scores combine [last]."),
        click.option("--simulations", type=int, default=None, help="mcts: leaf walks per step [32]."),
        click.option("--leaves-per-iter", type=int, default=None, help="mcts: walks batched per iteration [4]."),
        click.option("--c-puct", type=float, default=None, help="mcts: exploration constant [1.0]."),
        click.option("--max-depth", type=int, default=None, help="mcts: deepest expanded node [5]."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


_PLANNER_FLAGS = ("n", "width", "depth", "candidates", "aggregate", "simulations", "leaves_per_iter", "c_puct",
                  "max_depth")


def _planner_config(planner: str, oracle_world: bool, no_cache: bool, **flags: Any) -> Any:
    from mpr.planners.config import PlannerConfig, with_overrides

    config = PlannerConfig(name=planner, world="oracle" if oracle_world else "learned", cache=not no_cache)
    return with_overrides(config, **{k: flags[k] for k in _PLANNER_FLAGS})


def _model_configs(agent: str | None, model: str, policy_mode: str, rank_by: str, backend: str, dtype: str,
                   threads: int, batch_size: int, planner: str, **_other_flags: Any) -> Any:
    from mpr.compose import candidate_mode
    from mpr.learned.policy import PolicyConfig
    from mpr.lm.engine import EngineConfig
    from mpr.planners.config import PLANNERS

    planner_name = agent if agent in PLANNERS else planner  # `--agent best-of-n` is `--planner best-of-n`
    return (EngineConfig(model=model, backend=backend, dtype=dtype, threads=threads, batch_size=batch_size),
            PolicyConfig(mode=candidate_mode(planner_name, policy_mode), rank_by=rank_by))


def executor_options(fn: Any) -> Any:
    """Where episodes run: the local process pool, or Ray actors (docs/scale-out.md)."""
    options = [
        click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                     help="local: this machine's env process pool; ray: episodes on Ray actors (pip install 'mpr[ray]')."),
        click.option("--ray-address", default=None,
                     help="A running Ray cluster (auto, HOST:PORT or ray://HOST:10001); default: start one here."),
        click.option("--ray-actors", type=int, default=2, show_default=True,
                     help="Ray actors; each loads the models once and plays --ray-slots games at a time."),
        click.option("--ray-slots", type=int, default=1, show_default=True,
                     help="Games per Ray actor (its planner calls batch them)."),
        click.option("--ray-cpus", type=int, default=None, help="CPUs of a Ray instance started here [all]."),
        click.option("--ray-gpus-per-actor", type=float, default=0.0, show_default=True,
                     help="GPUs reserved per Ray actor (its models run there)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _executor_config(executor: str, ray_address: str | None, ray_actors: int, ray_slots: int,
                     ray_cpus: int | None, ray_gpus_per_actor: float) -> Any:
    from mpr.run.executor import ExecutorConfig

    return ExecutorConfig(kind=executor, address=ray_address, actors=ray_actors, slots=ray_slots, cpus=ray_cpus,
                          gpus_per_actor=ray_gpus_per_actor)


def _pop_executor(flags: dict[str, Any]) -> Any:
    return _executor_config(**{k: flags.pop(k) for k in ("executor", "ray_address", "ray_actors", "ray_slots",
                                                          "ray_cpus", "ray_gpus_per_actor")})


@main.command("eval")
@click.option("--agent", default=None, help=_AGENT_HELP)
@click.option("--split", default="valid_unseen", show_default=True)
@click.option("--limit", type=int, default=None, help="At most N tasks (round-robin over task types).")
@click.option("--task-type", default=None, help="Only this task type.")
@click.option("--json", "out", type=click.Path(), default=None,
              help="Episode records (JSONL, append-only); rerunning with the same file resumes.")
@click.option("--workers", type=int, default=2, show_default=True, help="Env worker processes (0: in-process).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--max-actions", type=int, default=30, show_default=True)
@click.option("--data-dir", type=click.Path(), default=None)
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@model_options
@executor_options
def eval_cmd(agent: str, split: str, limit: int | None, task_type: str | None, out: str | None,
             workers: int, seed: int, max_actions: int, data_dir: str | None, no_progress: bool,
             **model_flags: Any) -> None:
    """Run episodes on a split and report success per task type."""
    from mpr.alfworld.env import EnvConfig
    from mpr.run.evaluation import EvalConfig, evaluate

    executor = _pop_executor(model_flags)
    engine, policy = _model_configs(agent, **model_flags)
    config = EvalConfig(agent=agent, split=split, limit=limit, task_type=task_type, seed=seed, workers=workers,
                        env=EnvConfig(data_dir=data_dir, max_actions=max_actions, expert=_uses_expert(agent, model_flags)),
                        model=engine, policy=policy, policy_ckpt=model_flags["policy_ckpt"], prm=model_flags["prm"],
                        world=model_flags["world"], planner=_planner_config(**_pick(model_flags)),
                        executor=executor)
    evaluate(config, out, progress=not no_progress, echo=click.echo)


@main.command("plan")
@click.option("--task", required=True, help="Task id (see `mpr tasks`) or path to a game.tw-pddl file.")
@click.option("--agent", default=None, help=_AGENT_HELP)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--max-actions", type=int, default=30, show_default=True)
@click.option("--data-dir", type=click.Path(), default=None)
@click.option("--tree", "tree_out", type=click.Path(), default=None,
              help="Write each step's search tree to this directory (JSON, and a PNG picture).")
@model_options
def plan_cmd(task: str, agent: str, seed: int, max_actions: int, data_dir: str | None, tree_out: str | None,
             **model_flags: Any) -> None:
    """Run one episode and print each real step with the planner's alternatives."""
    from mpr.alfworld.env import EnvConfig
    from mpr.run.evaluation import EvalConfig, play

    engine, policy = _model_configs(agent, **model_flags)
    env = EnvConfig(data_dir=data_dir, max_actions=max_actions, expert=_uses_expert(agent, model_flags))
    config = EvalConfig(agent=agent, seed=seed, env=env, model=engine, policy=policy,
                        policy_ckpt=model_flags["policy_ckpt"], prm=model_flags["prm"], world=model_flags["world"],
                        planner=_planner_config(**_pick(model_flags)))
    play(task, config, echo=click.echo, tree_out=tree_out)


def _uses_expert(agent: str | None, flags: dict[str, Any]) -> bool:
    """Compute the handcoded expert's actions only for the expert agent (they cost env time)."""
    return agent == "expert"


def _pick(flags: dict[str, Any]) -> dict[str, Any]:
    return {k: flags[k] for k in ("planner", "oracle_world", "no_cache", *_PLANNER_FLAGS)}


# -- benchmark --------------------------------------------------------------------------


@main.command("bench")
@click.argument("recipe", type=click.Path())
@click.option("--out", type=click.Path(), default=None, help="Results dir [bench/results/<recipe name>].")
@click.option("--no-progress", is_flag=True)
@click.option("--arms", default=None,
              help="Run only these arms, comma-separated (e.g. 'beam@8,mcts@8'); the report covers every arm "
                   "recorded so far. Processes running different arms may share one results dir.")
@click.option("--threads", type=int, default=None,
              help="torch threads per process, instead of the recipe's (does not change what is recorded).")
@executor_options
def bench_cmd(recipe: str, out: str | None, no_progress: bool, arms: str | None, threads: int | None,
              **executor_flags: Any) -> None:
    """Run a benchmark recipe (bench/configs/*.yaml): every arm on the same games, resumable;
    writes summary.json, report.md, episodes.jsonl and plots."""
    import dataclasses

    from mpr.app.benchmark import load_recipe, run_bench

    config = load_recipe(recipe)
    if threads is not None:
        config = dataclasses.replace(config, threads=threads)
    only = [a.strip() for a in arms.split(",") if a.strip()] if arms is not None else None
    run_bench(config, out or f"bench/results/{config.name}", progress=not no_progress, echo=click.echo,
              executor=_executor_config(**executor_flags), only=only)


# -- training ---------------------------------------------------------------------------


def engine_options(fn: Any) -> Any:
    """Flags that run a model whose weights come from elsewhere (a checkpoint)."""
    options = [
        click.option("--backend", type=click.Choice(BACKENDS), default="hf", show_default=True),
        click.option("--dtype", type=click.Choice(DTYPES), default="auto", show_default=True),
        click.option("--threads", type=int, default=0, help="torch threads (0: $MPR_THREADS or the core count)."),
        click.option("--batch-size", type=int, default=16, show_default=True),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@main.command("rollout")
@click.option("--policy", default="expert", show_default=True,
              help="walkthrough, expert, random, llm (the default model), or a policy checkpoint dir.")
@click.option("--split", default="train", show_default=True)
@click.option("--limit", type=int, default=None, help="At most N games (round-robin over task types).")
@click.option("--task-type", default=None)
@click.option("--repeats", type=int, default=1, show_default=True, help="Rollouts per game (K).")
@click.option("--temperature", type=float, default=1.0, show_default=True,
              help="LLM policies: sample actions from softmax(log-prob / T); 0 = greedy.")
@click.option("--epsilon", type=float, default=0.0, show_default=True,
              help="Probability of a random admissible action per step (exploration noise).")
@click.option("--reset-half", type=float, default=0.0, show_default=True,
              help="Fraction of rollouts started from a walkthrough state (reset-50-50: 0.5).")
@click.option("--steer-prob", type=float, default=0.0, show_default=True,
              help="LLM policies: probability of the exploration prompt per step (steered exploration).")
@click.option("--branch-from", type=click.Path(), default=None,
              help="A rollouts dir: replay its episode of each game to a random step of the policy's, take "
                   "another proposal there, go on with the policy (same-state alternatives for a PRM).")
@click.option("--expert-labels", is_flag=True,
              help="Record ALFWorld's handcoded expert's action in every state the policy visits "
                   "(DAgger: `mpr train policy --sft` trains toward them).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workers", type=int, default=2, show_default=True, help="Env worker processes (0: in-process).")
@click.option("--max-actions", type=int, default=30, show_default=True)
@click.option("--data-dir", type=click.Path(), default=None)
@click.option("--out", required=True, type=click.Path(), help="Rollouts dir; rerunning with it resumes.")
@click.option("--no-progress", is_flag=True)
@engine_options
@executor_options
def rollout_cmd(policy: str, split: str, limit: int | None, task_type: str | None, repeats: int,
                temperature: float, epsilon: float, reset_half: float, steer_prob: float, branch_from: str | None,
                expert_labels: bool, seed: int, workers: int, max_actions: int, data_dir: str | None, out: str, no_progress: bool,
                backend: str, dtype: str, threads: int, batch_size: int, **executor_flags: Any) -> None:
    """Roll out a policy K times per game and record every transition (append-only, resumable)."""
    from mpr.alfworld.env import EnvConfig
    from mpr.lm.engine import EngineConfig
    from mpr.training.rollout import RolloutConfig, rollout

    config = RolloutConfig(policy=policy, split=split, limit=limit, task_type=task_type, repeats=repeats,
                           temperature=temperature, epsilon=epsilon, reset_half=reset_half, steer_prob=steer_prob,
                           branch_from=branch_from, expert_labels=expert_labels, seed=seed, workers=workers,
                           env=EnvConfig(data_dir=data_dir, max_actions=max_actions),
                           model=EngineConfig(backend=backend, dtype=dtype, threads=threads, batch_size=batch_size),
                           executor=_executor_config(**executor_flags))
    rollout(config, out, progress=not no_progress, echo=click.echo)


def train_options(fn: Any) -> Any:
    """Flags every `mpr train` stage takes: output, preset, overrides."""
    options = [
        click.option("--out", required=True, type=click.Path(), help="Checkpoint dir; rerunning with it resumes."),
        click.option("--preset", default="tiny", show_default=True,
                     help="tiny (tiny from-scratch models, CI), cpu (the shipped defaults, 2 cores), "
                          "cpu-small (SmolLM2-135M + LoRA) or gpu (a pretrained LM on one CUDA GPU); "
                          "see training/presets/."),
        click.option("--config", "config_file", type=click.Path(), default=None,
                     help="A YAML file whose stage sections override the preset."),
        click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                     help="Override one training setting, e.g. --set lr=5e-4 (repeatable)."),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None,
                     help="Where to train (= --set device=...; default: the preset's, auto: CUDA when torch "
                          "sees a GPU)."),
        click.option("--no-progress", is_flag=True),
    ]
    for option in reversed(options):
        fn = option(fn)

    @functools.wraps(fn)
    def with_device(*args: Any, device: str | None = None, overrides: tuple[str, ...] = (), **kwargs: Any) -> Any:
        # --device is one more override, after the --set ones: a stage sees one TrainConfig field
        return fn(*args, overrides=tuple(overrides) + ((f"device={device}",) if device else ()), **kwargs)

    return with_device


def _train_config(stage: str, preset: str, config_file: str | None, overrides: tuple[str, ...]) -> Any:
    from mpr.lm.engine import resolve_device
    from mpr.training.common import load_train_config

    config = load_train_config(stage, preset, config_file, overrides)
    resolve_device(config.device)  # no GPU for --device cuda: one line now, not after loading the data
    return config


def _report(meta: dict) -> None:
    import json

    metrics = meta.get("metrics") or {}
    shown = {k: v for k, v in metrics.items() if not isinstance(v, list)}
    if shown:
        click.echo("metrics: " + json.dumps(shown, default=str))


@main.group()
def train() -> None:
    """Train the PRM, the world model and the policy from rollouts (resumable)."""


@train.command("prm")
@click.option("--rollouts", "rollouts", multiple=True, required=True, type=click.Path(),
              help="Rollout dir(s) from `mpr rollout` (learner rollouts for --objective inverse).")
@click.option("--objective", type=click.Choice(["agentprm", "inverse"]), default="agentprm", show_default=True)
@click.option("--demos", multiple=True, type=click.Path(), help="InversePRM: expert demonstration dir(s).")
@click.option("--policy", "policy_name", default=None,
              help="InversePRM: the current policy that draws a' at expert next states (a checkpoint dir or random).")
@click.option("--shaping-ref", default=None, type=click.Path(),
              help="AgentPRM: a `value` checkpoint (V_ref); train on shaped targets γ^t·r + γV(s') − V(s).")
@train_options
def train_prm(rollouts: tuple[str, ...], objective: str, demos: tuple[str, ...], policy_name: str | None,
              shaping_ref: str | None, out: str, preset: str, config_file: str | None, overrides: tuple[str, ...],
              no_progress: bool) -> None:
    """Train a process reward model (AgentPRM Monte-Carlo targets, or InversePRM from demonstrations)."""
    from pathlib import Path

    from mpr.errors import MprError

    config = _train_config("prm", preset, config_file, overrides)
    if objective == "agentprm":
        from mpr.training.prm import train_agentprm

        meta = train_agentprm(rollouts, Path(out), config, shaping_ref, not no_progress, click.echo)
    else:
        transcripts = config.prompt_format == "transcript"  # a' is the episode's own next action
        if not demos or not (policy_name or transcripts):
            raise MprError("--objective inverse needs --demos (expert rollouts) and --policy (the current policy)")
        from mpr.compose import next_action_policy
        from mpr.training.prm import train_inverse

        policy = next_action_policy(policy_name, config) if policy_name and not transcripts else None
        meta = train_inverse(demos, rollouts, policy, policy_name, Path(out), config, not no_progress, click.echo)
    _report(meta)


@train.command("value")
@click.option("--rollouts", multiple=True, required=True, type=click.Path(), help="The reference policy's rollouts.")
@train_options
def train_value_cmd(rollouts: tuple[str, ...], out: str, preset: str, config_file: str | None,
                    overrides: tuple[str, ...], no_progress: bool) -> None:
    """Train a reference value model V_ref(s) on Monte-Carlo state values (for --shaping-ref)."""
    from pathlib import Path

    from mpr.training.prm import train_value

    _report(train_value(rollouts, Path(out), _train_config("value", preset, config_file, overrides),
                        not no_progress, click.echo))


@train.command("world")
@click.option("--rollouts", multiple=True, required=True, type=click.Path(), help="Rollout / demonstration dir(s).")
@click.option("--val-rollouts", multiple=True, type=click.Path(),
              help="Held-out transitions for metrics (e.g. walkthroughs of valid_seen).")
@train_options
def train_world_cmd(rollouts: tuple[str, ...], val_rollouts: tuple[str, ...], out: str, preset: str,
                    config_file: str | None, overrides: tuple[str, ...], no_progress: bool) -> None:
    """Train the world model: a causal LM predicting the next observation."""
    from pathlib import Path

    from mpr.training.world import train_world

    _report(train_world(rollouts, Path(out), _train_config("world", preset, config_file, overrides), val_rollouts,
                        not no_progress, click.echo))


@train.command("policy")
@click.option("--sft", "method", flag_value="sft", default=True, help="π₀: SFT on --demos (default).")
@click.option("--rft", "method", flag_value="rft", help="Rejection-sampling fine-tuning on PRM-best actions.")
@click.option("--dpo", "method", flag_value="dpo", help="Online DPO against the PRM, KL-anchored to --init.")
@click.option("--demos", multiple=True, type=click.Path(), help="SFT: demonstration dir(s).")
@click.option("--rollouts", multiple=True, type=click.Path(), help="RFT/DPO: the current policy's rollouts.")
@click.option("--prm", default=None, type=click.Path(), help="RFT/DPO: the PRM checkpoint.")
@click.option("--init", default=None, type=click.Path(), help="RFT/DPO: the current policy checkpoint.")
@train_options
def train_policy_cmd(method: str, demos: tuple[str, ...], rollouts: tuple[str, ...], prm: str | None,
                     init: str | None, out: str, preset: str, config_file: str | None, overrides: tuple[str, ...],
                     no_progress: bool) -> None:
    """Train the policy: SFT on demonstrations, or improve it against a PRM (RFT or online DPO)."""
    import dataclasses
    from pathlib import Path

    from mpr.errors import MprError
    from mpr.training import policy as tp

    config = _train_config("policy", preset, config_file, overrides)
    if method == "sft":
        if not demos:
            raise MprError("--sft needs --demos (expert demonstration rollouts)")
        meta = tp.train_policy_sft(demos, Path(out), config, not no_progress, click.echo)
    else:
        if not (rollouts and prm and init):
            raise MprError(f"--{method} needs --rollouts, --prm and --init (the current policy checkpoint)")
        config = dataclasses.replace(config, base=init)
        fn = tp.train_policy_rft if method == "rft" else tp.train_policy_dpo
        meta = fn(rollouts, prm, Path(out), config, not no_progress, click.echo)
    _report(meta)


@train.command("iterate")
@click.option("--policy", "policy_ckpt", required=True, type=click.Path(), help="The current policy checkpoint.")
@click.option("--method", type=click.Choice(["rft", "dpo"]), default="rft", show_default=True)
@click.option("--split", default="train", show_default=True)
@click.option("--limit", type=int, default=None, help="Games to roll out on (default: the preset's).")
@click.option("--repeats", type=int, default=None, help="Rollouts per game (default: the preset's).")
@click.option("--reset-half", type=float, default=0.5, show_default=True)
@click.option("--workers", type=int, default=2, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@train_options
def train_iterate_cmd(policy_ckpt: str, method: str, split: str, limit: int | None, repeats: int | None,
                      reset_half: float, workers: int, seed: int, out: str, preset: str, config_file: str | None,
                      overrides: tuple[str, ...], no_progress: bool) -> None:
    """One AgentPRM iteration: rollouts of the policy -> Q targets -> PRM -> improved policy. Resumable."""
    from pathlib import Path

    from mpr.training.iterate import IterateConfig, iterate

    config = IterateConfig(policy=policy_ckpt, method=method, split=split, limit=limit, repeats=repeats,
                           reset_half=reset_half, workers=workers, seed=seed, preset=preset, config_file=config_file,
                           overrides=tuple(overrides))
    _report(iterate(config, Path(out), not no_progress, click.echo))


@train.command("all")
@click.option("--demos-limit", type=int, default=None, help="Train games the expert demonstrates [all 3,553].")
@click.option("--workers", type=int, default=2, show_default=True, help="Env worker processes for the rollouts.")
@click.option("--seed", type=int, default=0, show_default=True)
@train_options
def train_all_cmd(demos_limit: int | None, workers: int, seed: int, out: str, preset: str, config_file: str | None,
                  overrides: tuple[str, ...], no_progress: bool) -> None:
    """The whole chain: demonstrations -> π₀ -> rollouts -> PRM -> world model. Resumable; each
    stage is skipped when done."""
    from pathlib import Path

    from mpr.training.chain import ChainConfig, train_all

    for stage in ("policy", "prm", "world"):
        _train_config(stage, preset, config_file, overrides)  # every stage's settings, checked before any work
    train_all(ChainConfig(preset=preset, config_file=config_file, overrides=tuple(overrides), demos_limit=demos_limit,
                          workers=workers, seed=seed), Path(out), not no_progress, click.echo)


# -- models -----------------------------------------------------------------------------


@main.group()
def models() -> None:
    """Prepare the models mpr ships with."""


@models.command("prepare")
@click.option("--tiny", is_flag=True, help="Also build the tiny from-scratch test model (seconds).")
def models_prepare(tiny: bool) -> None:
    """Convert the embedded SmolLM2-135M-Instruct GGUF into a cached HF directory (idempotent)."""
    from mpr.lm import weights as m

    m.prepare_default(log_fn=click.echo)
    if tiny:
        if (m.tiny_model_dir() / m.READY_MARKER).exists():
            click.echo(f"tiny model already built at {m.tiny_model_dir()}")
        else:
            click.echo(f"tiny model built at {m.build_tiny()}")


@models.command("ship")
@click.argument("checkpoint", type=click.Path())
@click.option("--kind", type=click.Choice(["policy", "prm", "world"]), default="policy", show_default=True,
              help="Which shipped default it replaces (prm and world: what planners use with the default π₀).")
@click.option("--command", "recipe", default=None, help="The command that trained it (kept in its metadata).")
def models_ship(checkpoint: str, kind: str, recipe: str | None) -> None:
    """Make a trained checkpoint the default shipped in the package (fp16 safetensors + metadata)."""
    from mpr.lm.checkpoints import load_checkpoint, ship_checkpoint
    from mpr.lm.weights import shipped_model_dir

    from mpr.lm.checkpoints import SCORER_KINDS

    load_checkpoint(checkpoint, *(SCORER_KINDS if kind == "prm" else (kind,)), flag="CHECKPOINT")
    shipped = ship_checkpoint(checkpoint, shipped_model_dir(kind), command=recipe)
    size = sum(f.stat().st_size for f in shipped.path.iterdir()) / 1e6
    click.echo(f"shipped {checkpoint} as the default {kind} at {shipped.path} ({size:.1f} MB)")


if __name__ == "__main__":
    main()
