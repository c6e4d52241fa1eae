"""Write docs/bench-paper.md, the paper run's page, from the run's committed records.

    python bench/paper_report.py            # render the page (and copy the plots) from the committed files
    python bench/paper_report.py --refresh  # first rebuild those files from the run's local working files

The committed files under ``bench/results/paper/`` are ``episodes.jsonl`` (one line per episode with its
arm), ``summary.json`` (recomputed from it by ``mpr.app.benchmark``), ``models.json`` (the trained models'
held-out metrics and the demonstrations' counts) and ``config.json`` (the resolved recipe). Every number
on the page is read or computed from them; the prose around the numbers is checked against them (the
page refuses to say "nothing wins" if an arm won). ``tests/test_paper_results.py`` renders the page the
same way and asserts it equals the committed one, so the page cannot drift from its records.

``--refresh`` needs what a run leaves locally (``arms/*.jsonl``, ``models/``, both git-ignored): it keeps
only the arms that played every game, rewrites episodes.jsonl, summary.json, report.md and the plots
through ``mpr.app.benchmark.write_report``, and models.json from the checkpoints.
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import sys
import textwrap
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mpr.app.benchmark import (  # noqa: E402
    BASELINES,
    collect,
    episodes_by_arm,
    load_recipe,
    markdown,
    select_arms,
    wilson,
    write_report,
)
from mpr.errors import ConfigError  # noqa: E402
from mpr.owned import atomic_write_text  # noqa: E402
from mpr.run.episodes import EpisodeResult  # noqa: E402

RESULTS = REPO / "bench" / "results" / "paper"
RECIPE = REPO / "bench" / "configs" / "paper.yaml"
DOC = REPO / "docs" / "bench-paper.md"
PLOTS = ("success_vs_compute.png", "per_type.png")


# -- refreshing the committed files from a run's working files --------------------------------------


def complete_arms(names: list[str], out: Path) -> list[str]:
    """The arms, in recipe order, that recorded as many episodes as the fullest arm (every game)."""
    counts = {name: len(eps) for name, eps in collect(out, names).items()}
    most = max(counts.values(), default=0)
    return [name for name in names if most and counts[name] == most]


def model_facts(models: Path) -> dict[str, Any]:
    """The demonstrations' counts and each trained model's held-out metrics, as models.json stores them."""
    facts: dict[str, Any] = {"demos": json.loads((models / "demos" / "summary.json").read_text())}
    for kind in ("policy", "prm", "world"):
        checkpoint = json.loads((models / kind / "mpr-checkpoint.json").read_text())
        facts[kind] = {"train": checkpoint["header"]["train"], "metrics": checkpoint["metrics"]}
    return facts


def refresh(out: Path = RESULTS) -> list[str]:
    """Rewrite the committed files from ``out/arms`` and ``out/models``; returns the arms still pending."""
    config = load_recipe(RECIPE)
    names = arm_names(config)
    complete = complete_arms(names, out)
    write_report(config, out, complete, echo=lambda _: None)
    atomic_write_text(out / "models.json", json.dumps(model_facts(out / "models"), indent=2) + "\n")
    return [n for n in names if n not in complete]


# -- rendering the page ------------------------------------------------------------------------------


def arm_names(config: Any) -> list[str]:
    """Every arm of the recipe, baselines first, in recipe order."""
    return [name for name, _ in select_arms(config, None)]


def top_action(episodes: list[EpisodeResult]) -> tuple[str, float]:
    """The most frequent action over ``episodes`` and its share of all their actions."""
    flat = [turn.action for e in episodes for turn in e.turns]
    top, count = collections.Counter(flat).most_common(1)[0]
    return top, count / len(flat)


def undo_share(episodes: list[EpisodeResult]) -> float:
    """The share of actions (from the third of an episode on) that go back to where the one before
    last went: A, B, A."""
    actions = [[turn.action for turn in e.turns] for e in episodes]
    undo = sum(1 for acts in actions for i in range(2, len(acts)) if acts[i] == acts[i - 2] != acts[i - 1])
    return undo / max(1, sum(max(0, len(acts) - 2) for acts in actions))


def action_loops_table(by_arm: dict[str, list[EpisodeResult]]) -> str:
    """Per arm: distinct actions per episode, the most frequent action, and how often an action undoes
    the move before it (A, B, A) — the loops that explain a 0% arm."""
    rows = ["| arm | distinct actions / episode | most frequent action (share of all actions) | "
            "actions that undo a move (A, B, A) |", "|---|---|---|---|"]
    for arm, episodes in by_arm.items():
        actions = [[turn.action for turn in e.turns] for e in episodes]
        top, share = top_action(episodes)
        distinct = sum(len(set(acts)) for acts in actions) / len(actions)
        rows.append(f"| {arm} | {distinct:.1f} | `{top}` ({100 * share:.0f}%) | "
                    f"{100 * undo_share(episodes):.0f}% |")
    return "\n".join(rows)


def reflow(page: str, width: int = 100) -> str:
    """``page`` with its paragraphs and list items re-wrapped at ``width`` columns; tables, code blocks,
    headings and images are kept as they are. The template breaks lines where its placeholders fall;
    the page breaks them where the filled-in numbers leave them."""
    lines: list[str] = []
    block: list[str] = []
    fenced = False

    def flush() -> None:
        if not block:
            return
        indent = " " * (len(block[0]) - len(block[0].lstrip()))
        text = " ".join(line.strip() for line in block)
        marker = "- " if text.startswith("- ") else ""
        lines.append(textwrap.fill(text[len(marker):], width, initial_indent=indent + marker,
                                   subsequent_indent=indent + " " * len(marker),
                                   break_long_words=False, break_on_hyphens=False))
        block.clear()

    for line in page.splitlines():
        stripped = line.strip()
        if stripped.startswith("```"):
            fenced = not fenced
        if fenced or stripped.startswith(("```", "|", "#", "![")) or not stripped:
            flush()
            lines.append(line)
            continue
        if stripped.startswith("- "):
            flush()
        block.append(line)
    flush()
    return "\n".join(lines) + "\n"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}".rstrip("0").rstrip(".")


def compute_bullet(arms: dict[str, Any], settings: dict[str, Any]) -> str:
    """Tokens and calls per decision of the planners against Best-of-N at each budget both ran."""
    def at(planner: str, budget: int) -> str | None:
        return next((n for n, s in settings.items() if s["planner"] == planner and s["budget"] == budget and n in arms),
                    None)

    budgets = sorted({s["budget"] for n, s in settings.items() if s["planner"] == "best-of-n" and n in arms})
    parts = []
    for budget in budgets:
        bon = at("best-of-n", budget)
        planners = [(label, at(planner, budget)) for label, planner in (("beam", "beam"), ("MCTS", "mcts"))]
        planners = [(label, n) for label, n in planners if n]
        if not planners:
            continue
        tpd = {n: arms[n]["tokens_per_decision"] for n in [bon] + [n for _, n in planners]}
        calls = [arms[n]["model_calls"] / arms[bon]["model_calls"] for _, n in planners]
        spent = ", ".join(f"{label} {tpd[n]:,.0f} ({tpd[n] / tpd[bon]:.1f}x)" for label, n in planners)
        parts.append(f"at budget {budget}, Best-of-N spends {tpd[bon]:,.0f} tokens per decision, {spent}, "
                     f"with {' and '.join(dict.fromkeys(f'{c:.1f}x' for c in calls))} its batched model calls")
    if not parts:
        return ""
    said = "; ".join(parts)
    return ("- **Compute is matched as designed, on PRM-scored pairs.** " + said[0].upper() + said[1:] + ". "
            "The planners score the same number of (state, action) pairs as Best-of-N, but each simulated "
            "step also runs the policy and the world model on a longer, imagined history, so they spend more "
            "tokens at the same PRM budget. Matching on PRM-scored pairs favours the planners; a token-matched "
            "comparison is the plot's x axis.\n")


def coincide_note(arms: dict[str, Any]) -> str:
    """Model-driven arms whose points overlap in the success-vs-compute plot (tokens within 1%, same rate)."""
    driven = [n for n in arms if n not in BASELINES]
    pairs = [(a, b) for i, a in enumerate(driven) for b in driven[i + 1:]
             if arms[a]["success_rate"] == arms[b]["success_rate"]
             and abs(arms[a]["tokens_per_decision"] / arms[b]["tokens_per_decision"] - 1) < 0.01]
    if not pairs:
        return ""
    shown = "; ".join(f"{a} and {b}" for a, b in pairs)
    return (f"(In the first plot these points coincide — tokens per decision within 1%, the same success rate: "
            f"{shown}.)\n\n")


def render(config: Any, summary: dict[str, Any], models: dict[str, Any],
           by_arm: dict[str, list[EpisodeResult]]) -> str:
    """The page's markdown from the recipe, the summary, the model facts and the episodes (arm -> records).

    Raises ConfigError when the records contradict the page's prose (a model-driven arm that won)."""
    v = page_facts(config, summary, models, by_arm)
    return reflow(_intro(**v) + _setup(**v) + _results(**v) + _findings(**v) + REPRODUCE_AND_CAVEATS)


def page_facts(config: Any, summary: dict[str, Any], models: dict[str, Any],
               by_arm: dict[str, list[EpisodeResult]]) -> dict[str, Any]:
    """Every number and claim the page's prose uses, computed from the records; raises ConfigError
    when the records contradict that prose (a model-driven arm that won, arms of unequal length)."""
    arms = summary["arms"]
    names = arm_names(config)
    pending = [n for n in names if n not in arms]
    driven = [n for n in arms if n not in BASELINES]
    games = {s["episodes"] for s in arms.values()}
    if len(games) != 1:
        raise ConfigError(f"the paper page covers complete arms only, but its arms played {sorted(games)} games")
    (n,) = games
    missing = [name for name in BASELINES if name not in arms]
    if missing:
        raise ConfigError(f"the paper page compares arms with the baselines, but {', '.join(missing)} did not finish")
    winners = {name: arms[name]["wins"] for name in driven if arms[name]["wins"]}
    if winners:  # the prose below explains a run in which nothing wins; it would be wrong here
        raise ConfigError(f"bench/paper_report.py's text says no model-driven arm won a game, but {winners} did: "
                          "rewrite its findings for these results")
    upper = wilson(0, n)[1]
    policy, prm, world = (models[k]["metrics"] for k in ("policy", "prm", "world"))
    demos = models["demos"]
    # checkpoints written before the metric was renamed call the policy's training examples train_steps
    policy_examples = policy.get("train_examples", policy.get("train_steps"))
    steps = {models[k]["metrics"]["steps"] for k in ("policy", "prm", "world")}
    batch = {models[k]["train"]["batch_size"] for k in ("policy", "prm", "world")}
    expert, random = arms["expert"], arms["random"]
    expert_losses = [e for e in by_arm["expert"] if not e.won]
    capped = sum(e.num_actions >= config.max_actions for e in expert_losses)
    cap_said = (f"all {capped} of its losses ran into" if capped == len(expert_losses)
                else f"{capped} of its {len(expert_losses)} losses ran into")
    greedy = ""
    if "greedy" in by_arm:
        top, share = top_action(by_arm["greedy"])
        greedy = f", and greedily it says `{top}` {100 * share:.0f}% of the time"
    searched = [undo_share(by_arm[name]) for name in driven if summary["arm_settings"][name]["budget"] > 1]
    shuttle = f"{100 * min(searched):.0f}–{100 * max(searched):.0f}%" if searched else "n/a"
    status = "" if not pending else (
        f"**Status: {len(arms)} of {len(names)} arms complete; still running: {', '.join(pending)}.** The tables below "
        f"cover the complete arms only (every arm in them played all {n} games). The pending arms are recorded "
        "episode by episode and resume with the same command; this page is regenerated from the records "
        "when they finish.\n")
    tables = markdown(config, summary).split("\n| arm |", 1)[1]
    return {"config": config, "summary": summary, "models": models, "by_arm": by_arm, "arms": arms, "names": names,
            "pending": pending, "driven": driven, "n": n, "upper": upper, "policy": policy, "prm": prm,
            "world": world, "demos": demos, "policy_examples": policy_examples, "steps": steps, "batch": batch,
            "expert": expert, "random": random, "cap_said": cap_said, "greedy": greedy, "shuttle": shuttle,
            "status": status, "tables": tables}


def _intro(
        *, config: Any, summary: Any, models: Any, by_arm: Any, arms: Any, names: Any, pending: Any, driven: Any,
        n: Any, upper: Any, policy: Any, prm: Any, world: Any, demos: Any, policy_examples: Any, steps: Any,
        batch: Any, expert: Any, random: Any, cap_said: Any, greedy: Any, shuttle: Any, status: Any, tables: Any,
        **_: Any
) -> str:
    """The title and the short answer."""
    return f"""# `mpr bench` paper run: Best-of-N vs planning at equal compute, all {n} {config.split} games

This report comes from a real run of `mpr bench bench/configs/paper.yaml` on this workplace's
machine. Every number on this page is computed from the committed records in `bench/results/paper/`:
`episodes.jsonl` (one line per episode with its arm), `summary.json` (recomputed from it) and
`models.json` (the trained models' held-out metrics). `bench/paper_report.py` writes the page from
them, and `tests/test_paper_results.py` checks that the summary is recomputed from the episodes and
that this page is exactly what the script renders from the records.

**Short answer: with the models this machine can train, nothing wins.** The question the harness
asks — does planning with a learned world model beat Best-of-N at the same compute? — is answered here
only for tiny models, and for them the answer is that all {len(driven)} model-driven arms in the tables,
Best-of-N and planners alike, succeed on 0 of {n} games (95% upper bound {_pct(upper)}%), far below the
handcoded expert ({100 * expert["success_rate"]:.0f}%) and the quoted ReAct numbers. The run shows the harness
working end to end on the full protocol and what each arm costs; it does not rank the planners. Rerun it
with stronger checkpoints (`models: {{policy, prm, world}}` in the recipe) to answer the question.

"""


def _setup(
        *, config: Any, summary: Any, models: Any, by_arm: Any, arms: Any, names: Any, pending: Any, driven: Any,
        n: Any, upper: Any, policy: Any, prm: Any, world: Any, demos: Any, policy_examples: Any, steps: Any,
        batch: Any, expert: Any, random: Any, cap_said: Any, greedy: Any, shuttle: Any, status: Any, tables: Any,
        **_: Any
) -> str:
    """Games, hardware, models, arms and baselines."""
    return f"""## Setup

- **Games**: all {n} `{config.split}` games of ALFWorld json_2.1.1 (the seed paper's and ReAct's test
  set), at most {config.max_actions} actions per episode, seed {config.seed}. Every arm plays the same games with the
  same models.
- **Hardware**: 2 CPU cores (Intel Xeon @ 2.50 GHz, AVX512 + AMX), 24 GiB RAM, no GPU; torch
  2.13.0+cpu, transformers 5.19.0, fp32. Each `mpr bench` process holds the models and runs {config.workers}
  ALFWorld env worker processes (`workers: {config.workers}`); the first arms ran in one process of 2 torch
  threads, the planner arms side by side in processes of 1 thread (see Reproduce).
- **Models** (`models: {{build: tiny}}`: the run trains them first): from-scratch Llama-shaped models of
  ~4M parameters (`--preset tiny`, the SmolLM2 tokenizer), {"/".join(map(str, sorted(steps)))} optimizer steps each
  (batch {"/".join(map(str, sorted(batch)))}), trained on handcoded-expert demonstrations of {demos["episodes"]}
  `train` games (the expert won {demos["won"]} of them, {demos["transitions"]:,} transitions):
  - policy: SFT on the expert's (state, action) pairs ({policy_examples:,} training examples,
    {models["policy"]["train"]["max_length"]}-token prompts); held-out top-1 agreement with the expert
    {policy["val_top1_agreement"]:.2f}.
  - PRM: AgentPRM — Monte-Carlo targets (γ = {models["prm"]["train"]["gamma"]}) of the same demonstrations,
    sigmoid value head ({prm["train_targets"]:,} targets, {models["prm"]["train"]["max_length"]}-token prompts);
    held-out AUC for "this episode is won" {prm["val_auc_won"]:.2f}.
  - world model: next-observation SFT on the same transitions; held-out exact match
    {world["val_exact_match"]:.2f}, key facts {world["val_facts_match"]:.2f} (it often repeats an object list up
    to its 96-token cap).
- **Arms and matched compute**: an arm's budget is the number of (state, action) pairs its PRM
  scores per real decision. Best-of-N at N = budget; beam search (C candidates per node, width W,
  depth D: C + (D−1)·W·C pairs) and MCTS (C candidates, S simulations: C + S·C pairs); each arm's
  settings are in the table. Greedy is the policy's top action (budget 1). What each arm really
  spent — batched model calls, prompt + generated tokens, model requests per decision — is measured
  per episode and shown beside its success rate.
- **Baselines**: walkthrough (the game's own solution: the upper bound), the handcoded expert,
  uniform random admissible actions; quoted published numbers, not rerun.
"""


def _results(
        *, config: Any, summary: Any, models: Any, by_arm: Any, arms: Any, names: Any, pending: Any, driven: Any,
        n: Any, upper: Any, policy: Any, prm: Any, world: Any, demos: Any, policy_examples: Any, steps: Any,
        batch: Any, expert: Any, random: Any, cap_said: Any, greedy: Any, shuttle: Any, status: Any, tables: Any,
        **_: Any
) -> str:
    """The status line, the tables and the plots."""
    return f"""
{status}
## Results

| arm |{tables}
![success vs compute](bench-paper/success_vs_compute.png)
![success per task type](bench-paper/per_type.png)

{coincide_note(arms)}"""


def _findings(
        *, config: Any, summary: Any, models: Any, by_arm: Any, arms: Any, names: Any, pending: Any, driven: Any,
        n: Any, upper: Any, policy: Any, prm: Any, world: Any, demos: Any, policy_examples: Any, steps: Any,
        batch: Any, expert: Any, random: Any, cap_said: Any, greedy: Any, shuttle: Any, status: Any, tables: Any,
        **_: Any
) -> str:
    """What the records show."""
    return f"""## What the records show

- **Success.** All {len(driven)} model-driven arms won 0 of {n} games (Wilson 95% interval
  0–{_pct(upper)}%). The baselines bracket the scale: walkthrough {arms["walkthrough"]["wins"]}/{n},
  handcoded expert {expert["wins"]}/{n} (its plans are longer than the walkthroughs': {cap_said} the
  {config.max_actions}-action cap), random {random["wins"]}/{n}. So this run cannot say whether
  planning beats Best-of-N: with a 0% floor everywhere, no difference between arms is measurable.
{compute_bullet(arms, summary["arm_settings"])}- **Why nothing wins.** The ~4M-parameter models
  have not learned the task: the SFT policy agrees with the expert's next action
  {100 * policy["val_top1_agreement"]:.0f}% of the time on held-out games{greedy}. The PRM (held-out AUC
  {prm["val_auc_won"]:.2f} for "this trajectory wins") moves the search off the policy's favourite action, but into
  shuttling between two receptacles (in the PRM-guided arms {shuttle} of actions undo the move before);
  the world model predicts the next observation exactly
  {100 * world["val_exact_match"]:.0f}% of the time. The table below,
  computed from `episodes.jsonl` by `bench/paper_report.py`, shows the loops:

{action_loops_table(by_arm)}

"""


REPRODUCE_AND_CAVEATS = """## Reproduce

```bash
pip install -e '.[viz]'                         # see README.md for the full install
mpr bench bench/configs/paper.yaml              # hours on 2 cores; rerun the same command to resume
# what this run did (same records, less wall time on 2 cores): baselines, greedy, Best-of-N and the
# first 66 games of beam@8 in one process of 2 torch threads; the rest of the planner arms in up to
# four processes of one torch thread each, one or two arms per process
mpr bench bench/configs/paper.yaml --arms beam@12 --threads 1 &   # ... and so on, one per planner arm
python bench/paper_report.py --refresh          # this page and the committed records, from the run's files
python -c "from pathlib import Path; from mpr.app.benchmark import summarize_episodes_file; \\
print(summarize_episodes_file(Path('bench/results/paper/episodes.jsonl'))['beam@8']['success_rate'])"
```

The trained models are not committed (`bench/results/paper/models/`, rebuilt by the recipe from the
same seeds); nor are the per-arm working files (`arms/*.jsonl`, the same episodes as `episodes.jsonl`).

## Caveats

- **Wall time per episode is not comparable across arms.** Arms ran with different process and
  thread layouts (above), some while tests or a second benchmark process shared the 2 cores, and a
  paused run's pause counts in the episodes that were in flight. Compare arms by the measured model
  calls and tokens; wall time only says what this machine took.
- **Token counts per episode** are each episode's share of batched calls (a call's prompt tokens
  split over the requests in it), so they depend on which episodes shared a call; an arm's total
  does not.
- **The budgets are small** (4–12 scored pairs per decision) because every simulated step runs the
  world model on the CPU; a machine with GPUs and the 3B-parameter models of the seed paper would
  run far larger budgets.
- **Quoted rows** are other systems with other (much larger) models, shown for scale only.
"""


def render_from_files(out: Path = RESULTS) -> str:
    """The page rendered from the committed files under ``out``."""
    summary = json.loads((out / "summary.json").read_text())
    models = json.loads((out / "models.json").read_text())
    return render(load_recipe(RECIPE), summary, models, episodes_by_arm(out / "episodes.jsonl"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--refresh", action="store_true",
                        help="first rebuild the committed records from the run's arms/ and models/")
    args = parser.parse_args(argv)
    try:
        if args.refresh:
            for needed in (RESULTS / "arms", RESULTS / "models"):
                if not needed.is_dir():
                    raise ConfigError(f"--refresh needs the run's working files: {needed} does not exist")
            pending = refresh()
            print(f"records refreshed; pending arms: {', '.join(pending) or 'none'}")
        page = render_from_files()
    except (ConfigError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    pictures = DOC.parent / "bench-paper"
    pictures.mkdir(exist_ok=True)
    for name in PLOTS:
        if (RESULTS / name).exists():  # plots exist where the run (or --refresh) wrote them
            shutil.copy(RESULTS / name, pictures / name)
    atomic_write_text(DOC, page)
    print(f"wrote {DOC.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
