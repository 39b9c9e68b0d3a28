"""Validate evidence once, at the boundary (after scikit-learn's ``check_array``).

Each helper checks one kind of input, raises an error that says what was
expected, what arrived, where and how to fix it, and returns the converted
value; code further in trusts it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["PROB_SUM_ATOL", "check_labels", "check_pred_probs"]

#: Tolerance on the row sums of probability matrices (float32 softmax outputs
#: written as text lose about 1e-6 per entry; 1e-3 leaves room for rounding to
#: 4 decimals in a CSV).
PROB_SUM_ATOL = 1e-3

_PROBS_SHAPE = "{name} must have shape (N, K) = ({n}, {k}); got {shape}"
_PROBS_NAN = "{name} has a non-finite value at row {row} (column {col}); {fix}"
_PROBS_RANGE = "{name} has a value outside [0, 1] at row {row} (column {col}): {value!r}; {fix}"
_PROBS_SUM = (
    "{name} row {row} sums to {total:.6g}, not 1 (tolerance {atol:g}); "
    "pass probabilities (softmax outputs), not logits or scores"
)
_LABELS_RANGE = "{name} must be class indices in [0, {k}); got {value!r} at row {row}"


def check_pred_probs(
    pred_probs: np.ndarray,
    *,
    n_samples: int | None = None,
    n_classes: int | None = None,
    name: str = "pred_probs",
    atol: float = PROB_SUM_ATOL,
    row_names: np.ndarray | None = None,
) -> np.ndarray:
    """Check an ``(N, K)`` probability matrix and return it as float64.

    Parameters
    ----------
    pred_probs : array-like
        Shape ``(N, K)``.
    n_samples, n_classes : int, optional
        Expected N and K.
    name : str
        Name used in messages.
    atol : float
        Tolerance on each row sum.
    row_names : numpy.ndarray, optional
        Shape ``(N,)`` labels of the rows (e.g. sample ids) quoted in messages.

    Returns
    -------
    numpy.ndarray
        Shape ``(N, K)`` float64.

    Raises
    ------
    ValueError
        On a wrong shape, a non-finite value, a value outside ``[0, 1]`` or a
        row that does not sum to one.
    """
    p = np.asarray(pred_probs, dtype=np.float64)
    n = p.shape[0] if p.ndim >= 1 else 0
    if (
        p.ndim != 2
        or (n_samples is not None and n != n_samples)
        or (n_classes is not None and p.shape[1] != n_classes)
    ):
        raise ValueError(
            _PROBS_SHAPE.format(
                name=name, n=n_samples if n_samples is not None else "N",
                k=n_classes if n_classes is not None else "K", shape=p.shape,
            )
        )

    def _where(i: int) -> str:
        return f"{i} ({row_names[i]!r})" if row_names is not None else str(i)

    bad = ~np.isfinite(p)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ValueError(
            _PROBS_NAN.format(name=name, row=_where(int(r)), col=int(c),
                              fix="remove the row or re-run the model on it")
        )
    out = (p < 0) | (p > 1)
    if out.any():
        r, c = np.argwhere(out)[0]
        raise ValueError(
            _PROBS_RANGE.format(name=name, row=_where(int(r)), col=int(c), value=float(p[r, c]),
                                fix="pass probabilities, not logits")
        )
    sums = p.sum(axis=1)
    off = np.flatnonzero(np.abs(sums - 1) > atol)
    if off.size:
        i = int(off[0])
        raise ValueError(_PROBS_SUM.format(name=name, row=_where(i), total=sums[i], atol=atol))
    return p


def check_labels(
    labels: np.ndarray, *, n_classes: int, name: str = "labels"
) -> np.ndarray:
    """Check class indices and return them as int64.

    Parameters
    ----------
    labels : array-like
        Shape ``(N,)``.
    n_classes : int
        K.
    name : str
        Name used in messages.

    Returns
    -------
    numpy.ndarray
        Shape ``(N,)`` int64.

    Raises
    ------
    ValueError
        When a label is not an integer in ``[0, K)``.
    """
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"{name} must have shape (N,); got {y.shape}")
    yf = y.astype(np.float64, copy=False) if y.dtype.kind in "iufb" else None
    if yf is None:
        raise ValueError(f"{name} must be integer class indices; got dtype {y.dtype}")
    bad = np.flatnonzero(~np.isfinite(yf) | (yf < 0) | (yf >= n_classes) | (yf != np.round(yf)))
    if bad.size:
        i = int(bad[0])
        raise ValueError(_LABELS_RANGE.format(name=name, k=n_classes, value=y[i].item(), row=i))
    return y.astype(np.int64)
