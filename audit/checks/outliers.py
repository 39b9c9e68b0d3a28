"""Check ``outliers``: blank, saturated and out-of-distribution images.

Three kinds of evidence, each used when present:

* **Blank and saturated images** from per-image statistics: ``std_intensity``
  at most ``blank_std`` (grey levels in ``[0, 1]``) is blank; a
  ``saturated_fraction`` (pixels at or above 0.98) of at least
  ``saturated_fraction`` is saturated. These are never clinical images.
* **Image-property extremes**: every numeric column of
  ``image_properties.parquet`` (or, without it, cheap statistics computed from
  the image cache: intensity mean / spread / percentiles, black and saturated
  fractions, the Jensen-Shannon distance of the grey-level histogram to the
  median histogram, and a roughness ratio that is high for noise) gets a robust
  z-score ``(value - median) / max(robust_sd, min_property_scale)``
  (:func:`audit.stats.robust_center_scale`).
  A column in which more than ``max_column_flag_fraction`` of the images (and
  more than 10) exceed ``property_z`` describes a subgroup (a site, a scanner) rather than a few
  odd images; it is left to the shortcut and subgroup checks and listed as
  skipped.
* **Out-of-distribution images in feature space**: the mean cosine distance
  to the ``n_neighbors`` nearest other images (the k-nearest-neighbour score of
  cleanlab's ``OutOfDistribution`` on features, which reports
  ``exp(-distance)``: the same ranking), on model embeddings or, without them,
  on the downsampled image cache. Its log gets a robust z-score; images above
  ``ood_z`` are out of distribution. Out-of-fold embeddings of different fold
  models are not comparable, so neighbours and the robust scale are computed
  per fold model unless ``embeddings_from_one_model``.

Each image's **outlier score** is its largest z-score in units of its threshold
(``ood_z / config.ood_z`` or ``|property z| / config.property_z``): 1 or more
means flagged. Severity: *warning* when any image is blank or saturated, or when
more than ``warn_fraction`` of the images are flagged; *info* for fewer flagged
images; *pass* otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd

from audit._neighbors import Backend, knn, pixel_embedding, rows_per_chunk
from audit.check_spec import CheckSpec
from audit.context import AuditContext
from audit.findings import Finding
from audit.stats import finite_or_none, robust_center_scale, wilson_ci

__all__ = [
    "CACHE_STAT_COLUMNS",
    "SPEC",
    "TITLE_BLANK",
    "TITLE_PASS",
    "TITLE_UNUSUAL",
    "OutliersConfig",
    "check_outliers",
]

NAME = "outliers"

TITLE_BLANK = "Blank or saturated images"
TITLE_UNUSUAL = "Unusual images (outliers)"
TITLE_PASS = "No blank, saturated or out-of-distribution images found"

MSG_BLANK = (
    "{blank} image(s) are blank (almost no variation in grey level) and {saturated} are "
    "largely saturated (at least {sat_pct:.0f}% of pixels at maximum brightness). Such images "
    "carry no diagnostic content and usually come from failed exports, wrong windowing or "
    "placeholder files."
)
MSG_UNUSUAL = (
    "{count} image(s) ({pct:.2g}% of {n}) look unlike the rest of the dataset: {ood} are far "
    "from every other image in feature space and {prop} have extreme intensity statistics. "
    "They may be another modality or body part, a corrupted or mis-windowed export, or rare "
    "but genuine cases; the model's results on them are least trustworthy."
)
MSG_PASS = (
    "No image is blank or saturated, and none stands out from the others in its intensity "
    "statistics or its nearest-neighbour distance."
)
REC_BLANK = (
    "Open the listed images; remove or re-export the broken ones (check windowing and "
    "photometric interpretation) and re-run ingestion."
)
REC_UNUSUAL = (
    "Review the top-ranked images: exclude those outside the intended use (other modality, "
    "body part or view) and document the exclusion; keep genuine rare cases and consider "
    "collecting more like them."
)

_REFS = ["TRIPOD+AI:data-preparation", "CLAIM:data-sources", "GMLP-3", "EU-AI-Act-10(3)"]

#: Statistics computed from the image cache when ``image_properties`` is absent
#: (names shared with ingestion's ``image_properties.parquet`` where they agree).
CACHE_STAT_COLUMNS: tuple[str, ...] = (
    "mean_intensity", "std_intensity", "p01", "p99", "black_fraction",
    "saturated_fraction", "histogram_distance", "roughness",
)  # fmt: skip

_BLACK, _SATURATED, _HIST_BINS = 0.04, 0.98, 32
# A column flagging fewer images than this is never treated as describing a subgroup.
_MIN_SUBGROUP = 10


@dataclass(frozen=True)
class OutliersConfig:
    """Settings of :func:`check_outliers`.

    Attributes
    ----------
    ood_space : {'auto', 'embeddings', 'pixels', 'none'}, default 'auto'
        Feature space of the nearest-neighbour score: ``auto`` uses model
        embeddings when the run has them, else the downsampled image cache.
    n_neighbors : int, default 10
        ``k`` of the k-nearest-neighbour score (cleanlab's default): large
        enough that a handful of copies of an odd image do not hide it.
    ood_z : float, default 4.0
        Robust z of ``log`` kNN distance above which an image is out of
        distribution. For normal-like log distances 4 flags about 3 in 10^5
        clean images.
    property_z : float, default 6.0
        Robust |z| above which a property value is extreme. Higher than
        ``ood_z`` because many columns are tested (multiplicity) and
        fraction-valued columns are skewed.
    max_column_flag_fraction : float, default 0.02
        A property column flagging more than this share of images (and more
        than 10 images) describes a subgroup, such as a site or scanner, not
        outliers, and is skipped (reported in evidence).
    min_property_scale : float, default 0.02
        Floor of the robust standard deviation of a property column (2 % of the
        ``[0, 1]`` grey range): in datasets normalised to a fixed mean or spread
        the natural spread is near zero, and differences of a few percent must
        not become huge z-scores. Negligible for columns in pixels or bits.
    blank_std : float, default 0.01
        Grey-level standard deviation (``[0, 1]`` scale, ~2.5 of 255 levels) at
        or below which an image is blank.
    saturated_fraction : float, default 0.5
        Share of pixels at or above 0.98 from which an image is saturated: more
        than half the field burned out is not a usable exposure.
    image_stats : {'auto', 'properties', 'cache'}, default 'auto'
        Source of the statistics: ``auto`` uses ``image_properties`` when it has
        ``std_intensity`` and ``saturated_fraction``, else the image cache.
    exclude_property_columns : tuple of str, default ('corner_mark_corner',)
        Numeric columns that are codes, not measurements.
    warn_fraction : float, default 0.01
        Share of flagged images above which the finding is a warning: beyond
        1 % outliers are a property of the dataset, not of a few files.
    top_n : int, default 20
        Images listed with their scores.
    pixel_embedding_size : int, default 16
        Block-averaged side of the image-cache features.
    embeddings_from_one_model : bool, default False
        Set when all embeddings come from one model (frozen backbone, external).
    min_group_size : int, default 20
        Fewest rows of one fold model needed for its kNN score and robust scale.
    neighbors_backend : {'auto', 'exact', 'ivf'}, default 'auto'
        See :func:`audit._neighbors.knn`.
    exact_limit : int or None, default None
        Rows searched by brute force under ``auto``; ``None``: as many as keep
        the work ``N**2 * D`` under :data:`audit._neighbors.EXACT_MAX_WORK`.
    max_sample_ids : int, default 2000
        Affected ``sample_ids`` listed per finding (most unusual first).
    """

    ood_space: Literal["auto", "embeddings", "pixels", "none"] = "auto"
    n_neighbors: int = 10
    ood_z: float = 4.0
    property_z: float = 6.0
    max_column_flag_fraction: float = 0.02
    min_property_scale: float = 0.02
    blank_std: float = 0.01
    saturated_fraction: float = 0.5
    image_stats: Literal["auto", "properties", "cache"] = "auto"
    exclude_property_columns: tuple[str, ...] = ("corner_mark_corner",)
    warn_fraction: float = 0.01
    top_n: int = 20
    pixel_embedding_size: int = 16
    embeddings_from_one_model: bool = False
    min_group_size: int = 20
    neighbors_backend: Backend = "auto"
    exact_limit: int | None = None
    max_sample_ids: int = 2000

    def __post_init__(self) -> None:
        if self.ood_space not in ("auto", "embeddings", "pixels", "none"):
            raise ValueError(
                f"ood_space must be one of 'auto', 'embeddings', 'pixels', 'none'; got {self.ood_space!r}"
            )
        if self.image_stats not in ("auto", "properties", "cache"):
            raise ValueError(
                f"image_stats must be one of 'auto', 'properties', 'cache'; got {self.image_stats!r}"
            )
        if self.neighbors_backend not in get_args(Backend):
            raise ValueError(
                f"neighbors_backend must be one of {list(get_args(Backend))}; "
                f"got {self.neighbors_backend!r}"
            )
        for name in ("ood_z", "property_z"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0; got {getattr(self, name)!r}")
        object.__setattr__(self, "exclude_property_columns", tuple(self.exclude_property_columns))


# --------------------------------------------------------------------------- statistics
def _cache_stats(images: np.ndarray) -> pd.DataFrame:
    """Cheap per-image statistics of the cache, columns :data:`CACHE_STAT_COLUMNS`.

    Grey level = channel mean scaled to ``[0, 1]`` (uint8 / 255; floats as stored).
    """
    if images.ndim == 3:
        images = images[:, None]
    n = images.shape[0]
    chunk_rows = rows_per_chunk(images, values=1 << 22)
    cols: dict[str, np.ndarray] = {c: np.empty(n, np.float64) for c in CACHE_STAT_COLUMNS}
    hists = np.empty((n, _HIST_BINS), np.float32)
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    for a in range(0, n, chunk_rows):
        block = np.asarray(images[a : a + chunk_rows], dtype=np.float32).mean(axis=1) / scale
        m = block.shape[0]
        flat = block.reshape(m, -1)
        sl = slice(a, a + m)
        cols["mean_intensity"][sl] = flat.mean(axis=1)
        std = flat.std(axis=1)
        cols["std_intensity"][sl] = std
        cols["p01"][sl], cols["p99"][sl] = np.percentile(flat, [1, 99], axis=1)
        cols["black_fraction"][sl] = (flat < _BLACK).mean(axis=1)
        cols["saturated_fraction"][sl] = (flat >= _SATURATED).mean(axis=1)
        dx = np.abs(np.diff(block, axis=2)).mean(axis=(1, 2))
        dy = np.abs(np.diff(block, axis=1)).mean(axis=(1, 2))
        cols["roughness"][sl] = (dx + dy) / 2 / (std + 1.0 / 255)
        bins = np.clip((flat * _HIST_BINS).astype(np.int64), 0, _HIST_BINS - 1)
        bins += np.arange(m)[:, None] * _HIST_BINS
        counts = np.bincount(bins.ravel(), minlength=m * _HIST_BINS).reshape(m, _HIST_BINS)
        hists[sl] = counts / flat.shape[1]
    rng = np.random.default_rng(0)
    ref_rows = np.sort(rng.choice(n, size=min(n, 20_000), replace=False))
    ref = np.median(hists[ref_rows], axis=0)
    ref = ref / ref.sum() if ref.sum() > 0 else np.full(_HIST_BINS, 1.0 / _HIST_BINS)
    cols["histogram_distance"] = _js_distance(hists, ref.astype(np.float32))
    return pd.DataFrame(cols)


def _js_distance(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen-Shannon distance (base 2, in [0, 1]) of each row of ``p`` to ``q``."""
    m = 0.5 * (p + q[None, :])

    def kl(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(a > 0, a * np.log2(a / b), 0.0)
        return t.sum(axis=1)

    js = 0.5 * kl(p, m) + 0.5 * kl(np.broadcast_to(q, p.shape), m)
    return np.sqrt(np.clip(js, 0.0, 1.0)).astype(np.float64)


def _property_table(ctx: AuditContext, config: OutliersConfig) -> tuple[pd.DataFrame, str]:
    """Numeric per-image statistics and where they came from."""
    use_props = False
    if config.image_stats != "cache" and ctx.has("image_properties"):
        props = ctx.get("image_properties")
        has_core = {"std_intensity", "saturated_fraction"} <= set(props.columns)
        use_props = config.image_stats == "properties" or has_core
    if not use_props:
        return _cache_stats(ctx.get("images")), "image cache"
    table = {}
    for c in props.columns:
        s = props[c]
        if c == "sample_id" or c in config.exclude_property_columns:
            continue
        if pd.api.types.is_bool_dtype(s) or not pd.api.types.is_numeric_dtype(s):
            continue
        table[c] = s.to_numpy(dtype=np.float64, na_value=np.nan)
    return pd.DataFrame(table), "image_properties"


def _property_z(
    table: pd.DataFrame, config: OutliersConfig
) -> tuple[np.ndarray, list[str], list[str]]:
    """Robust z ``(N, P)`` of the usable columns, their names, and columns skipped."""
    n = len(table)
    used, skipped, zs = [], [], []
    for c in table.columns:
        v = table[c].to_numpy(dtype=np.float64)
        ok = np.isfinite(v)
        if ok.sum() < 3:
            continue
        med, s = robust_center_scale(v[ok])
        s = max(s, config.min_property_scale)
        z = np.where(ok, (v - med) / s, 0.0)
        n_flag = int((np.abs(z) > config.property_z).sum())
        if n_flag > max(config.max_column_flag_fraction * n, _MIN_SUBGROUP):
            skipped.append(str(c))
            continue
        used.append(str(c))
        zs.append(z)
    return (np.stack(zs, axis=1) if zs else np.zeros((n, 0))), used, skipped


def _ood_scores(
    ctx: AuditContext, config: OutliersConfig
) -> tuple[np.ndarray | None, np.ndarray | None, dict[str, Any]]:
    """kNN score ``(N,)`` (mean distance), its robust z ``(N,)`` and how it was computed."""
    space = config.ood_space
    if space == "none":
        return None, None, {"space": "none"}
    if space == "auto":
        space = "embeddings" if ctx.has("embeddings") else "pixels"
    if space == "embeddings" and not ctx.has("embeddings"):
        space = "pixels"
    groups = None
    if space == "embeddings":
        feats = ctx.get("embeddings")
        if not config.embeddings_from_one_model and ctx.has("folds"):
            folds = np.asarray(ctx.get("folds")).astype(np.int64)
            groups = np.where(folds < 0, 0, folds)
    else:
        feats = pixel_embedding(ctx.get("images"), size=config.pixel_embedding_size)
    n = feats.shape[0]
    if n < config.min_group_size:
        return None, None, {"space": space, "skipped": f"fewer than {config.min_group_size} images"}
    nb = knn(feats, config.n_neighbors, metric="cosine", backend=config.neighbors_backend,
             groups=groups, exact_limit=config.exact_limit)  # fmt: skip
    dist = np.where(np.isfinite(nb.distances), nb.distances, np.nan)
    with np.errstate(invalid="ignore"):
        score = np.nanmean(dist, axis=1) if dist.shape[1] else np.full(n, np.nan)
    z = np.zeros(n)
    gid = np.zeros(n, np.int64) if groups is None else groups
    skipped_groups = []
    for g in np.unique(gid):
        rows = np.flatnonzero(gid == g)
        s = score[rows]
        ok = np.isfinite(s)
        if ok.sum() < config.min_group_size:
            skipped_groups.append(int(g))
            continue
        logs = np.log(np.maximum(s, 1e-12))
        med, sd = robust_center_scale(logs[ok])
        if sd > 0:
            z[rows] = np.where(ok, (logs - med) / sd, 0.0)
    method = (
        f"mean cosine distance to the {nb.k} nearest other images (cleanlab OutOfDistribution "
        f"kNN score), robust z of its log; {nb.describe()}"
    )
    if groups is not None:
        method += "; computed per fold model"
    info: dict[str, Any] = {"space": space, "method": method, "threshold_z": config.ood_z}
    if skipped_groups:
        info["groups_too_small"] = skipped_groups
    return np.nan_to_num(score, nan=0.0), z, info


# --------------------------------------------------------------------------- the check
def check_outliers(ctx: AuditContext, config: OutliersConfig) -> list[Finding]:
    """Rank images by how unusual they are; flag blank, saturated and out-of-distribution ones.

    Parameters
    ----------
    ctx : AuditContext
        Needs ``images`` ``(N, C, S, S)``; uses ``embeddings`` ``(N, D)``,
        ``folds`` ``(N,)`` and ``image_properties`` (N rows) when present.
    config : OutliersConfig
        Thresholds (see the module docstring for the severity rule).

    Returns
    -------
    list of Finding
        A warning for blank or saturated images; a warning (more than
        ``warn_fraction`` flagged) or info for unusual images with the top
        ``top_n`` scores; a pass when nothing is flagged.
    """
    n = ctx.n
    sid = ctx.sample_ids
    table, stats_source = _property_table(ctx, config)
    std = table["std_intensity"].to_numpy(float) if "std_intensity" in table else np.full(n, np.nan)
    sat = (
        table["saturated_fraction"].to_numpy(float)
        if "saturated_fraction" in table else np.full(n, np.nan)
    )  # fmt: skip
    blank = np.nan_to_num(std, nan=np.inf) <= config.blank_std
    saturated = ~blank & (np.nan_to_num(sat, nan=0.0) >= config.saturated_fraction)

    pz, used_cols, skipped_cols = _property_z(table, config)
    abs_pz = np.abs(pz)
    worst_col = abs_pz.argmax(axis=1) if pz.shape[1] else np.zeros(n, np.int64)
    worst_pz = abs_pz.max(axis=1) if pz.shape[1] else np.zeros(n)
    knn_score, ood_z, ood_info = _ood_scores(ctx, config)
    oz = ood_z if ood_z is not None else np.zeros(n)

    prop_flag = worst_pz > config.property_z
    ood_flag = oz > config.ood_z
    score = np.maximum(oz / config.ood_z, worst_pz / config.property_z)
    score = np.maximum(score, 0.0)
    broken = blank | saturated
    flagged = broken | prop_flag | ood_flag
    order = np.lexsort((-score, ~broken))  # blank/saturated first, then by score

    def entry(i: int) -> dict[str, Any]:
        reasons = (["blank"] if blank[i] else []) + (["saturated"] if saturated[i] else [])
        if ood_flag[i]:
            reasons.append("out_of_distribution")
        if prop_flag[i]:
            reasons.append(f"extreme_{used_cols[worst_col[i]]}")
        e: dict[str, Any] = {
            "sample_id": str(sid[i]), "score": finite_or_none(score[i], 4), "flagged": bool(flagged[i]),
            "reasons": reasons, "ood_z": finite_or_none(oz[i], 4),
        }  # fmt: skip
        if knn_score is not None:
            e["knn_distance"] = finite_or_none(knn_score[i], 6)
        if pz.shape[1]:
            c = used_cols[worst_col[i]]
            e.update(worst_property=c, worst_property_z=finite_or_none(pz[i, worst_col[i]], 4),
                     worst_property_value=finite_or_none(table[c].iloc[i], 6))  # fmt: skip
        return e

    top = [entry(int(i)) for i in order[: config.top_n]]
    method = {
        "image_statistics": stats_source,
        "properties_used": used_cols,
        "properties_skipped_as_subgroups": skipped_cols,
        "property_rule": f"robust |z| > {config.property_z:g} (median / 1.4826 MAD)",
        "blank_rule": f"std_intensity <= {config.blank_std:g} (grey levels in [0, 1])",
        "saturated_rule": f"saturated_fraction >= {config.saturated_fraction:g}",
        "ood": ood_info,
        "severity_rule": (
            f"warning if any image is blank or saturated, or more than "
            f"{100 * config.warn_fraction:g}% of images are flagged; info if fewer; else pass"
        ),
    }
    cap = config.max_sample_ids
    findings: list[Finding] = []
    if broken.any():
        rows = order[broken[order]]
        findings.append(Finding(
            check=NAME, severity="warning", title=TITLE_BLANK,
            message=MSG_BLANK.format(blank=int(blank.sum()), saturated=int(saturated.sum()),
                                     sat_pct=100 * config.saturated_fraction),
            evidence={"n_blank": int(blank.sum()), "n_saturated": int(saturated.sum()),
                      "fraction": wilson_ci(int(broken.sum()), n).to_dict(),
                      "images": [entry(int(i)) for i in rows[: config.top_n]], "method": method},
            sample_ids=list(sid[rows[:cap]]), recommendation=REC_BLANK, references=_REFS,
        ))  # fmt: skip
    unusual = flagged & ~broken
    if unusual.any():
        rows = order[unusual[order]]
        count = int(unusual.sum())
        frac = count / n
        findings.append(Finding(
            check=NAME, severity="warning" if frac > config.warn_fraction else "info",
            title=TITLE_UNUSUAL,
            message=MSG_UNUSUAL.format(count=count, pct=100 * frac, n=n,
                                       ood=int((ood_flag & unusual).sum()),
                                       prop=int((prop_flag & unusual).sum())),
            evidence={"n_flagged": count, "n_out_of_distribution": int((ood_flag & unusual).sum()),
                      "n_property_extremes": int((prop_flag & unusual).sum()),
                      "fraction": wilson_ci(count, n).to_dict(),
                      "warn_fraction": config.warn_fraction, "top": top, "method": method},
            sample_ids=list(sid[rows[:cap]]), recommendation=REC_UNUSUAL, references=_REFS,
        ))  # fmt: skip
    if not findings:
        findings.append(Finding(
            check=NAME, severity="pass", title=TITLE_PASS, message=MSG_PASS,
            evidence={"n_images": n, "top": top[:5], "method": method}, references=_REFS,
        ))  # fmt: skip
    return findings


def sample_table(ctx: AuditContext, config: OutliersConfig) -> pd.DataFrame:
    """The full per-image table behind the findings (they list the top ``top_n``).

    Scores every image by the rules of :func:`check_outliers` (the module
    docstring); ``tests/audit/test_tables.py`` checks that the flags agree
    with the findings.

    Parameters
    ----------
    ctx : AuditContext
        As for :func:`check_outliers`.
    config : OutliersConfig
        The settings of the audit.

    Returns
    -------
    pandas.DataFrame
        N rows in manifest order: ``sample_id``, ``outlier_score`` (1 or more =
        flagged), ``outlier_rank`` (1 = listed first: blank and saturated
        images, then by score), ``is_outlier``, ``is_blank``, ``is_saturated``,
        ``is_out_of_distribution``, ``is_property_extreme``, ``ood_z``,
        ``knn_distance`` (NaN without a feature-space score), ``worst_property``,
        ``worst_property_z``.
    """
    n = ctx.n
    table, _ = _property_table(ctx, config)
    nan = np.full(n, np.nan)
    std = table["std_intensity"].to_numpy(float) if "std_intensity" in table else nan
    sat = table["saturated_fraction"].to_numpy(float) if "saturated_fraction" in table else nan
    blank = np.nan_to_num(std, nan=np.inf) <= config.blank_std
    saturated = ~blank & (np.nan_to_num(sat, nan=0.0) >= config.saturated_fraction)
    pz, used_cols, _ = _property_z(table, config)
    worst_col = np.abs(pz).argmax(axis=1) if pz.shape[1] else np.zeros(n, np.int64)
    worst_pz = np.abs(pz).max(axis=1) if pz.shape[1] else np.zeros(n)
    knn_score, ood_z, _ = _ood_scores(ctx, config)
    oz = ood_z if ood_z is not None else np.zeros(n)
    prop_flag, ood_flag = worst_pz > config.property_z, oz > config.ood_z
    score = np.maximum(np.maximum(oz / config.ood_z, worst_pz / config.property_z), 0.0)
    broken = blank | saturated
    rank = np.empty(n, np.int64)
    rank[np.lexsort((-score, ~broken))] = np.arange(1, n + 1)
    return pd.DataFrame({
        "sample_id": ctx.sample_ids, "outlier_score": score, "outlier_rank": rank,
        "is_outlier": broken | prop_flag | ood_flag, "is_blank": blank, "is_saturated": saturated,
        "is_out_of_distribution": ood_flag, "is_property_extreme": prop_flag, "ood_z": oz,
        "knn_distance": knn_score if knn_score is not None else nan,
        "worst_property": (np.asarray(used_cols, dtype=object)[worst_col] if used_cols
                           else np.full(n, None, dtype=object)),
        "worst_property_z": pz[np.arange(n), worst_col] if pz.shape[1] else nan,
    })  # fmt: skip


SPEC = CheckSpec(
    name=NAME,
    func=check_outliers,
    config_cls=OutliersConfig,
    requires=("images",),
    table=sample_table,
    description=(
        "blank / saturated images, image-property extremes and out-of-distribution images "
        "(kNN distance in embedding or pixel space), ranked top-N"
    ),
)
