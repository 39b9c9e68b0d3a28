"""Figures of a report drawn with matplotlib (offline) as compact inline SVG.

Each :class:`reports.model.FigureSpec` holds the numbers; :func:`render_figure` draws
them once per report and the HTML (and so the PDF) embeds the SVG text. Text stays
text (``svg.fonttype = 'none'``), which keeps the files small and searchable, and the
output is deterministic (no date, fixed element ids).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

from reports.model import FigureSpec

__all__ = ["FIGURE_KINDS", "render_figure"]

_RC = {"svg.fonttype": "none", "svg.hashsalt": "medaudit", "font.size": 8,
       "font.family": "DejaVu Sans", "axes.spines.top": False, "axes.spines.right": False,
       "axes.titlesize": 9, "axes.labelsize": 8, "legend.fontsize": 7, "legend.frameon": False}
_BLUE, _ORANGE, _GREY = "#1f5fa8", "#d9730d", "#888888"


def _new(width: float, height: float, ncols: int = 1) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(1, ncols)
    return fig, axes


def _svg(fig: Any, prefix: str) -> str:
    """SVG text without prolog, its element ids prefixed (several figures share one page)."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    return (text.replace(' id="', f' id="{prefix}-').replace("url(#", f"url(#{prefix}-")
            .replace('xlink:href="#', f'xlink:href="#{prefix}-'))


def _roc(d: dict[str, Any]) -> Any:
    fig, ax = _new(3.4, 3.2)
    ax.plot([0, 1], [0, 1], color=_GREY, lw=0.8, ls="--", label="chance")
    ax.plot(d["fpr"], d["tpr"], color=_BLUE, lw=1.5, label="out-of-fold")
    op = d.get("operating_point")
    if op:
        ax.plot([op["fpr"]], [op["tpr"]], "o", color=_ORANGE,
                label=f"operating point (threshold {op['threshold']:.3g})")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="1 - specificity (false-positive rate)",
           ylabel="sensitivity (true-positive rate)")
    ax.set_aspect("equal")
    ax.legend(loc="lower right")
    return fig


def _reliability(d: dict[str, Any]) -> Any:
    fig, ax = _new(3.4, 3.2)
    ax.plot([0, 1], [0, 1], color=_GREY, lw=0.8, ls="--", label="perfect calibration")
    xs, ys, lo, hi = [], [], [], []
    for b in d.get("bins") or []:
        obs = b.get("observed") or {}
        if b.get("mean_predicted") is None or obs.get("estimate") is None:
            continue
        xs.append(b["mean_predicted"])
        ys.append(obs["estimate"])
        lo.append(obs["estimate"] - (obs["ci_low"] if obs.get("ci_low") is not None else obs["estimate"]))
        hi.append((obs["ci_high"] if obs.get("ci_high") is not None else obs["estimate"]) - obs["estimate"])
    if xs:
        ax.errorbar(xs, ys, yerr=[lo, hi], fmt="o-", color=_BLUE, ms=3, lw=1, capsize=2,
                    label="observed (95% CI)")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="predicted probability", ylabel="observed frequency")
    ax.set_aspect("equal")
    ax.legend(loc="upper left")
    return fig


def _learning(d: dict[str, Any]) -> Any:
    fig, (a1, a2) = _new(6.6, 2.5, ncols=2)
    colors = ["#1f5fa8", "#d9730d", "#2e8b57", "#8e44ad", "#b03a2e", "#5d6d7e", "#117a65",
              "#7d3c98", "#a04000", "#1b4f72"]
    for i, f in enumerate(d.get("folds") or []):
        c = colors[i % len(colors)]
        ep = f.get("epoch") or []
        a1.plot(ep, f.get("train_loss") or [], color=c, lw=1, label=f"fold {f.get('fold')}")
        auc = [v if v is not None else float("nan") for v in f.get("inner_val_auc") or []]
        a2.plot(ep, auc, color=c, lw=1)
        best = f.get("best_epoch")
        if best in ep and best is not None:
            a2.plot([best], [auc[ep.index(best)]], "o", color=c, ms=3)
    a1.set(xlabel="epoch", ylabel="training loss", title="training loss")
    a2.set(xlabel="epoch", ylabel="AUC", title="inner-validation AUC", ylim=(0, 1.01))
    a1.legend(ncols=2)
    for a in (a1, a2):
        a.xaxis.get_major_locator().set_params(integer=True)
    return fig


def _class_counts(d: dict[str, Any]) -> Any:
    classes = d["classes"]
    fig, ax = _new(4.2, 0.5 + 0.32 * len(classes))
    y = list(range(len(classes)))
    ax.barh([v + 0.18 for v in y], d["images"], height=0.34, color=_BLUE, label="images")
    ax.barh([v - 0.18 for v in y], d["patients"], height=0.34, color=_ORANGE, label="patients")
    ax.set_yticks(y, classes)
    ax.invert_yaxis()
    ax.set_xlabel("count")
    ax.legend(loc="lower right")
    return fig


#: Figure kinds and the function that draws each.
FIGURE_KINDS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "roc": _roc, "reliability": _reliability, "learning_curves": _learning,
    "class_counts": _class_counts,
}


def render_figure(spec: FigureSpec) -> str:
    """Draw one figure as inline SVG text.

    Raises
    ------
    ValueError
        For an unknown figure kind, listing the valid ones.
    """
    from matplotlib import rc_context

    if spec.kind not in FIGURE_KINDS:
        raise ValueError(f"unknown figure kind {spec.kind!r}; valid kinds: {sorted(FIGURE_KINDS)}")
    with rc_context({**_RC, "svg.hashsalt": spec.id}):
        return _svg(FIGURE_KINDS[spec.kind](spec.data), spec.id)
