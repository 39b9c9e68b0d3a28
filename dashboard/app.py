"""The Streamlit app: ``medaudit dashboard`` runs this script (``streamlit run``).

Reads the runs named by the environment (:data:`dashboard.state.ENV_RUNS`, set by the
CLI), writes only review decisions (``reviews.sqlite``) and, from the New-audit page,
new run directories in the runs folder. The page and run can be given in the URL
(``?page=label_issues&run=NAME``); both are checked against what the app lists.
"""

from __future__ import annotations

import os

import streamlit as st

from dashboard import views
from dashboard.paths import PathNotAllowedError
from dashboard.state import ENV_RUNS, PageContext, cached_run, catalog, data_root_from_env
from dashboard.widgets import missing

PAGES = views.PAGES


def _pick_page() -> str:
    keys = [k for k, _, _ in PAGES]
    labels = {k: label for k, label, _ in PAGES}
    if "page" not in st.session_state:
        wanted = st.query_params.get("page")
        st.session_state["page"] = wanted if wanted in keys else keys[0]
    page = st.sidebar.radio("Page", keys, key="page", format_func=lambda k: labels[k])
    st.query_params["page"] = page
    return page


def _pick_run(cat) -> str | None:  # type: ignore[no-untyped-def]
    runs = cat.runs()
    if not runs:
        return None
    names = list(runs)
    if "run" not in st.session_state:
        wanted = st.query_params.get("run")
        if wanted is not None and wanted not in runs:
            st.session_state["_bad_run"] = wanted
        st.session_state["run"] = wanted if wanted in runs else names[0]
    elif st.session_state["run"] not in runs:
        st.session_state["run"] = names[0]
    if len(names) > 1:
        name = st.sidebar.selectbox(
            "Run", names, key="run", help=f"run directories under {cat.root}"
        )
    else:
        name = names[0]
        st.sidebar.markdown(f"**Run:** `{name}`")
    st.query_params["run"] = name
    return name


def main() -> None:
    """Render the app."""
    st.set_page_config(
        page_title="medaudit dashboard", page_icon=":material/health_and_safety:", layout="wide"
    )
    st.sidebar.title("medaudit")
    root = os.environ.get(ENV_RUNS)
    if not root:
        st.error(
            f"No runs given: start the app with `medaudit dashboard RUN_DIR_OR_FOLDER` "
            f"(it sets {ENV_RUNS})."
        )
        return
    try:
        cat = catalog(root)
    except FileNotFoundError as err:
        st.error(str(err))
        return
    page = _pick_page()
    name = _pick_run(cat)
    bad = st.session_state.pop("_bad_run", None)
    if bad is not None:
        st.warning(
            f"The link asked for run {bad!r}, which is not one of the runs this dashboard "
            "was started with; showing the first run instead."
        )
    reviewer = st.sidebar.text_input(
        "Your name (for review decisions)",
        key="reviewer",
        max_chars=80,
        help="Recorded with every decision you make, in the run's reviews.sqlite.",
    )
    data_root = data_root_from_env()
    if name is None:
        if page == "new_audit":
            views.render(page, None, cat=cat, data_root=data_root)
            return
        missing(
            f"No run directory under {cat.root}",
            "Run `medaudit run --manifest CSV --out RUN_DIR` (or `medaudit demo`) to make "
            "one, then reload; or start a new audit on the New audit page (needs "
            "`--data-root`).",
        )
        return
    try:
        path = cat.resolve(name)
    except PathNotAllowedError as err:
        st.error(str(err))
        return
    from dashboard.data import run_kind, run_stamp

    stamp = run_stamp(path)
    info, manifest, fingerprint = cached_run(str(path), stamp)
    ctx = PageContext(
        catalog=cat,
        data_root=data_root,
        run_name=name,
        path=path,
        stamp=stamp,
        info=info,
        manifest=manifest,
        fingerprint=fingerprint,
        reviewer=(reviewer or "").strip(),
    )
    st.sidebar.caption(
        f"{len(manifest):,} images · {manifest['patient_key'].nunique():,} "
        f"patients · {run_kind(info)} · data fingerprint `{fingerprint}`"
    )
    views.render(page, ctx, cat=cat, data_root=data_root)


if __name__ == "__main__":  # streamlit runs the script as __main__
    main()
