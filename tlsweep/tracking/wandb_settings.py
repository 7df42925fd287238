"""The ``tracking.wandb`` spec block and how the W&B mode is chosen (no wandb import at module level)."""

from __future__ import annotations

import logging
import os
from typing import Literal

import pydantic

from tlsweep.errors import SpecError

Mode = Literal["online", "offline", "disabled"]
MODES: tuple[str, ...] = ("online", "offline", "disabled")
# Older spellings W&B itself still accepts in WANDB_MODE.
_MODE_ALIASES = {"dryrun": "offline", "run": "online"}

_log = logging.getLogger("tlsweep.tracking")


class WandbSettings(pydantic.BaseModel):
    """The spec block ``tracking.wandb``: where and how trials are mirrored to Weights & Biases."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    mode: Mode | None = None
    """None: ``offline`` when no API key is configured, ``online`` when one is."""
    project: str = "tlsweep"
    entity: str | None = None
    tags: list[str] = []
    init_timeout_s: float = pydantic.Field(default=30.0, gt=0)
    """An unreachable server degrades to offline after this many seconds."""
    finish_timeout_s: float = pydantic.Field(default=120.0, ge=0)
    """Bounded end-of-sweep wait for uploads."""


def _normalise_mode(value: str) -> str | None:
    value = value.strip().lower()
    value = _MODE_ALIASES.get(value, value)
    return value if value in MODES else None


def resolve_mode(settings: WandbSettings, override: str | None = None) -> str:
    """The W&B mode a sweep uses: one of ``online``, ``offline``, ``disabled``.

    Precedence, first that is set wins: ``override`` (the ``--wandb MODE`` flag), the ``WANDB_MODE`` environment
    variable (W&B's own switch, so ``WANDB_MODE=disabled`` silences every sweep), ``settings.mode``, then
    ``online`` when an API key is configured and ``offline`` when none is.

    Raises:
        SpecError: ``override`` is not one of the three modes.
    """
    if override is not None:
        mode = _normalise_mode(override)
        if mode is None:
            raise SpecError(f"--wandb: the mode must be one of {', '.join(MODES)}, but got {override!r}")
        return mode
    env_mode = os.environ.get("WANDB_MODE", "").strip()
    if env_mode:
        mode = _normalise_mode(env_mode)
        if mode is not None:
            return mode
        _log.warning("ignoring WANDB_MODE=%r: W&B modes are %s", env_mode, ", ".join(MODES))
    if settings.mode is not None:
        return settings.mode
    return "online" if api_key_configured() else "offline"


def api_key_configured() -> bool:
    """Whether W&B's own mechanisms hold credentials: ``WANDB_API_KEY``, an identity token file, the netrc entry
    for the configured server, or W&B's settings file. The key itself is never returned or stored."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    try:
        from wandb.sdk import wandb_setup
        from wandb.sdk.lib import wbauth

        wandb_settings = wandb_setup.singleton().settings
        if wandb_settings.api_key:
            return True
        return bool(wbauth.read_netrc_auth(host=wandb_settings.base_url))
    except Exception:  # noqa: BLE001 - a malformed netrc or a moved wandb internal means "no usable key"
        return _netrc_has_entry(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai"))


def _netrc_has_entry(base_url: str) -> bool:
    import netrc
    from urllib.parse import urlsplit

    try:
        auth = netrc.netrc().authenticators(urlsplit(base_url).netloc)
    except (OSError, netrc.NetrcParseError):
        return False
    return bool(auth and auth[2])
