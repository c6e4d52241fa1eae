"""Monte-Carlo tree search (PUCT) over the learned world model, with the PRM as value.

Nodes are states; edges are candidate actions with a prior P (softmax of the policy's
log-probs / ``prior_temperature``; uniform for policies without them) and the PRM's Q(s, a).

One iteration, for all roots together:

1. **select** up to ``leaves_per_iter`` leaves per root. From the root, follow the edge that
   maximizes ``Q̄ + c_puct · P · sqrt(1 + N_parent) / (1 + N)``, where Q̄ is the edge's mean
   backed-up value, or its PRM score while unvisited. A walk ends at an edge whose child was
   never simulated (a leaf) or whose child is final (won, depth ``max_depth``, no candidates).
   Each walk adds a virtual loss to its edges (a pending visit worth ``-virtual_loss``) so the
   next walk of the same iteration spreads to other leaves.
2. **evaluate** every new leaf with one ``predict`` call (the child state), one ``propose`` call
   (the child's candidates) and one ``score`` call (Q of each). The leaf edge's value is 1 when
   the simulated step wins, else ``gamma · max_a' Q(child, a')`` (0 without candidates).
3. **back up**: remove the virtual loss; every edge on the walk gets one visit and the value,
   discounted by ``gamma`` per step up.

With ``leaves_per_iter=1`` the virtual loss is always removed before the next walk, so the
search is exactly sequential MCTS (tested against an independent reference). The decision is
the root edge with the most visits (ties: higher mean value, then the policy's order).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from mpr.planners.search import Candidate, Models
from mpr.planners.tree import TreeRecorder

from mpr.config import require
from mpr.core import PlanResult, State


@dataclass(frozen=True)
class MCTSConfig:
    simulations: int = 32  # leaf walks per root per decision
    leaves_per_iter: int = 4  # walks per root batched into one iteration
    candidates: int = 8  # C: policy proposals per expanded node
    c_puct: float = 1.0
    max_depth: int = 5  # nodes this deep are evaluated but not expanded further
    gamma: float = 1.0
    virtual_loss: float = 1.0
    prior_temperature: float = 1.0

    def __post_init__(self) -> None:
        require(self.simulations >= 1, f"mcts simulations must be >= 1, got {self.simulations}")
        require(self.leaves_per_iter >= 1, f"leaves_per_iter must be >= 1, got {self.leaves_per_iter}")
        require(self.candidates >= 1, f"mcts candidates must be >= 1, got {self.candidates}")
        require(self.c_puct >= 0, f"c_puct must be >= 0, got {self.c_puct}")
        require(self.max_depth >= 1, f"max_depth must be >= 1, got {self.max_depth}")
        require(0 < self.gamma <= 1, f"gamma must be in (0, 1], got {self.gamma}")
        require(self.virtual_loss >= 0, f"virtual_loss must be >= 0, got {self.virtual_loss}")
        require(self.prior_temperature > 0, f"prior_temperature must be > 0, got {self.prior_temperature}")


@dataclass(eq=False)
class _Edge:
    parent: _Node
    action: str
    prior: float
    q: float  # the PRM's Q(parent.state, action)
    visits: int = 0
    total: float = 0.0
    pending: int = 0  # virtual visits of walks not yet backed up
    child: _Node | None = None


@dataclass(eq=False)
class _Node:
    state: State
    depth: int
    edges: list[_Edge] = field(default_factory=list)
    final: bool = False  # never descended into: won, depth limit, or no candidates
    value: float = 0.0  # what reaching this node is worth to its incoming edge (set on evaluation)


def priors(cands: Sequence[Candidate], temperature: float) -> list[float]:
    """softmax(logprob / temperature) over the candidates."""
    if not cands:
        return []
    top = max(c.logprob for c in cands)
    w = [math.exp((c.logprob - top) / temperature) for c in cands]
    s = sum(w)
    return [x / s for x in w]


class MCTSPlanner:
    def __init__(self, models: Models, config: MCTSConfig = MCTSConfig(), record_tree: bool = False):
        self.models, self.config, self.record_tree = models, config, record_tree

    # -- PUCT ----------------------------------------------------------------------------------
    def _mean(self, e: _Edge) -> float:
        n = e.visits + e.pending
        return (e.total - self.config.virtual_loss * e.pending) / n if n else e.q

    def _pick(self, node: _Node) -> _Edge:
        c = self.config
        parent_visits = sum(e.visits + e.pending for e in node.edges)
        scale = c.c_puct * math.sqrt(1 + parent_visits)
        best, best_u = node.edges[0], -math.inf
        for e in node.edges:
            u = self._mean(e) + scale * e.prior / (1 + e.visits + e.pending)
            if u > best_u:
                best, best_u = e, u
        return best

    def _walk(self, root: _Node) -> list[_Edge]:
        path, node = [], root
        while True:
            edge = self._pick(node)
            path.append(edge)
            if edge.child is None or edge.child.final:
                return path
            node = edge.child

    # -- one decision ----------------------------------------------------------------------------
    def __call__(self, roots: Sequence[State]) -> list[PlanResult]:
        if not roots:
            return []
        m, c = self.models, self.config
        m.begin(len(roots))
        trees = [_Node(r, 0) for r in roots]
        self._expand(list(range(len(roots))), trees)
        for i, t in enumerate(trees):
            if not t.edges:
                raise ValueError(f"Policy.propose returned no action for {roots[i].task_id}")
        left = [c.simulations] * len(roots)
        while any(left):
            walks: list[tuple[int, list[_Edge]]] = []
            for i, root in enumerate(trees):
                pending: set[int] = set()
                for _ in range(min(c.leaves_per_iter, left[i])):
                    path = self._walk(root)
                    leaf = path[-1]
                    if leaf.child is None and id(leaf) in pending:
                        break  # the same unevaluated leaf again: evaluate what we have first
                    pending.add(id(leaf))
                    for e in path:
                        e.pending += 1
                    walks.append((i, path))
                    left[i] -= 1
            self._evaluate(walks)
            for _, path in walks:
                self._backup(path)
        return [self._decide(i, t, s) for i, (t, s) in enumerate(zip(trees, m.stats()))]

    def _evaluate(self, walks: list[tuple[int, list[_Edge]]]) -> None:
        """Simulate every new leaf edge, then expand the children that are not final."""
        c = self.config
        new: list[tuple[int, _Edge]] = []
        seen: set[int] = set()
        for i, path in walks:
            leaf = path[-1]
            if leaf.child is None and id(leaf) not in seen:
                seen.add(id(leaf))
                new.append((i, leaf))
        if not new:
            return
        sims = self.models.predict([e.parent.state for _, e in new], [e.action for _, e in new], [i for i, _ in new])
        self.models.add_nodes([i for i, _ in new])
        grow: list[tuple[int, _Node]] = []
        for (i, e), sim in zip(new, sims):
            e.child = _Node(sim.state, e.parent.depth + 1)
            if sim.won:
                e.child.final, e.child.value = True, 1.0
            else:
                grow.append((i, e.child))
        if grow:
            self._expand([i for i, _ in grow], [n for _, n in grow])
            for _, n in grow:
                best = max((e.q for e in n.edges), default=0.0)
                n.value = c.gamma * best
                n.final = n.depth >= c.max_depth or not n.edges

    def _expand(self, owners: list[int], nodes: list[_Node]) -> None:
        """Give ``nodes`` their candidate edges: one propose call, one score call."""
        c, m = self.config, self.models
        cands = m.propose([n.state for n in nodes], c.candidates, owners)
        pairs = [(o, n, x) for o, n, cs in zip(owners, nodes, cands) for x in cs]
        qs = m.score([n.state for _, n, _ in pairs], [x.action for _, _, x in pairs], [o for o, _, _ in pairs])
        k = 0
        for n, cs in zip(nodes, cands):
            for x, p in zip(cs, priors(cs, c.prior_temperature)):
                n.edges.append(_Edge(n, x.action, p, qs[k]))
                k += 1

    def _backup(self, path: list[_Edge]) -> None:
        leaf = path[-1]
        assert leaf.child is not None
        v = leaf.child.value
        for e in reversed(path):
            e.pending -= 1
            e.visits += 1
            e.total += v
            v *= self.config.gamma

    def _decide(self, i: int, root: _Node, stats) -> PlanResult:
        order = sorted(range(len(root.edges)),
                       key=lambda k: (-root.edges[k].visits, -self._mean(root.edges[k]), k))
        best = root.edges[order[0]]
        tree = self._record(root, best.action) if self.record_tree else None
        return PlanResult(action=best.action, value=self._mean(best),
                          alternatives=tuple((root.edges[k].action, self._mean(root.edges[k])) for k in order),
                          stats=stats, tree=tree)

    def _record(self, root: _Node, chosen: str) -> dict:
        rec = TreeRecorder(root.state)
        stack = [(root, 0)]
        while stack:
            node, nid = stack.pop()
            for e in node.edges:
                cid = rec.add(nid, e.action, prior=e.prior, q=e.q, value=self._mean(e), visits=e.visits,
                              observation=e.child.state.observation if e.child else None)
                if e.child is not None:
                    stack.append((e.child, cid))
        return rec.finish(chosen)
