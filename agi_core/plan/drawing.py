"""A work plan as a picture: its dependency graph, one colour per slot (`agi distrib APP --graph FILE`).

Partitions are laid out left to right by topological generation (`nx.topological_generations`:
the first column needs nothing, each next one only what the columns before it produce), with
`nx.multipartite_layout`; within a column, partitions of the same slot sit together. Arrows go
from a dependency to the partition that receives its result. Small graphs get their ids as
labels; big ones are drawn as points and lines, which still show the shape and the slots.

matplotlib is needed (``pip install matplotlib``) and imported only here, when drawing. It draws
on its Agg canvas directly (no display, and pyplot's current figure and backend are left alone);
the file's suffix chooses the format (``.png``, ``.svg``, ``.pdf``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..base.errors import AgiError, PlanError
from .dag import dependency_graph

if TYPE_CHECKING:
    from .workplan import WorkPlan

__all__ = ["MAX_ARROWS", "MAX_LABELS", "draw_plan", "plan_figure"]

#: graphs with at most this many partitions get their ids written on them
MAX_LABELS = 60
#: up to this many dependency edges are drawn as arrows; more as plain lines (still left to right)
MAX_ARROWS = 1000
#: slots named in the legend (the rest are counted)
MAX_LEGEND = 24


def draw_plan(plan: WorkPlan, path: str | Path, *, labels: bool | None = None) -> Path:
    """Draw ``plan``'s dependency graph to ``path``, partitions coloured by slot, with a legend.

    ``labels``: write partition ids on the nodes (default: when there are at most `MAX_LABELS`).
    A plan without deps is one column. Returns the path written.
    """
    path = Path(path)
    plan_figure(plan, labels=labels).savefig(path)
    return path


def plan_figure(plan: WorkPlan, *, labels: bool | None = None) -> Any:
    """`draw_plan`'s picture as a matplotlib ``Figure`` (on the Agg canvas), for a caller that
    writes it itself (the run report's DAG page)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.lines import Line2D
    except ImportError:
        raise AgiError("drawing a work plan needs matplotlib, which is not installed",
                       fix="pip install matplotlib") from None
    import networkx as nx

    graph = dependency_graph(plan.partitions)
    try:
        generations = list(nx.topological_generations(graph))
    except nx.NetworkXUnfeasible:
        raise PlanError("cannot draw the plan: its partitions form a dependency cycle",
                        fix="check it first: `agi run APP --plan FILE` names the cycle") from None
    slot_of = plan.slot_of()
    slot_index = {slot.name: k for k, slot in enumerate(plan.slots)}
    rank = {pid: k for ids in plan.assignment.values() for k, pid in enumerate(ids)}
    unplaced = len(plan.slots)  # a partition the assignment misses: drawn grey
    where = {pid: slot_index.get(slot_of.get(pid, ""), unplaced) for pid in graph}
    layers = {k: sorted(generation, key=lambda pid: (where[pid], rank.get(pid, 0))) for k, generation in enumerate(generations)}
    pos = _layered(graph, layers)

    n = graph.number_of_nodes()
    show_labels = n <= MAX_LABELS if labels is None else labels
    tallest = max((len(layer) for layer in layers.values()), default=1)
    width = min(max(7.0, 1.6 * len(layers) + 3.0), 40.0)
    height = min(max(4.0, (0.45 if show_labels else 0.12) * tallest + 1.5), 40.0)
    node_size = 320 if show_labels else max(4.0, min(120.0, 12000.0 / max(n, 1)))

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    colours = _slot_colours(len(plan.slots))
    grey = (0.6, 0.6, 0.6, 1.0)
    nodes = [pid for layer in layers.values() for pid in layer]
    if graph.number_of_edges():
        arrows = graph.number_of_edges() <= MAX_ARROWS
        nx.draw_networkx_edges(graph, pos, ax=ax, arrows=arrows, arrowstyle="-|>" if arrows else None, arrowsize=10,
                               node_size=node_size, edge_color="#8a8a8a", width=1.0 if arrows else 0.3,
                               alpha=1.0 if arrows else 0.15)
    nx.draw_networkx_nodes(graph, pos, nodelist=nodes, ax=ax, node_size=node_size,
                           node_color=[colours[where[pid]] if where[pid] < unplaced else grey for pid in nodes],
                           edgecolors="#333333" if show_labels else "none", linewidths=0.6)
    if show_labels:
        nx.draw_networkx_labels(graph, pos, ax=ax, font_size=7,
                                bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.75})

    counts = {slot.name: len(plan.assignment.get(slot.name, ())) for slot in plan.slots}
    used = [slot for slot in plan.slots if counts[slot.name]]
    handles: list[Any] = [Line2D([], [], marker="o", linestyle="", markersize=8, color=colours[slot_index[slot.name]],
                                 label=f"{slot.name} ({counts[slot.name]})") for slot in used[:MAX_LEGEND]]
    if len(used) > MAX_LEGEND:
        handles.append(Line2D([], [], linestyle="", label=f"… {len(used) - MAX_LEGEND} more slots"))
    if handles:
        ax.legend(handles=handles, title="slot (partitions)", loc="upper left", bbox_to_anchor=(1.0, 1.0),
                  fontsize=8, title_fontsize=8, frameon=False)
    ax.set_title(f"{plan.app}: {n} partitions, {graph.number_of_edges()} dependencies, {len(used)} slots\n"
                 f"{len(layers)} generation{'s' * (len(layers) != 1)}, left to right", fontsize=10)
    ax.invert_yaxis()  # the first slot at the top, as in the legend
    ax.set_axis_off()
    return figure


def _layered(graph: Any, layers: dict[int, list[str]]) -> dict[str, Any]:
    """`nx.multipartite_layout` with the given columns. Its cost grows with columns × nodes, so a
    plan of many generations (a long chain) gets the same layout computed in one step."""
    import networkx as nx

    if len(layers) <= 1000:
        return nx.multipartite_layout(graph, subset_key=layers)
    import numpy as np

    nodes = [pid for layer in layers.values() for pid in layer]
    xs = np.concatenate([np.full(len(layer), k, dtype=float) for k, layer in enumerate(layers.values())])
    ys = np.concatenate([np.arange(len(layer), dtype=float) - (len(layer) - 1) / 2 for layer in layers.values()])
    xy = np.column_stack([xs - (len(layers) - 1) / 2, ys])
    return dict(zip(nodes, nx.rescale_layout(xy, scale=1), strict=True))


def _slot_colours(count: int) -> list[Any]:
    """Distinct colours: the qualitative tab10 / tab20 palettes, or evenly spaced hues beyond 20."""
    from matplotlib import colormaps

    if count <= 10:
        return [colormaps["tab10"](k) for k in range(count)]
    if count <= 20:
        return [colormaps["tab20"](k) for k in range(count)]
    turbo = colormaps["turbo"]
    return [turbo(k / max(count - 1, 1)) for k in range(count)]
