"""The exceptions tlsweep raises for bad input; the CLI turns each into a one-line message and exit code 2."""

from __future__ import annotations


class TlsweepError(Exception):
    """Base of every error tlsweep reports to a user (never a bug)."""


class SpecError(TlsweepError):
    """A sweep spec (or a training YAML) is invalid; the message names the file, the field and the fix."""


class DataError(TlsweepError):
    """A dataset is missing, malformed or holds unreadable images; the message names files, rows and values."""


class UnknownNameError(TlsweepError):
    """A name chosen in YAML or on the command line (backbone, preset, policy, ...) is not registered."""


class WeightsError(TlsweepError):
    """Pretrained weights are missing or do not fit the architecture."""


class StoreError(TlsweepError):
    """A results directory cannot be read, or does not match the spec it is resumed with."""


class InputChoiceError(TlsweepError):
    """A command was given none of the inputs it needs one of (a dataset, an image size), or two that exclude each
    other; the CLI reports it as a usage error."""


class OutputError(TlsweepError):
    """An output path cannot be written; the message names it, why, and where a finished result was kept instead."""
