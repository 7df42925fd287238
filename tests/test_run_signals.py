"""Ctrl-C while a phase's Tuner runs stops the sweep even when Tune ends the phase gracefully (no Ray here: a
stand-in does what Ray Tune 2.60's SIGINT handler does)."""

from __future__ import annotations

import os
import signal

from tlsweep.engine.run import _SigintWatch


def _fake_fit(*, interrupted: bool) -> None:
    """What ``tuner.fit()`` does with SIGINT: install Tune's handler, which puts the previous one back when a
    SIGINT arrives; the run then returns normally."""
    previous = signal.getsignal(signal.SIGINT)

    def tune_handler(signum, frame) -> None:
        signal.signal(signal.SIGINT, previous)

    signal.signal(signal.SIGINT, tune_handler)
    if interrupted:
        os.kill(os.getpid(), signal.SIGINT)


def test_a_tuner_stopped_by_sigint_is_seen_and_the_handler_is_restored() -> None:
    before = signal.getsignal(signal.SIGINT)
    for interrupted in (False, True):
        with _SigintWatch() as watch:
            _fake_fit(interrupted=interrupted)
        assert watch.stopped_tune is interrupted
        assert signal.getsignal(signal.SIGINT) is before
