"""SIGTERM stops a sweep the way Ctrl-C does: trials stopped, finished rows kept, the "Resume with" line printed.

Without it a ``kill`` (a scheduler's preemption, ``timeout``, a closed terminal's session manager) ended the driver
inside Ray's own handlers (exit -6, no resume line). While a :class:`SigtermAsSigint` is active, SIGTERM is re-sent
as SIGINT, which Ray Tune's handler turns into a graceful stop (``tlsweep.engine.run._SigintWatch`` sees it).
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any


class SigtermAsSigint:
    """Within the block (main thread only: elsewhere it does nothing), SIGTERM is delivered as SIGINT; the handler
    from before is restored on exit."""

    def __init__(self) -> None:
        self._previous: Any = None
        self._active = False

    @staticmethod
    def _forward(signum: int, frame: Any) -> None:
        os.kill(os.getpid(), signal.SIGINT)

    def __enter__(self) -> SigtermAsSigint:
        self._active = threading.current_thread() is threading.main_thread()
        if self._active:
            self._previous = signal.signal(signal.SIGTERM, self._forward)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._active:
            signal.signal(signal.SIGTERM, self._previous if self._previous is not None else signal.SIG_DFL)
