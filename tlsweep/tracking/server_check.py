"""Whether the configured W&B server answers like W&B's API, checked before ``tlsweep wandb sync`` and ``tlsweep wandb
dashboard`` hand it to wandb, and one-line messages for every way it does not.

wandb itself reports a bad server late and loudly: an HTML captive portal, an HTTP 500 or a ``{"data": {}}`` answer
surface as ``AuthenticationError`` tracebacks after its own retries, and a malformed ``WANDB_BASE_URL`` as a pydantic
traceback. One unauthenticated GraphQL request (no key is sent) within the command's timeout tells these apart.
"""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

from tlsweep.errors import TlsweepError

WHAT_TO_CHECK = "check WANDB_BASE_URL, the network (proxy, VPN, captive portal) and the API key (`wandb login`)"
_PROBE = json.dumps({"query": "query Probe { viewer { id } }"}).encode()
_SECRET = re.compile(r"(?i)(api[_-]?key\S*\s*[:=]\s*)\S+|\b(?:local-)?[0-9a-f]{40,}\b")


def redact(text: str) -> str:
    """``text`` without anything that looks like an API key (40+ hex digits, ``api_key=...``)."""
    return _SECRET.sub(lambda m: f"{m.group(1) or ''}***", text)


def one_line(exc: BaseException) -> str:
    """An exception as ``Type: first line of its message``, keys redacted, at most 300 characters."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return redact(text)[:300]


def _settings_problem(exc: Exception) -> str:
    """The first invalid W&B setting and why, from pydantic's error (never the value of a key)."""
    errors = getattr(exc, "errors", None)
    try:
        first = errors()[0] if callable(errors) else None
    except Exception:  # noqa: BLE001 - not a pydantic error after all
        first = None
    if not isinstance(first, dict):
        return one_line(exc)
    field = ".".join(map(str, first.get("loc", ()))) or "?"
    shown = "" if "key" in field or "token" in field else f", got {str(first.get('input'))[:100]!r}"
    return redact(f"{field}: {first.get('msg', '')}{shown}")


def base_url(error: type[TlsweepError]) -> str:
    """The W&B server URL as wandb resolves it, provided it is an http(s) URL with a host.

    Raises:
        error: wandb's settings are invalid (e.g. ``WANDB_MODE=''``) or the URL is not an http(s) URL.
    """
    from tlsweep.tracking.tracker import wandb_base_url

    try:
        url = wandb_base_url()
    except Exception as exc:  # noqa: BLE001 - wandb validates its settings with pydantic
        raise error(
            f"W&B's settings are invalid ({_settings_problem(exc)}); check the WANDB_* environment variables "
            "(WANDB_BASE_URL, WANDB_MODE) and W&B's settings file"
        ) from None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise error(f"the W&B server URL {url!r} is not an http(s) URL with a host; check WANDB_BASE_URL")
    return url


def server_problem(url: str, timeout_s: float) -> str | None:
    """Why ``url`` does not answer like W&B's GraphQL API within ``timeout_s`` (no key sent), or None when it does.

    An answer with ``data.viewer`` (null without a key) or GraphQL ``errors``, or a 401/403, is W&B's API; silence,
    a refused connection, another HTTP error, a page that is not JSON or JSON without those fields is not.
    """
    import urllib.request

    from tlsweep.tracking.tracker import http_answer

    request = urllib.request.Request(
        url.rstrip("/") + "/graphql",
        data=_PROBE,
        method="POST",
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )
    answer = http_answer(request, timeout_s)
    if isinstance(answer, str):
        return f"is not reachable ({redact(answer)})"
    if answer.status in (0, 401, 403):  # a TLS error is wandb's to judge (it may trust another CA); no key was sent
        return None
    if answer.status >= 400:
        return f"answered HTTP {answer.status} {answer.reason}"
    body, content_type = answer.body, answer.content_type
    try:
        parsed = json.loads(body)
    except ValueError:
        kind = "an HTML page" if "html" in content_type.lower() or body.lstrip()[:1] == b"<" else "a reply"
        return (
            f"answered with {kind} that is not W&B's API (a captive portal, a proxy's login page or another service?)"
        )
    if isinstance(parsed, dict) and (
        "errors" in parsed or (isinstance(parsed.get("data"), dict) and "viewer" in parsed["data"])
    ):
        return None
    return f"answered JSON that is not W&B's API ({redact(body[:80].decode('utf-8', 'replace'))})"


def check_server(error: type[TlsweepError], timeout_s: float) -> str:
    """The W&B server URL, once it answers like W&B's API within ``timeout_s``.

    Raises:
        error: one line naming the server, what went wrong and what to check.
    """
    url = base_url(error)
    problem = server_problem(url, timeout_s)
    if problem is not None:
        raise error(f"the W&B server at {url} {problem}; {WHAT_TO_CHECK}")
    return url


def server_error(error: type[TlsweepError], url: str, exc: BaseException, action: str) -> TlsweepError:
    """``error`` for a wandb call that failed against ``url``: one line naming the server and the failure."""
    return error(f"the W&B server at {url} failed while {action} ({one_line(exc)}); {WHAT_TO_CHECK}")
