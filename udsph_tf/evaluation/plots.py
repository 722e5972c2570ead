"""PNG plots of one retrieval direction's curves (PR within Hamming radius, precision@N)."""

import os

import numpy as np


def _figure():
    # Figure + Agg canvas directly: no pyplot global state, no backend switch for the caller.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(4.5, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(1, 1, 1)


def plot_curves(metrics, path_prefix, title=None):
    """Write `<path_prefix>_pr.png` and `<path_prefix>_precision_at_n.png` from an
    evaluate_retrieval result; returns the two paths."""
    for key in ("pr_radius", "precision_at_n"):
        if key not in metrics:
            raise ValueError(f"plot_curves: metrics has no {key!r}; pass an evaluate_retrieval "
                             "result")
    folder = os.path.dirname(os.path.abspath(path_prefix))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"plot_curves: folder {folder} does not exist")
    label = title or os.path.basename(path_prefix)
    map_note = f"MAP {metrics['map_index']:.4f}" if "map_index" in metrics else ""
    paths = []

    pr = metrics["pr_radius"]
    fig, ax = _figure()
    recall, precision = np.asarray(pr["recall"]), np.asarray(pr["precision"])
    ax.plot(recall, precision, marker=".", markersize=4)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{label}: PR within Hamming radius 0..{len(recall) - 1}", fontsize=9)
    ax.grid(alpha=0.3)
    if map_note:
        ax.text(0.02, 0.04, map_note, transform=ax.transAxes, fontsize=8)
    fig.tight_layout()
    paths.append(f"{path_prefix}_pr.png")
    fig.savefig(paths[-1])

    pn = metrics["precision_at_n"]
    fig, ax = _figure()
    ax.plot(np.asarray(pn["n"]), np.asarray(pn["precision"]), marker=".", markersize=4)
    ax.set_xscale("log")
    ax.set_xlabel("N (top retrieved items, database-index ties)")
    ax.set_ylabel("precision@N")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{label}: precision@N", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    paths.append(f"{path_prefix}_precision_at_n.png")
    fig.savefig(paths[-1])
    return paths
