"""Property-based tests of the label-table parser (hypothesis): every row is accounted for."""

from __future__ import annotations

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.errors import ManifestError
from ingest.manifest import validate_label_table

_label = st.one_of(st.sampled_from(["neg", "pos", "0", "1", "+1", "1.0", "-1", "2", "", " pos "]),
                   st.text(max_size=6))
_age = st.one_of(st.none(), st.sampled_from(["", "45", "130", "131", "-3", "abc", "4e1"]),
                 st.text(max_size=4))
_sex = st.one_of(st.none(), st.sampled_from(["F", "m", "female", "X", "", "Other"]))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(_label, _age, _sex), min_size=1, max_size=25),
       st.sampled_from([None, ("neg", "pos")]))
def test_every_row_is_accepted_or_refused_with_one_line(rows, classes) -> None:
    df = pd.DataFrame({
        "path": [f"img{i}.png" for i in range(len(rows))],
        "label": [r[0] for r in rows],
        "age": [r[1] for r in rows],
        "sex": [r[2] for r in rows],
    })
    df = df.replace({"": None})
    try:
        table = validate_label_table(df, source="m.csv", key_col="path", classes=classes)
    except ManifestError as err:  # table-level: one class, no rows ... never anything else
        assert str(err)
        return
    k = len(table.classes.names)
    assert len(table.rows) + len(table.refused) == len(df)
    assert table.rows["label"].between(0, k - 1).all()
    assert set(table.rows["path"]).isdisjoint(table.refused["source"])
    assert all(r and "\n" not in r for r in table.refused["reason"])
    assert table.rows["age"].dropna().between(0, 130).all() if "age" in table.rows else True
    assert set(table.rows["sex"].dropna()) <= {"F", "M", "O"}
