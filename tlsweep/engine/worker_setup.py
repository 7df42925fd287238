"""Ray workers use the installed tlsweep, whatever folder the sweep was started from.

When a job's first task runs on a worker, Ray puts the driver's current folder first on the worker's ``sys.path``
(``py_driver_sys_path``, ``ray/_private/worker.py``). A sweep started from a folder holding a ``tlsweep/`` directory
(a clone's parent folder, or the clone itself beside a ``data/`` folder) would then shadow the installed package in
every trial. Ray runs the job's ``worker_process_setup_hook`` when a worker process starts, before that: importing
tlsweep there binds the package, and every module imported later through its ``__path__``, to the copy the worker's
own ``sys.path`` finds (the installed one, editable or not, or ``PYTHONPATH``).
"""

from __future__ import annotations

from typing import Any


def bind_installed_package() -> None:
    """Ray's worker setup hook: import tlsweep before the driver's folder reaches ``sys.path``."""
    import tlsweep  # noqa: F401


def worker_runtime_env() -> dict[str, Any]:
    """The job's ``runtime_env`` for ``ray.init``: the setup hook above."""
    return {"worker_process_setup_hook": f"{__name__}.{bind_installed_package.__name__}"}
