"""Best-of-N (the seed paper's inference-time search): N policy proposals, keep the PRM's best.

No world model: it ranks the root's own candidate actions by Q(root, a). Two model calls per
batch of roots: one ``propose``, one ``score`` over every (root, candidate) pair.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mpr.planners.search import Models, first_best
from mpr.planners.tree import TreeRecorder

from mpr.config import require
from mpr.core import PlanResult, State


@dataclass(frozen=True)
class BestOfNConfig:
    n: int = 8  # proposals per root (duplicates are scored once)

    def __post_init__(self) -> None:
        require(self.n >= 1, f"best-of-n needs n >= 1, got {self.n}")


class BestOfNPlanner:
    def __init__(self, models: Models, config: BestOfNConfig = BestOfNConfig(), record_tree: bool = False):
        self.models, self.config, self.record_tree = models, config, record_tree

    def __call__(self, roots: Sequence[State]) -> list[PlanResult]:
        if not roots:
            return []
        m = self.models
        owners = m.begin(len(roots))
        cands = m.propose(roots, self.config.n, owners)
        pair_owner = [i for i, cs in enumerate(cands) for _ in cs]
        scores = m.score([roots[i] for i in pair_owner], [c.action for cs in cands for c in cs], pair_owner)
        m.add_nodes(pair_owner)
        out, k = [], 0
        for i, (root, cs, stats) in enumerate(zip(roots, cands, m.stats())):
            qs = scores[k : k + len(cs)]
            k += len(cs)
            if not cs:
                raise ValueError(f"Policy.propose returned no action for {root.task_id}")
            best = first_best(qs)
            tree = None
            if self.record_tree:
                rec = TreeRecorder(root)
                for c, q in zip(cs, qs):
                    rec.add(0, c.action, prior=c.logprob, q=q, value=q)
                tree = rec.finish(chosen=cs[best].action)
            order = sorted(range(len(cs)), key=lambda j: (-qs[j], j))
            out.append(PlanResult(action=cs[best].action, value=qs[best],
                                  alternatives=tuple((cs[j].action, qs[j]) for j in order), stats=stats, tree=tree))
        return out
