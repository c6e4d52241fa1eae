"""The ``mpr`` command line. Commands only parse flags and call library functions.

Errors a user can cause are printed as one ``error: ...`` line with exit code 2;
heavy libraries are imported inside commands so ``mpr --help`` is instant.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from mpr.errors import MprError


class _Group(click.Group):
    """Turns MprError into one clear line and Ctrl-C into a resumable note."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MprError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("\ninterrupted: finished episodes are saved; rerun the same command to resume", err=True)
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
    from mpr import data as mdata

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
    from mpr.data import list_tasks

    for t in list_tasks(split, data_dir, task_type, limit):
        click.echo(t.id)


# -- episodes ---------------------------------------------------------------------------

_AGENT_HELP = ("walkthrough (replays the game's solution), expert (ALFWorld's handcoded expert), random, "
               "or llm (a language-model policy, see --model).")


def model_options(fn: Any) -> Any:
    """Flags that choose and run the LLM policy's model (used by eval and plan)."""
    options = [
        click.option("--model", default="default", show_default=True,
                     help="default (SmolLM2-135M-Instruct), tiny, a local HF model dir, or a hub id."),
        click.option("--policy-mode", type=click.Choice(["score", "sample"]), default="score", show_default=True,
                     help="score: rank admissible actions by log-prob; sample: generate and parse REASON/ACTION."),
        click.option("--backend", type=click.Choice(["hf", "vllm", "auto"]), default="hf", show_default=True),
        click.option("--dtype", type=click.Choice(["auto", "bf16", "fp32"]), default="auto", show_default=True),
        click.option("--threads", type=int, default=0, help="torch threads (0: $MPR_THREADS or the core count)."),
        click.option("--batch-size", type=int, default=16, show_default=True),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _model_configs(model: str, policy_mode: str, backend: str, dtype: str, threads: int, batch_size: int) -> Any:
    from mpr.engine import EngineConfig
    from mpr.policy import PolicyConfig

    return (EngineConfig(model=model, backend=backend, dtype=dtype, threads=threads, batch_size=batch_size),
            PolicyConfig(mode=policy_mode))


@main.command("eval")
@click.option("--agent", default="expert", show_default=True, help=_AGENT_HELP)
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
def eval_cmd(agent: str, split: str, limit: int | None, task_type: str | None, out: str | None,
             workers: int, seed: int, max_actions: int, data_dir: str | None, no_progress: bool,
             **model_flags: Any) -> None:
    """Run episodes on a split and report success per task type."""
    from mpr.env import EnvConfig
    from mpr.evaluation import EvalConfig, evaluate

    engine, policy = _model_configs(**model_flags)
    config = EvalConfig(agent=agent, split=split, limit=limit, task_type=task_type, seed=seed, workers=workers,
                        env=EnvConfig(data_dir=data_dir, max_actions=max_actions, expert=(agent == "expert")),
                        model=engine, policy=policy)
    evaluate(config, out, progress=not no_progress, echo=click.echo)


@main.command("plan")
@click.option("--task", required=True, help="Task id (see `mpr tasks`) or path to a game.tw-pddl file.")
@click.option("--agent", default="expert", show_default=True, help=_AGENT_HELP)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--max-actions", type=int, default=30, show_default=True)
@click.option("--data-dir", type=click.Path(), default=None)
@model_options
def plan_cmd(task: str, agent: str, seed: int, max_actions: int, data_dir: str | None, **model_flags: Any) -> None:
    """Run one episode and print its trajectory."""
    from mpr.env import EnvConfig
    from mpr.evaluation import play

    engine, policy = _model_configs(**model_flags)
    play(task, agent, seed, EnvConfig(data_dir=data_dir, max_actions=max_actions, expert=(agent == "expert")),
         echo=click.echo, model=engine, policy_config=policy)


# -- models -----------------------------------------------------------------------------


@main.group()
def models() -> None:
    """Prepare the models mpr ships with."""


@models.command("prepare")
@click.option("--tiny", is_flag=True, help="Also build the tiny from-scratch test model (seconds).")
def models_prepare(tiny: bool) -> None:
    """Convert the embedded SmolLM2-135M-Instruct GGUF into a cached HF directory (idempotent)."""
    from mpr import models as m

    m.prepare_default(log_fn=click.echo)
    if tiny:
        if (m.tiny_model_dir() / m.READY_MARKER).exists():
            click.echo(f"tiny model already built at {m.tiny_model_dir()}")
        else:
            click.echo(f"tiny model built at {m.build_tiny()}")


if __name__ == "__main__":
    main()
