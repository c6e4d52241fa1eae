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


def draw_tree(tree: dict[str, Any], path: Path, max_nodes: int = 120) -> Path | None:
    """A layered picture of the tree (the best-valued ``max_nodes`` nodes); None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import networkx as nx
    except ImportError:
        return None
    nodes = tree["nodes"]
    keep = {0} | {n["id"] for n in sorted(nodes[1:], key=lambda n: -(n.get("value") or 0))[: max_nodes - 1]}
    keep = {i for i in keep if _ancestors_kept(nodes, i, keep)}
    g = nx.DiGraph()
    for n in nodes:
        if n["id"] in keep:
            g.add_node(n["id"], layer=n["depth"])
            if n["parent"] is not None:
                g.add_edge(n["parent"], n["id"])
    pos = nx.multipartite_layout(g, subset_key="layer", align="horizontal")
    pos = {k: (x, -y) for k, (x, y) in pos.items()}
    chosen = next((n["id"] for n in nodes if n["parent"] == 0 and n["action"] == tree["chosen"]), None)
    labels = {}
    for n in nodes:
        if n["id"] in keep:
            if n["id"] == 0:
                labels[0] = "root"
            else:
                v = n.get("value")
                vis = f" n={n['visits']}" if n.get("visits") else ""
                labels[n["id"]] = f"{n['action']}\n{v:.2f}{vis}" if v is not None else n["action"]
    fig, ax = plt.subplots(figsize=(max(8, 1.6 * max(1, len(keep)) ** 0.8), 2.5 + 2 * max(d for d in nx.get_node_attributes(g, "layer").values())))
    colors = ["tab:green" if i == chosen else "tab:blue" if i else "tab:gray" for i in g.nodes]
    nx.draw_networkx(g, pos, ax=ax, labels=labels, node_color=colors, node_size=120, font_size=6, arrows=False)
    ax.set_title(f"{tree['root']['task_id']} step {tree['root']['num_actions'] + 1}: chose {tree['chosen']}", fontsize=8)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _ancestors_kept(nodes: list[dict[str, Any]], i: int, keep: set[int]) -> bool:
    while nodes[i]["parent"] is not None:
        i = nodes[i]["parent"]
        if i not in keep:
            return False
    return True
