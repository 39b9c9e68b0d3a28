"""Figures of the dashboard: the report's figures (drawn by :mod:`reports.figures`) and the forest plot."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import streamlit as st

from reports.figures import FIGURE_KINDS
from reports.model import FigureSpec

__all__ = ["forest_plot", "report_figure"]

_RC = {
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "legend.frameon": False,
}


def report_figure(spec: FigureSpec) -> None:
    """Draw one figure of the report model (same numbers, same drawing as the reports)."""
    from matplotlib import rc_context

    with rc_context(_RC):
        fig = FIGURE_KINDS[spec.kind](spec.data)
    st.pyplot(fig, width="content")
    if spec.caption:
        st.caption(spec.caption)


def _est(value: Any) -> tuple[float, float, float] | None:
    if not isinstance(value, Mapping) or value.get("estimate") is None:
        return None
    e = float(value["estimate"])
    lo = value.get("ci_low")
    hi = value.get("ci_high")
    return e, float(lo) if lo is not None else e, float(hi) if hi is not None else e


def forest_plot(
    groups: Sequence[Mapping[str, Any]],
    metrics: Sequence[str],
    overall: Mapping[str, Any] | None = None,
) -> Any:
    """A forest plot: one row per subgroup, one panel per metric, estimates with 95% CIs.

    Parameters
    ----------
    groups : sequence of dict
        ``{column, level, n, <metric>: Estimate dict or None, too_small}`` (the
        ``evidence["groups"]`` of a ``subgroup_performance`` finding).
    metrics : sequence of str
        Keys to plot (e.g. ``auc``, ``sensitivity``, ``specificity``).
    overall : dict, optional
        ``{metric: value}``: a dashed vertical reference line per panel.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    labels = [
        f"{g.get('column')} = {g.get('level')}  (n={g.get('n')})"
        + ("  too small" if g.get("too_small") else "")
        for g in groups
    ]
    with rc_context(_RC):
        fig = Figure(
            figsize=(3.0 * len(metrics) + 2.6, 1.2 + 0.36 * len(groups)), layout="constrained"
        )
        axes = fig.subplots(1, len(metrics), sharey=True, squeeze=False)[0]
        y = list(range(len(groups)))
        for ax, metric in zip(axes, metrics):
            for i, g in enumerate(groups):
                e = _est(g.get(metric))
                if e is None:
                    ax.text(
                        0.5,
                        i,
                        "not estimable",
                        va="center",
                        ha="center",
                        fontsize=7,
                        color="#888888",
                        transform=ax.get_yaxis_transform(),
                    )
                    continue
                small = bool(g.get("too_small"))
                color = "#888888" if small else "#1f5fa8"
                ax.errorbar(
                    [e[0]],
                    [i],
                    xerr=[[e[0] - e[1]], [e[2] - e[0]]],
                    fmt="s",
                    color=color,
                    ms=4,
                    capsize=2,
                    lw=1.2,
                    mfc="white" if small else color,
                )
            ref = (overall or {}).get(metric)
            ref_e = (
                _est(ref)
                if isinstance(ref, Mapping)
                else (
                    (float(ref), float(ref), float(ref)) if isinstance(ref, (int, float)) else None
                )
            )
            if ref_e is not None:
                ax.axvline(
                    ref_e[0], color="#d9730d", ls="--", lw=1, label=f"all images ({ref_e[0]:.2f})"
                )
                ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=1)
            ax.set_xlim(0, 1.02)
            ax.set_ylim(len(groups) - 0.5, -0.5)  # first group on top, none on an edge
            ax.set_xlabel(metric.replace("_", " ") + " (95% CI)")
            ax.grid(axis="x", color="#dddddd", lw=0.6)
        axes[0].set_yticks(y, labels)
    return fig
