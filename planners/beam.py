"""Beam search over the learned world model, scored step by step by the PRM.

Per depth, for all roots at once: one ``propose`` call (C candidates for every live path end),
one ``score`` call (Q of every (end, candidate) pair), keep the best ``width`` paths per root by
the aggregate of their step scores, then one ``predict`` call to simulate the kept paths' last
actions (skipped at the last depth: nothing would look at the result). The decision is the
first action of the best final path; its value is that path's aggregate score.

Aggregates of a path's step scores q_0..q_k: ``last`` (q_k: the PRM's estimate of the whole
future from the deepest step), ``min``, ``mean``, ``discounted`` (Σ γ^t q_t / Σ γ^t, earlier
steps weigh more). A path whose simulated step wins the game (only oracle world models say so)
stops growing and keeps competing with its score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from mpr.planners.search import Models
from mpr.planners.tree import TreeRecorder

from mpr.config import require
from mpr.core import PlanResult, State

AGGREGATES = ("last", "min", "mean", "discounted")


@dataclass(frozen=True)
class BeamConfig:
    width: int = 4  # W: paths kept per root after each depth
    depth: int = 3  # D: actions per path
    candidates: int = 8  # C: policy proposals per path end
    aggregate: str = "last"
    gamma: float = 0.9  # for aggregate="discounted"

    def __post_init__(self) -> None:
        require(self.width >= 1, f"beam width must be >= 1, got {self.width}")
        require(self.depth >= 1, f"beam depth must be >= 1, got {self.depth}")
        require(self.candidates >= 1, f"beam candidates must be >= 1, got {self.candidates}")
        require(self.aggregate in AGGREGATES, f"aggregate must be one of {AGGREGATES}, got {self.aggregate!r}")
        require(0 < self.gamma <= 1, f"gamma must be in (0, 1], got {self.gamma}")


def aggregate(scores: Sequence[float], how: str, gamma: float = 0.9) -> float:
    """One number for a path from its step scores (see the module doc)."""
    if how == "last":
        return scores[-1]
    if how == "min":
        return min(scores)
    if how == "mean":
        return sum(scores) / len(scores)
    weights = [gamma**t for t in range(len(scores))]
    return sum(w * q for w, q in zip(weights, scores)) / sum(weights)


@dataclass(frozen=True)
class _Path:
    root: int
    state: State  # the state after the path's actions (simulated), where it grows next
    actions: tuple[str, ...] = ()
    scores: tuple[float, ...] = ()
    node: int = 0  # tree node of the path's end
    simulated: int = 0  # leading actions already applied to ``state`` by the world model
    done: bool = False  # won in simulation, or no candidates to grow with


class BeamPlanner:
    def __init__(self, models: Models, config: BeamConfig = BeamConfig(), record_tree: bool = False):
        self.models, self.config, self.record_tree = models, config, record_tree

    def value(self, path: _Path) -> float:
        return aggregate(path.scores, self.config.aggregate, self.config.gamma)

    def __call__(self, roots: Sequence[State]) -> list[PlanResult]:
        if not roots:
            return []
        m, c = self.models, self.config
        m.begin(len(roots))
        trees = [TreeRecorder(r) for r in roots] if self.record_tree else None
        beams: list[list[_Path]] = [[_Path(i, r)] for i, r in enumerate(roots)]
        first: list[dict[str, tuple[int, float]]] = [{} for _ in roots]  # first action -> (depth, best value)
        for depth in range(c.depth):
            ends = [p for beam in beams for p in beam if not p.done]
            if not ends:
                break
            cands = m.propose([p.state for p in ends], c.candidates, [p.root for p in ends])
            grown = [(p, x) for p, cs in zip(ends, cands) for x in cs]
            owners = [p.root for p, _ in grown]
            qs = m.score([p.state for p, _ in grown], [x.action for _, x in grown], owners)
            m.add_nodes(owners)
            children: list[list[_Path]] = [[p for p in beam if p.done] for beam in beams]
            for p, cs in zip(ends, cands):
                if not cs:  # nothing to grow with: keep the path as it is
                    if depth == 0:
                        raise ValueError(f"Policy.propose returned no action for {roots[p.root].task_id}")
                    children[p.root].append(replace(p, done=True))
            for (p, x), q in zip(grown, qs):
                node = trees[p.root].add(p.node, x.action, prior=x.logprob, q=q) if trees else 0
                child = _Path(p.root, p.state, p.actions + (x.action,), p.scores + (q,), node, p.simulated)
                children[p.root].append(child)
                d, v = first[p.root].get(child.actions[0], (-1, float("-inf")))
                value = self.value(child)
                if depth > d or (depth == d and value > v):
                    first[p.root][child.actions[0]] = (depth, value)
                if trees:
                    trees[p.root].nodes[node]["value"] = value
            # stable sort: ties keep proposal order (earlier beams, then the policy's order)
            beams = [sorted(ch, key=lambda p: -self.value(p))[: c.width] for ch in children]
            if depth + 1 < c.depth:
                beams = self._simulate(beams, trees)
        out = []
        for i, (beam, stats) in enumerate(zip(beams, m.stats())):
            best = beam[0]
            alts = sorted(first[i].items(), key=lambda kv: (-kv[1][0], -kv[1][1]))
            tree = trees[i].finish(best.actions[0]) if trees else None
            out.append(PlanResult(action=best.actions[0], value=self.value(best),
                                  alternatives=tuple((a, v) for a, (_, v) in alts), stats=stats, tree=tree))
        return out

    def _simulate(self, beams: list[list[_Path]], trees: list[TreeRecorder] | None) -> list[list[_Path]]:
        """Advance every kept path that just grew by its last action through the world model."""
        fresh = [p for beam in beams for p in beam if not p.done and len(p.actions) > p.simulated]
        if not fresh:
            return beams
        sims = self.models.predict([p.state for p in fresh], [p.actions[-1] for p in fresh], [p.root for p in fresh])
        moved = {id(p): replace(p, state=s.state, simulated=len(p.actions), done=s.won) for p, s in zip(fresh, sims)}
        if trees:
            for p, s in zip(fresh, sims):
                trees[p.root].nodes[p.node]["observation"] = s.state.observation
        return [[moved.get(id(p), p) for p in beam] for beam in beams]
