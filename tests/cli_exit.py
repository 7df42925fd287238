"""Run the ``tlsweep`` console entry point in-process, as a user's shell would: exit code, stdout, stderr.

Unlike ``CliRunner().invoke(cli, ...)`` this goes through ``tlsweep.cli.main``, which turns a ``TlsweepError`` into
exit code 2; an unexpected exception is not caught, so a traceback fails the test that provoked it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import pytest


def run_tlsweep(
    args: Sequence[object], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, str, str]:
    from tlsweep.cli import main

    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["tlsweep", *map(str, args)])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    return code, out.out, out.err
