"""A compact progress view: one line per study (cell × arm) instead of Ray's wide tables.

The same table is drawn live during ``tlsweep run`` and by ``tlsweep status DIR`` from the results directory
(``trials.parquet`` plus ``status.json``, which the running driver refreshes).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from tlsweep.design import PlannedTrial, study_key
from tlsweep.engine.status import StatusDocument


@dataclass
class StudyLine:
    phase: str
    cell: str
    arm: str
    expected: int
    done: int = 0
    failed: int = 0
    diverged: int = 0
    pruned: int = 0
    running: set[str] = field(default_factory=set)
    best: float | None = None
    wall: list[float] = field(default_factory=list)


class StatusBoard:
    """Counts per (phase, study) built from finished rows and running trials."""

    def __init__(self, expected: dict[tuple[str, str, str], int], mode: str = "max") -> None:
        self.mode = mode
        self.lines = {key: StudyLine(*key, expected=n) for key, n in expected.items()}
        self.started_at = time.time()

    def line(self, phase: str, cell: str, arm: str) -> StudyLine:
        key = (phase, cell, arm)
        if key not in self.lines:
            self.lines[key] = StudyLine(phase, cell, arm, expected=0)
        return self.lines[key]

    def add_row(self, row: dict[str, Any]) -> None:
        line = self.line(row["phase"], row["cell_id"], row["arm"])
        line.running.discard(row["trial_id"])
        line.done += 1
        status = row.get("status")
        line.failed += status == "failed"
        line.diverged += status == "diverged"
        line.pruned += status == "pruned"
        value = row.get("best_val_acc")
        if status in ("ok", "diverged") and value is not None and value == value:
            line.best = value if line.best is None else max(line.best, value)
        if row.get("wall_time_s"):
            line.wall.append(float(row["wall_time_s"]))

    def eta_s(self, concurrency: int) -> float | None:
        walls = [w for line in self.lines.values() for w in line.wall]
        remaining = sum(max(0, line.expected - line.done) for line in self.lines.values())
        if not walls or not remaining:
            return 0.0 if not remaining else None
        return remaining * (sum(walls) / len(walls)) / max(1, concurrency)

    def progress_line(self, *, title: str, concurrency: int = 1) -> str:
        """One line for a log: trials recorded of planned, per phase, failures and the ETA."""
        phases = []
        for phase in ("tune", "confirm"):
            mine = [line for key, line in self.lines.items() if key[0] == phase]
            phases.append(f"{phase} {sum(x.done for x in mine)}/{sum(x.expected for x in mine)}")
        failed = sum(line.failed for line in self.lines.values())
        eta = self.eta_s(concurrency)
        done = sum(line.done for line in self.lines.values())
        total = sum(line.expected for line in self.lines.values())
        return (
            f"{time.strftime('%H:%M:%S')} {title}: {done}/{total} trials ({', '.join(phases)}), {failed} failed, "
            f"ETA {'—' if eta is None else f'{eta / 60:.1f} min'}"
        )

    def table(self, *, title: str, concurrency: int = 1) -> Table:
        eta = self.eta_s(concurrency)
        eta_text = "—" if eta is None else f"{eta / 60:.1f} min"
        table = Table(title=f"{title}   ETA {eta_text}", title_justify="left", expand=False, pad_edge=False)
        for name in ("phase", "cell", "arm", "done", "running", "failed", "diverged", "pruned", "best val"):
            left = name in ("phase", "cell", "arm")
            table.add_column(name, justify="left" if left else "right", no_wrap=True, overflow="fold")
        for (phase, _, _), line in sorted(self.lines.items(), key=lambda kv: (kv[0][0] != "tune", kv[0][1:])):
            table.add_row(
                phase,
                line.cell,
                line.arm,
                f"{line.done}/{line.expected}",
                str(len(line.running)),
                str(line.failed),
                str(line.diverged),
                str(line.pruned),
                "—" if line.best is None else f"{line.best:.3f}",
            )
        return table


PROGRESS_LINES = 20  # a run logged to a file prints a line every 1/20 of the planned trials (rounded up) and at the end


class Progress:
    """Live view during a run; also keeps ``status.json`` fresh for ``tlsweep status``."""

    def __init__(
        self,
        board: StatusBoard,
        *,
        title: str,
        concurrency: int,
        write_status: Any,
        console: Console | None = None,
        live: bool = True,
    ) -> None:
        self.board = board
        self.title = title
        self.concurrency = concurrency
        self._write_status = write_status
        self.console = console or Console(stderr=True)
        # on a terminal the table is redrawn in place; elsewhere (a log file, a pipe) a line every few trials
        drawn = live and self.console.is_terminal
        self._live = Live(console=self.console, refresh_per_second=2, transient=False) if drawn else None
        total = sum(line.expected for line in board.lines.values())
        self.line_every = max(1, -(-total // PROGRESS_LINES)) if live and not drawn else 0
        self._running: dict[str, dict[str, Any]] = {}
        self._last_write = 0.0
        self.efficiency: dict[str, Any] | None = None  # set at the end of a run (SweepOutcome's figures)

    def __enter__(self) -> Progress:
        if self._live is not None:
            self._live.__enter__()
        self.refresh(force=True)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.refresh(force=True)
        if self._live is not None:
            self._live.__exit__(*exc)

    def refresh(self, force: bool = False) -> None:
        if self._live is not None:
            self._live.update(self.board.table(title=self.title, concurrency=self.concurrency))
        now = time.time()
        if force or now - self._last_write > 1.0:
            self._last_write = now
            self._write_status_document(finished=False)

    def finish(self) -> None:
        """Mark the driver as stopped; trials still running (cut short) stay listed for the next run."""
        self._write_status_document(finished=True)

    def _write_status_document(self, *, finished: bool) -> None:
        document = StatusDocument(
            pid=os.getpid(),
            updated_at=time.time(),
            phase=self.title,
            finished=finished,
            running=tuple(self._running.values()),
            figures=dict(self.efficiency or {}),
        )
        self._write_status(document.to_json())

    def started(self, planned: PlannedTrial) -> None:
        self.board.line(planned.phase, planned.cell_id, planned.arm).running.add(planned.trial_id)
        self._running[planned.trial_id] = {
            "trial_id": planned.trial_id,
            "phase": planned.phase,
            "study": study_key(planned.levels),
            "epoch": 0,
            "started_at": time.time(),
            "meta": planned.meta(),  # lets a rerun hand out the same trial again and continue its checkpoint
        }
        self.refresh(force=True)

    def retried(self, planned: PlannedTrial) -> None:
        self.refresh()

    def epoch(self, planned: PlannedTrial, epoch: int, val_acc: float | None) -> None:
        if planned.trial_id in self._running:
            self._running[planned.trial_id]["epoch"] = epoch
        self.refresh()

    def finished(self, planned: PlannedTrial, row: dict[str, Any]) -> None:
        self._running.pop(planned.trial_id, None)
        self.board.add_row(row)
        self.refresh(force=True)
        done = sum(line.done for line in self.board.lines.values())
        total = sum(line.expected for line in self.board.lines.values())
        if self.line_every and (done % self.line_every == 0 or done >= total):
            self.console.print(self.board.progress_line(title=self.title, concurrency=self.concurrency), markup=False)


def efficiency_line(figures: dict[str, Any]) -> str | None:
    """One line on how busy the slots were, from a run's figures (``status.json``'s ``efficiency``, ``busy_s``,
    ``trials_span_s``, ``tuner_wall_s``, ``slots``); None when the run recorded no trial."""

    def number(key: str) -> float | None:
        value = figures.get(key)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    efficiency, span, slots, busy = number("efficiency"), number("trials_span_s"), number("slots"), number("busy_s")
    if efficiency is None or not span or not slots or busy is None:
        return None
    slots = int(slots)
    line = (
        f"slot efficiency {efficiency:.3f}: Σ epoch time {busy:.1f} s ÷ ({slots} slots × {span:.1f} s from the "
        "first trial's start to the last one's end)"
    )
    wall = number("tuner_wall_s")
    if wall is not None and wall > span:
        line += (
            f"; starting the workers (processes, imports) and stopping Ray Tune took {wall - span:.1f} s more "
            f"({busy / (slots * wall):.3f} counting that)"
        )
    return line
