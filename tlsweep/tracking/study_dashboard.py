"""``tlsweep dashboard DIR``: optuna-dashboard over a sweep's Optuna journal, served on loopback only.

The journal (``DIR/optuna.journal``, written by the sweep driver: ``tlsweep.tracking.optuna_mirror``) is served as
it is, live while a sweep writes it. Results without one (written before tlsweep 0.2.0) get it built from
``trials.parquet``; remote results (s3://, gs://) are read into a local temporary copy. The dashboard adds one
cross-arm study per phase × cell (``tlsweep.tracking.arm_views``) and keeps it current while it serves.
optuna-dashboard is the optional package ``optuna-dashboard`` (``pip install 'tlsweep[dashboards]'``).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import wsgiref.simple_server
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tlsweep.errors import TlsweepError
from tlsweep.results.location import resolve_location
from tlsweep.results.store import ResultsStore
from tlsweep.tracking.arm_views import ArmView, sync_arm_views
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
    arms: list[str] = field(default_factory=list)  # the spec's arms, in order


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
    return Journal(
        path=path,
        studies=len(contents.trials),
        trials=trials,
        built=built,
        lacks=lacks,
        arms=spec.design.arm_names(),
    )


def add_arm_views(journal: Journal) -> list[ArmView]:
    """Add the cross-arm studies to a checked ``journal`` (from ``prepare_journal``), or bring them up to date."""
    return sync_arm_views(_storage(journal.path), journal.arms)


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


def keep_views_current(journal: Path, arms: Sequence[str], *, every_s: float = 30.0) -> threading.Event:
    """Sync the cross-arm studies of ``journal`` every ``every_s`` seconds in a daemon thread (a sweep may be
    adding trials); set the returned event to stop it. A failure is logged once and ends the syncing."""
    stop = threading.Event()

    def loop() -> None:
        storage = _storage(journal)
        while not stop.wait(every_s):
            try:
                sync_arm_views(storage, arms)
            except Exception as exc:  # noqa: BLE001 - the arm studies are served on, only the views go stale
                _log.warning(
                    "the cross-arm studies of %s stopped updating (%s: %s); restart the dashboard to update them",
                    journal,
                    type(exc).__name__,
                    exc,
                )
                return

    threading.Thread(target=loop, name="tlsweep-arm-views", daemon=True).start()
    return stop


def compare_url(server: wsgiref.simple_server.WSGIServer, study_ids: Sequence[int]) -> str:
    """optuna-dashboard's Compare Studies page over ``study_ids`` (history and EDF plots side by side)."""
    return f"{server_url(server)}/compare-studies?ids={','.join(map(str, study_ids))}"


def study_url(server: wsgiref.simple_server.WSGIServer, study_id: int) -> str:
    """The dashboard's page of one study."""
    return f"{server_url(server)}/studies/{study_id}"


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
