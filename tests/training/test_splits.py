"""Fold assignment: patient grouping, stratification, holdout rows, inner split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.splits import HOLDOUT_FOLD, assign_folds, fold_split, inner_split


def _manifest(n_patients: int = 60, per_patient: int = 3, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    patient = np.repeat(np.arange(n_patients), per_patient)
    label = rng.integers(0, 2, n_patients)[patient]
    return pd.DataFrame({"label": label, "patient_key": [f"p{p}" for p in patient]})


def test_no_patient_in_two_folds_and_all_rows_assigned() -> None:
    m = _manifest()
    folds = assign_folds(m, folds=5, seed=3)
    assert folds.dtype == np.int16 and folds.shape == (len(m),)
    assert set(np.unique(folds)) == set(range(5))
    per_patient = pd.Series(folds).groupby(m["patient_key"]).nunique()
    assert (per_patient == 1).all()


def test_assignment_is_deterministic_and_seeded() -> None:
    m = _manifest()
    a, b = assign_folds(m, folds=4, seed=1), assign_folds(m, folds=4, seed=1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, assign_folds(m, folds=4, seed=2))


def test_folds_are_stratified() -> None:
    m = _manifest(n_patients=200, per_patient=1)
    folds = assign_folds(m, folds=5, seed=0)
    rates = pd.Series(m["label"]).groupby(folds).mean()
    assert rates.max() - rates.min() < 0.1


def test_holdout_rows_get_minus_one() -> None:
    m = _manifest()
    m["split"] = np.where(m["patient_key"].str[1:].astype(int) < 12, "test", "train")
    folds = assign_folds(m, folds=3, seed=0, holdout_split="test")
    np.testing.assert_array_equal(folds == HOLDOUT_FOLD, (m["split"] == "test").to_numpy())
    assert set(np.unique(folds[folds >= 0])) == {0, 1, 2}


def test_holdout_split_errors_name_the_problem() -> None:
    m = _manifest()
    with pytest.raises(ValueError, match="no 'split' column"):
        assign_folds(m, folds=3, holdout_split="test")
    m["split"] = "train"
    with pytest.raises(ValueError, match=r"matches no row.*\['train'\]"):
        assign_folds(m, folds=3, holdout_split="test")


def test_too_few_patients_for_the_folds_is_a_clear_error() -> None:
    m = pd.DataFrame({"label": [0, 0, 1, 1, 1, 1], "patient_key": ["a", "a", "b", "c", "d", "e"]})
    with pytest.raises(ValueError, match=r"class 0 has only 1 patient.*folds="):
        assign_folds(m, folds=2)


def test_inner_split_is_grouped_disjoint_and_inside_the_training_folds() -> None:
    m = _manifest(n_patients=80)
    labels = m["label"].to_numpy()
    groups = m["patient_key"].to_numpy()
    folds = assign_folds(m, folds=4, seed=0)
    for k in range(4):
        s = fold_split(folds, k, labels, groups, inner_val_fraction=0.2, seed=0)
        assert np.intersect1d(s.train, s.inner_val).size == 0
        assert np.intersect1d(s.inner_val, s.oof).size == 0
        assert np.intersect1d(s.train, s.oof).size == 0
        assert (folds[s.inner_val] != k).all() and (folds[s.train] != k).all()
        assert np.intersect1d(groups[s.inner_val], groups[s.train]).size == 0
        assert np.intersect1d(groups[s.inner_val], groups[s.oof]).size == 0
        assert len(s.train) + len(s.inner_val) + len(s.oof) == len(m)
        assert 0.1 < len(s.inner_val) / (len(s.train) + len(s.inner_val)) < 0.3
        assert set(labels[s.inner_val]) == {0, 1}


def test_inner_split_needs_two_patients_per_class() -> None:
    labels = np.array([0, 1, 1, 1])
    groups = np.array(["a", "b", "c", "d"])
    with pytest.raises(ValueError, match="fewer than 2 patients"):
        inner_split(np.arange(4), labels, groups)


def test_fold_index_out_of_range() -> None:
    m = _manifest()
    folds = assign_folds(m, folds=3)
    with pytest.raises(ValueError, match=r"fold must be in \[0, 3\)"):
        fold_split(folds, 3, m["label"].to_numpy(), m["patient_key"].to_numpy(),
                   inner_val_fraction=0.2, seed=0)
