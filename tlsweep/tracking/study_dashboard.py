"""``tlsweep dashboard DIR``: optuna-dashboard over a sweep's Optuna journal, served on loopback only.

The journal (``DIR/optuna.journal``, written by the sweep driver: ``tlsweep.tracking.optuna_mirror``) is served as
it is, live while a sweep writes it. Results without one (written before tlsweep 0.2.0) get it built from
``trials.parquet``; remote results (s3://, gs://) are read into a local temporary copy. optuna-dashboard is the
optional package ``optuna-dashboard`` (``pip install 'tlsweep[dashboards]'``).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import wsgiref.simple_server
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tlsweep.errors import TlsweepError
from tlsweep.results.location import resolve_location
from tlsweep.results.store import ResultsStore
from tlsweep.tracking.optuna_mirror import (
    JOURNAL_FILE,
    StudyMirror,
    journal_differences,
    journal_lacks,
    read_journal,
    study_name,
)

if TYPE_CHECKING:
    import pyarrow as pa

HOST = "127.0.0.1"
INSTALL_HINT = "pip install 'tlsweep[dashboards]'"
_log = logging.getLogger("tlsweep.tracking")


class StudyDashboardError(TlsweepError):
    """optuna-dashboard cannot be started here (package missing, port taken)."""


@dataclass
class Journal:
    """The journal file to serve and what it holds."""

    path: Path
    studies: int
    trials: int
    built: bool  # True when it was (re)built from trials.parquet just now
    lacks: str | None = None  # what of trials.parquet it has not mirrored (yet: a sweep may be writing it)


def prepare_journal(results: str | Path, *, rebuild: bool = False, workdir: Path | None = None) -> Journal:
    """The Optuna journal of the results at ``results`` (a directory, ``s3://`` or ``gs://`` URI).

    Local results with a journal are used in place; without one (or with ``rebuild``) it is built from
    ``trials.parquet`` and ``epochs.parquet`` (a replaced journal is moved aside, never deleted). Remote results
    are copied to ``workdir`` (default: a new temporary directory) first.

    Raises:
        StoreError: ``results`` is not a results directory (no readable ``spec.resolved.yaml``).
    """
    store = ResultsStore(resolve_location(str(results)))
    spec = store.read_spec()
    local = store.local_dir()
    if local is not None:
        path = local / JOURNAL_FILE
    else:
        path = Path(workdir or tempfile.mkdtemp(prefix=f"tlsweep-dashboard-{spec.name}-")) / JOURNAL_FILE
        data = None if rebuild else store.read_bytes(JOURNAL_FILE)
        if data is not None:
            path.write_bytes(data)
    built = False
    if rebuild and (path.exists() or path.is_symlink()) and local is not None:
        aside = path.with_name(f"{path.name}.replaced-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}")
        shutil.move(str(path), aside)
        _log.warning("moved the previous Optuna journal to %s", aside)
    if not path.exists() and not path.is_symlink():
        mirror = StudyMirror(spec, path)
        mirror.sync(store.read_trials(), store.read_epochs())
        if not mirror.enabled:
            raise StudyDashboardError(f"could not build the Optuna journal {path} (see the warning above)")
        built = True
    fix = (
        "it is only a mirror of the Parquet files: rebuild it from them with `tlsweep dashboard DIR --rebuild` "
        "(when no sweep is writing it)"
    )
    if not path.is_file():  # a FIFO would block the reader, /dev/null reads as empty
        raise StudyDashboardError(f"{path}: the Optuna journal is not a regular file; {fix}")
    try:
        contents = read_journal(_storage(path))
    except Exception as exc:  # noqa: BLE001 - whatever Optuna raises on a damaged log
        raise StudyDashboardError(
            f"{path}: Optuna cannot read this journal ({type(exc).__name__}: {exc}); rebuild it from the Parquet "
            "files with `tlsweep dashboard DIR --rebuild` (when no sweep is writing it)"
        ) from None
    lacks = None
    if not built:  # a journal found: checked against the Parquet files it mirrors
        expected = expected_studies(store.read_trials())
        problems = journal_differences(contents, spec.name, expected)
        lacks = journal_lacks(contents, expected)
        if not contents.trial_ids and lacks:
            problems.append(
                f"it holds none of the {sum(len(ids) for ids in expected.values())} trials of trials.parquet"
            )
        if problems:
            raise StudyDashboardError(
                f"{path}: the Optuna journal does not match this sweep's trials.parquet: {'; '.join(problems)}; {fix}"
            )
    trials = sum(len(ids) for ids in contents.trials.values())
    return Journal(path=path, studies=len(contents.trials), trials=trials, built=built, lacks=lacks)


def expected_studies(trials: pa.Table) -> dict[str, set[str]]:
    """Study name -> trial ids of a trials table: what its journal mirrors."""
    expected: dict[str, set[str]] = {}
    for row in trials.select(["phase", "cell_id", "arm", "trial_id"]).to_pylist():
        expected.setdefault(study_name(str(row["phase"]), str(row["cell_id"]), str(row["arm"])), set()).add(
            str(row["trial_id"])
        )
    return expected


def _storage(path: Path) -> Any:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(str(path)))


class _QuietHandler(wsgiref.simple_server.WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("optuna-dashboard: " + format, *args)


def make_server(journal: Path, *, port: int = 0) -> wsgiref.simple_server.WSGIServer:
    """A WSGI server of optuna-dashboard over ``journal`` on ``127.0.0.1:port`` (0: a free port), not yet serving.

    Raises:
        StudyDashboardError: optuna-dashboard is not installed, or the port cannot be bound.
    """
    try:
        import optuna_dashboard
    except ImportError as exc:
        raise StudyDashboardError(
            f"optuna-dashboard is not installed ({exc}); install it with: {INSTALL_HINT}"
        ) from None
    app = optuna_dashboard.wsgi(_storage(journal))
    try:
        return wsgiref.simple_server.make_server(HOST, port, app, handler_class=_QuietHandler)
    except OSError as exc:
        raise StudyDashboardError(
            f"cannot listen on {HOST}:{port} ({exc}); pick another --port, or leave it out for a free one"
        ) from None


def server_url(server: wsgiref.simple_server.WSGIServer) -> str:
    """The dashboard's address: ``http://127.0.0.1:<port>/dashboard``."""
    return f"http://{HOST}:{server.server_port}/dashboard"
