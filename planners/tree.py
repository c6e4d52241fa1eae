"""Search trees as plain JSON (``mpr plan --tree``) and their picture.

A tree is ``{"root": {...}, "nodes": [...], "chosen": action}``; node 0 is the root state and
every other node is reached from ``parent`` by ``action``, with the planner's numbers for that
edge: ``prior`` (policy log-prob), ``q`` (PRM score of the action), ``visits`` (MCTS),
``value`` (what the planner believes taking it is worth) and the simulated ``observation``
(absent when the action was scored but never simulated).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mpr.core import State


class TreeRecorder:
    def __init__(self, root: State):
        self.nodes: list[dict[str, Any]] = [{"id": 0, "parent": None, "depth": 0, "action": None,
                                             "observation": root.observation}]
        self.root = {"task_id": root.task_id, "goal": root.goal, "num_actions": root.num_actions}

    def add(self, parent: int, action: str, *, prior: float = 0.0, q: float | None = None,
            value: float | None = None, visits: int = 0, observation: str | None = None) -> int:
        node = {"id": len(self.nodes), "parent": parent, "depth": self.nodes[parent]["depth"] + 1, "action": action,
                "prior": prior, "q": q, "value": value, "visits": visits, "observation": observation}
        self.nodes.append(node)
        return node["id"]

    def finish(self, chosen: str) -> dict[str, Any]:
        return {"root": self.root, "chosen": chosen, "nodes": self.nodes}


def write_tree(tree: dict[str, Any], path: Path, picture: bool = True) -> list[Path]:
    """Write ``path`` (.json) and, with ``picture`` and matplotlib/networkx installed, ``path`` .png.
    Returns the files written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(tree, indent=1))
    written = [path]
    if picture:
        png = draw_tree(tree, path.with_suffix(".png"))
        if png is not None:
            written.append(png)
    return written


def draw_tree(tree: dict[str, Any], path: Path, max_nodes: int = 80) -> Path | None:
    """A top-down picture: the root's candidates and every simulated node (up to ``max_nodes``,
    best-valued first); the chosen action green. None when matplotlib/networkx are missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import networkx as nx
    except ImportError:
        return None
    nodes = tree["nodes"]
    ranked = sorted(nodes[1:], key=lambda n: (n["parent"] != 0 and n.get("observation") is None,
                                              -(n.get("visits") or 0), -(n.get("value") or 0)))
    keep = {0} | {n["id"] for n in ranked[: max_nodes - 1]}
    keep = {i for i in keep if _ancestors_kept(nodes, i, keep)}
    g = nx.DiGraph()
    for n in nodes:
        if n["id"] in keep and n["parent"] is not None:
            g.add_edge(n["parent"], n["id"])
    pos = _tidy_layout(g, 0)
    chosen = next((n["id"] for n in nodes if n["parent"] == 0 and n["action"] == tree["chosen"]), None)
    labels = {0: "root"}
    for n in nodes:
        if n["id"] in keep and n["id"]:
            v = n.get("value")
            vis = f" n={n['visits']}" if n.get("visits") else ""
            labels[n["id"]] = f"{n['action']}\n{v:.3f}{vis}" if v is not None else n["action"]
    leaves = max(1, sum(1 for k in g.nodes if g.out_degree(k) == 0))
    depth = max((n["depth"] for n in nodes if n["id"] in keep), default=0)
    fig, ax = plt.subplots(figsize=(min(40, 2 + 1.3 * leaves), 2 + 1.6 * depth))
    colors = ["tab:green" if i == chosen else "tab:gray" if i == 0 else "tab:blue" for i in g.nodes]
    nx.draw_networkx(g, pos, ax=ax, labels={k: labels[k] for k in g.nodes}, node_color=colors, node_size=60,
                     font_size=6, arrows=False, edge_color="0.7")
    ax.set_title(f"{tree['root']['task_id']} — step {tree['root']['num_actions'] + 1}: chose {tree['chosen']!r}",
                 fontsize=9)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _tidy_layout(g: Any, root: int) -> dict[int, tuple[float, float]]:
    """Leaves left to right in depth-first order; a parent centred over its children."""
    pos: dict[int, tuple[float, float]] = {}
    next_x = [0.0]

    def place(node: int, depth: int) -> float:
        kids = list(g.successors(node)) if node in g else []
        if not kids:
            x = next_x[0]
            next_x[0] += 1
        else:
            xs = [place(k, depth + 1) for k in kids]
            x = (min(xs) + max(xs)) / 2
        pos[node] = (x, -depth)
        return x

    place(root, 0)
    return pos


def _ancestors_kept(nodes: list[dict[str, Any]], i: int, keep: set[int]) -> bool:
    while nodes[i]["parent"] is not None:
        i = nodes[i]["parent"]
        if i not in keep:
            return False
    return True
