"""`tlsweep wandb sync` and `tlsweep wandb dashboard` against bad W&B servers (local ones on 127.0.0.1): every
failure is one line naming the server, the error and what to check, exit 2, within the timeout; never a traceback,
never the API key."""

from __future__ import annotations

import http.server
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_exit import run_tlsweep
from test_tracking_dashboard import SPEC
from wandb.sdk import wandb_setup

from tlsweep.tracking import wandb_sweep, wandb_sync

pytestmark = pytest.mark.timeout(120)
KEY = "0123456789abcdef0123456789abcdef01234567"
TIMEOUT_S = 2.0
ANSWERS = {
    "data without the API's fields": (200, "application/json", b'{"data": {}}'),
    "HTTP 500": (500, "text/plain", b"internal error"),
    "an HTML captive portal": (200, "text/html", b"<html><body>Log in to the hotel wifi</body></html>"),
    "a JSON list": (200, "application/json", b"[1, 2]"),
}
SAYS = {
    "data without the API's fields": "answered JSON that is not W&B's API",
    "HTTP 500": "answered HTTP 500",
    "an HTML captive portal": "answered with an HTML page that is not W&B's API",
    "a JSON list": "answered JSON that is not W&B's API",
    "a black hole": f"is not reachable (no answer within {TIMEOUT_S:g} s)",
    "a closed port": "is not reachable (",
}


@pytest.fixture(scope="module", autouse=True)
def _warm(tmp_path_factory: pytest.TempPathFactory) -> None:
    """What the commands import and read once per process, done before they are timed."""
    import wandb_workspaces.workspaces  # noqa: F401

    from tlsweep.results.store import ResultsStore
    from tlsweep.tracking.wandb_settings import api_key_configured

    directory = tmp_path_factory.mktemp("warm")
    (directory / "spec.resolved.yaml").write_text(SPEC)
    ResultsStore(directory).read_spec()
    api_key_configured()


@pytest.fixture
def results_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "runs" / "age_hypothesis"
    (directory / "wandb" / "offline-run-20260101_000000-abc123").mkdir(parents=True)
    (directory / "spec.resolved.yaml").write_text(SPEC)
    return directory


def _answering(status: int, content_type: str, body: bytes) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST

        def log_message(self, *args: object) -> None:
            pass

    return http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)


@pytest.fixture(params=[*ANSWERS, "a black hole", "a closed port"])
def bad_server(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """(case, URL) of a local server that is not W&B's API."""
    case = request.param
    if case in ANSWERS:
        server = _answering(*ANSWERS[case])
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield case, f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
            server.server_close()
        return
    with socket.socket() as sock:  # a black hole accepts connections (the kernel's backlog) and never answers
        sock.bind(("127.0.0.1", 0))
        if case == "a black hole":
            sock.listen(8)
        yield case, f"http://127.0.0.1:{sock.getsockname()[1]}"


def _wandb_env(monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    """W&B's settings read afresh from ``env`` (wandb caches them per process)."""
    monkeypatch.setenv("WANDB_API_KEY", KEY)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(wandb_setup, "_singleton", None)


def _one_line_error(
    command: str,
    results_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[str, float]:
    started = time.monotonic()
    code, out, err = run_tlsweep(["wandb", command, results_dir, "--timeout", TIMEOUT_S], capsys, monkeypatch)
    elapsed = time.monotonic() - started
    assert code == 2, (out, err)
    assert len(err.strip().splitlines()) == 1, err
    assert KEY not in out + err
    return err.strip(), elapsed


@pytest.mark.parametrize("command", ["sync", "dashboard"])
def test_a_server_that_is_not_wandb_is_one_line_within_the_timeout(
    command: str,
    bad_server: tuple[str, str],
    results_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    case, url = bad_server
    _wandb_env(monkeypatch, WANDB_BASE_URL=url)
    before = sorted(p.name for p in results_dir.rglob("*"))
    message, elapsed = _one_line_error(command, results_dir, capsys, monkeypatch)
    assert f"the W&B server at {url} {SAYS[case]}" in message
    assert "check WANDB_BASE_URL, the network" in message and "`wandb login`" in message
    assert elapsed < TIMEOUT_S + 5
    assert sorted(p.name for p in results_dir.rglob("*")) == before, "nothing written"


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"WANDB_BASE_URL": "not a url"}, "base_url: Input should be a valid URL"),
        ({"WANDB_BASE_URL": "ftp://example.org"}, "base_url: URL scheme should be 'http' or 'https'"),
        ({"WANDB_MODE": ""}, "mode: Input should be"),
    ],
)
@pytest.mark.parametrize("command", ["sync", "dashboard"])
def test_invalid_wandb_settings_are_one_line(
    command: str,
    env: dict[str, str],
    says: str,
    results_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _wandb_env(monkeypatch, **env)
    message, _ = _one_line_error(command, results_dir, capsys, monkeypatch)
    assert "W&B's settings are invalid (" in message and says in message and "WANDB_BASE_URL" in message


@pytest.fixture
def wandb_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A server answering like W&B's API (a null viewer: no key was sent), its URL."""
    server = _answering(200, "application/json", b'{"data": {"viewer": null}}')
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _wandb_env(monkeypatch, WANDB_BASE_URL=f"http://127.0.0.1:{server.server_address[1]}")
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_failing_wandb_call_is_one_line_without_the_key(
    wandb_api: str, results_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from wandb.errors import AuthenticationError

    def refused(**kwargs: object) -> None:
        raise AuthenticationError(f"Failed to verify credentials with {wandb_api}: api_key={KEY} unknown\nmore")

    monkeypatch.setattr(wandb_sweep, "public_api", refused)
    message, _ = _one_line_error("sync", results_dir, capsys, monkeypatch)
    assert f"the W&B server at {wandb_api} failed while syncing the sweep (AuthenticationError: " in message
    assert "api_key=***" in message and "more" not in message


def test_a_failing_upload_is_one_line_without_the_key(
    wandb_api: str, results_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wandb_sweep, "public_api", lambda **kwargs: object())

    def failing(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(command, 1, "Syncing...\n", f"Traceback (most recent call last):\nE {KEY}\n")

    monkeypatch.setattr(wandb_sync.subprocess, "run", failing)
    message, _ = _one_line_error("sync", results_dir, capsys, monkeypatch)
    assert "`wandb sync` failed (exit 1: E ***)" in message and "Traceback" not in message
