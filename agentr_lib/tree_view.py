"""Draw a search tree: depth downwards, leaves coloured by reward, a chosen (good, bad) pair highlighted."""
from __future__ import annotations

from matplotlib import colormaps

from .mcts import Tree


def _layout(tree: Tree) -> dict[int, tuple[float, float]]:
    """Leaves spread left to right in depth-first order; a parent sits above the middle of its children."""
    xy: dict[int, tuple[float, float]] = {}
    next_x = [0.0]

    def place(node_id: int) -> float:
        node = tree.nodes[node_id]
        if node.children:
            xs = [place(c) for c in node.children]
            x = (xs[0] + xs[-1]) / 2
        else:
            x, next_x[0] = next_x[0], next_x[0] + 1
        xy[node_id] = (x, -node.depth)
        return x

    place(0)
    return xy


def draw_tree(tree: Tree, ax=None, highlight: tuple[int | None, int | None] | None = None, labels: bool = True):
    """Plot `tree` on `ax` (a new figure if None); `highlight` = (good leaf id, bad leaf id). Returns the figure."""
    import matplotlib.pyplot as plt  # lazily: importing this module must not pick a backend

    highlight = highlight or (None, None)
    if ax is None:
        _, ax = plt.subplots(figsize=(max(4.0, 0.35 * len(tree.leaves()) + 2), 1.0 + 0.6 * _depth(tree)))
    xy, cmap = _layout(tree), colormaps["RdYlGn"]
    on_path = {leaf: set(tree.path(leaf)) | {0} for leaf in highlight if leaf is not None}
    colours = dict(zip(highlight, ("tab:green", "tab:red")))
    for node in tree.nodes[1:]:
        (x0, y0), (x1, y1) = xy[node.parent], xy[node.id]
        hit = [leaf for leaf, ids in on_path.items() if node.id in ids]
        ax.plot([x0, x1], [y0, y1], color=colours[hit[0]] if hit else "0.75", lw=2.5 if hit else 0.8, zorder=1)
    for node in tree.nodes:
        x, y = xy[node.id]
        if node.terminal and not node.children:  # a leaf: coloured by its reward, failures as crosses
            ax.scatter(x, y, s=40, c=[cmap(node.reward)], marker="X" if node.failed else "o", edgecolors="k",
                       zorder=2)
            if labels:
                ax.annotate(f"{node.reward:.2g}", (x, y), textcoords="offset points", xytext=(0, -11),
                            ha="center", fontsize=7)
        else:  # inner node, or an open node the search never expanded (hollow)
            ax.scatter(x, y, s=14, facecolors="0.3" if node.children else "none", edgecolors="0.3", zorder=2)
    ax.set_title(f"{tree.env} task {tree.task_id}: {len(tree.nodes)} nodes, root value {tree.root.value:g}"
                 f" / {tree.root.visits} visits", fontsize=9)
    ax.set_ylabel("depth")
    depths = range(0, _depth(tree) + 1, max(1, _depth(tree) // 5))
    ax.set_yticks([-d for d in depths], [str(d) for d in depths])
    ax.set_xticks([])
    return ax.figure


def _depth(tree: Tree) -> int:
    return max(n.depth for n in tree.nodes)
