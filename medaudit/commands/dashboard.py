"""``medaudit dashboard`` and ``medaudit export-reviews``.

``dashboard`` starts the Streamlit app on a run directory, or on a folder whose run
directories it lists, bound to 127.0.0.1 unless ``--host`` says otherwise (with a
warning: the app has no login), headless and with Streamlit's usage statistics off.
``--data-root DIR`` enables the New-audit page, which may pick inputs under DIR only.

``export-reviews`` writes a run's review decisions as CSV and a new corrected
manifest for ``medaudit ingest --manifest`` (``manifest.parquet`` is never rewritten).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

__all__ = [
    "ENV_DATA_ROOT",
    "ENV_RUNS",
    "LOCAL_HOSTS",
    "add_parser",
    "run_dashboard",
    "run_export",
    "streamlit_command",
]

#: Environment variables through which the CLI hands its arguments to the app.
ENV_RUNS = "MEDAUDIT_DASHBOARD_RUNS"
ENV_DATA_ROOT = "MEDAUDIT_DASHBOARD_DATA_ROOT"
#: Hosts that keep the app on this machine.
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
MSG_PUBLIC = (
    "medaudit dashboard: warning: binding to {host} makes the dashboard (which has "
    "no login) reachable from other machines on the network; use it only on a "
    "trusted network, or keep the default 127.0.0.1"
)


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``medaudit dashboard`` and ``medaudit export-reviews``."""
    p = sub.add_parser(
        "dashboard",
        help="open runs in the Streamlit dashboard (local only)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "runs",
        type=Path,
        metavar="RUN_DIR_OR_FOLDER",
        help="a run directory, or a folder of run directories to switch between",
    )
    p.add_argument("--port", type=int, default=8501, help="default: %(default)s")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default: %(default)s, this machine only)",
    )
    p.add_argument(
        "--data-root",
        type=Path,
        default=None,
        metavar="DIR",
        help="enable the New-audit page: inputs can be picked under DIR only",
    )
    p.set_defaults(func=run_dashboard)

    e = sub.add_parser(
        "export-reviews",
        help="write review decisions and a corrected manifest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    e.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    e.add_argument("--out", type=Path, required=True, help="folder to write (outside the run)")
    e.add_argument("--overwrite", action="store_true", help="replace an earlier export in --out")
    e.set_defaults(func=run_export)


def streamlit_command(app: Path, *, host: str, port: int) -> list[str]:
    """The ``streamlit run`` command line: headless, statistics off, no file watcher."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app),
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
        "--global.developmentMode",
        "false",
        "--client.toolbarMode",
        "minimal",
        "--theme.base",
        "light",
        "--server.maxUploadSize",
        "1",
    ]


def run_dashboard(args: argparse.Namespace) -> int:
    """``medaudit dashboard``.

    The app runs in a Streamlit subprocess; the command only locates
    ``dashboard/app.py`` (nothing imports the ``dashboard`` package).
    """
    spec = importlib.util.find_spec("dashboard")
    if spec is None or spec.origin is None:
        raise ValueError("the dashboard package is not installed with medaudit; reinstall it")
    package_dir = Path(spec.origin).resolve().parent

    runs = args.runs.expanduser()
    if not runs.is_dir():
        raise ValueError(
            f"{args.runs} is not a directory; give a run directory or a folder of run directories"
        )
    if not 0 < args.port < 65536:
        raise ValueError(f"--port must be in 1..65535; got {args.port}")
    env = dict(os.environ)
    env[ENV_RUNS] = str(runs.resolve())
    env.pop(ENV_DATA_ROOT, None)
    if args.data_root is not None:
        if not args.data_root.is_dir():
            raise ValueError(f"--data-root {args.data_root} is not a directory")
        env[ENV_DATA_ROOT] = str(args.data_root.expanduser().resolve())
    if args.host not in LOCAL_HOSTS:
        print(MSG_PUBLIC.format(host=args.host), file=sys.stderr)
    root = str(package_dir.parent)
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    cmd = streamlit_command(
        package_dir / "app.py", host=args.host, port=args.port
    )
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"medaudit dashboard: http://{shown}:{args.port} (Ctrl+C to stop)", flush=True)
    try:
        return subprocess.call(cmd, env=env)
    except KeyboardInterrupt:
        return 0


def run_export(args: argparse.Namespace) -> int:
    """``medaudit export-reviews``."""
    from audit.review_export import export_reviews

    if not (args.run_dir / "manifest.parquet").is_file():
        raise ValueError(f"{args.run_dir} is not an ingested run directory (no manifest.parquet)")
    res = export_reviews(args.run_dir, args.out, overwrite=args.overwrite)
    for kind, path in res.paths.items():
        print(f"{kind}: {path}")
    print(
        f"{res.n_decisions} decision(s); {res.n_labels_corrected} label(s) corrected; "
        f"{res.n_patients_merged} patient merge(s)"
    )
    for note in res.notes:
        print(f"note: {note}")
    if "manifest" in res.paths:
        print(f"next round: medaudit ingest --manifest {res.paths['manifest']} --out NEW_RUN_DIR")
    return 0
