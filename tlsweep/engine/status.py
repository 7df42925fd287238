"""``status.json``: what a sweep's driver is doing, rewritten every few seconds while it runs; one writer
(``tlsweep.engine.progress``) and one parser (:meth:`StatusDocument.parse`), read by ``tlsweep status`` and by the
next run of the sweep (trials cut short are handed out again). No Ray import here."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tlsweep.errors import StoreError

STATUS_FILE = "status.json"
EFFICIENCY_KEYS = ("efficiency", "busy_s", "trials_span_s", "tuner_wall_s", "slots")  # SweepOutcome.efficiency_figures
RUNNING_KEYS = ("phase", "study", "trial_id")  # strings every running entry holds
FRESH_S = 120.0  # a document older than this belongs to a driver that is gone
_FIX = "it is rewritten by a running sweep every few seconds; delete it if no sweep is running"


@dataclass(frozen=True)
class StatusDocument:
    """The driver's live state: its process, when it last wrote, the phase, whether it stopped, the trials running
    (each with the planned trial's ``meta``) and, once a run ended, its slot-efficiency figures."""

    pid: int | None = None
    updated_at: float = 0.0
    phase: str = ""
    finished: bool = False
    running: tuple[dict[str, Any], ...] = ()
    figures: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        document: dict[str, Any] = {
            "pid": self.pid,
            "updated_at": self.updated_at,
            "phase": self.phase,
            "finished": self.finished,
            "running": list(self.running),
        }
        document.update({k: v if not isinstance(v, float) else round(v, 4) for k, v in self.figures.items()})
        return json.dumps(document, indent=1)

    def fresh(self, now: float) -> bool:
        """A driver is still writing it."""
        return not self.finished and now - self.updated_at < FRESH_S

    @classmethod
    def parse(cls, text: str | None, *, source: str) -> StatusDocument:
        """The document of ``text`` (an empty one when None), checked: a JSON object whose ``updated_at`` is a number
        and whose ``running`` lists objects with ``phase``, ``study`` and ``trial_id`` strings.

        Raises:
            StoreError: naming ``source`` and what is wrong with it.
        """
        if text is None:
            return cls()
        try:
            live = json.loads(text)
        except ValueError as exc:
            raise StoreError(f"{source}: not valid JSON ({exc}); {_FIX}") from None
        if not isinstance(live, dict):
            raise StoreError(f"{source}: expected a JSON object, got {type(live).__name__}; {_FIX}")
        updated = live.get("updated_at", 0)
        if isinstance(updated, bool) or not isinstance(updated, int | float) or updated != updated:
            raise StoreError(
                f"{source}: `updated_at` must be a number (seconds since the epoch), got {updated!r}; {_FIX}"
            )
        running = live.get("running", [])
        if not isinstance(running, list) or not all(
            isinstance(item, dict) and all(isinstance(item.get(key), str) for key in RUNNING_KEYS) for item in running
        ):
            raise StoreError(
                f"{source}: `running` must be a list of objects with {', '.join(RUNNING_KEYS)} strings; {_FIX}"
            )
        pid = live.get("pid")
        return cls(
            pid=pid if isinstance(pid, int) else None,
            updated_at=float(updated),
            phase=str(live.get("phase", "")),
            finished=bool(live.get("finished")),
            running=tuple(running),
            figures={key: live[key] for key in EFFICIENCY_KEYS if key in live},
        )
