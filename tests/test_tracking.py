"""The W&B mirror: mode resolution, offline runs per trial, resume, failure isolation, the report summary run.

No network: offline runs, a closed loopback port for "unreachable", and a planted fake API key that must never
reach any file.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tlsweep.errors import SpecError
from tlsweep.tracking import (
    NullTracker,
    WandbSettings,
    WandbTracker,
    api_key_configured,
    flatten_config,
    log_report_summary,
    make_tracker,
    resolve_mode,
)
from tlsweep.tracking import wandb_settings as settings_module

PLANTED_KEY = "tlsweepPlantedKey0123456789abcdefghijklmnopqrstuv"  # 48 chars, W&B's key format
VENV_BIN = Path(sys.executable).parent


# -- reading what wandb wrote -----------------------------------------------------------------------------------


def read_records(path: Path) -> list[object]:
    """Records of a ``.wandb`` transaction log (W&B's LevelDB-style log: 7-byte header, 32 KiB blocks)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    records, pos, pending = [], 7, b""
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:
            pos += 32768 - pos % 32768
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind in (2, 3):  # FIRST, MIDDLE
            pending += chunk
            continue
        if kind in (1, 4):  # FULL, LAST
            record = pb.Record()
            record.ParseFromString(pending + chunk)
            records.append(record)
            pending = b""
    return records


def _key(item: object) -> str:
    return item.key or ".".join(item.nested_key)  # type: ignore[attr-defined]


def run_contents(run_dir: Path) -> dict[str, object]:
    """run id, group, job type, name, tags, config, logged steps and summary of one offline run directory."""
    (log_file,) = run_dir.glob("run-*.wandb")
    # wandb-core writes the log asynchronously: run.finish() may return before the file is complete.
    deadline = time.monotonic() + 15
    records = read_records(log_file)
    while not (records and records[-1].WhichOneof("record_type") == "exit") and time.monotonic() < deadline:
        time.sleep(0.05)
        records = read_records(log_file)
    out: dict[str, object] = {"config": {}, "steps": [], "summary": {}, "history": []}
    for record in records:
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
            out.update(
                run_id=run.run_id,
                group=run.run_group,
                job_type=run.job_type,
                name=run.display_name,
                tags=list(run.tags),
                project=run.project,
                resume=run.resume,
            )
            out["config"].update({_key(i): json.loads(i.value_json) for i in run.config.update})
        elif kind == "config":
            out["config"].update({_key(i): json.loads(i.value_json) for i in record.config.update})
        elif kind == "history":
            out["steps"].append(record.history.step.num)
            out["history"].append({_key(i): json.loads(i.value_json) for i in record.history.item})
        elif kind == "summary":
            out["summary"].update({_key(i): json.loads(i.value_json) for i in record.summary.update if _key(i)})
    return out


def offline_run_dirs(results_dir: Path) -> list[Path]:
    return sorted((results_dir / "wandb").glob("offline-run-*"))


def files_containing(root: Path, needle: str) -> list[Path]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink() and needle.encode() in path.read_bytes():
            hits.append(path)
    return hits


def fake_trial_config(cell: int, seed: int) -> dict[str, object]:
    return {
        "factors": {"init": "imagenet" if cell else "scratch", "train_fraction": 0.25},
        "params": {"lr": 0.01 * (cell + 1), "weight_decay": 1e-4},
        "cell_id": f"cell{cell}",
        "seed": seed,
        "phase": "tune",
        "levels": [1, 2],  # not a scalar: dropped
    }


def drive(tracker: object, trial_ids: list[str], epochs: int = 2, finish: bool = True) -> None:
    for index, trial_id in enumerate(trial_ids):
        tracker.trial_started(
            trial_id, name=f"trial-{index}", config=fake_trial_config(index, seed=index), job_type="tune"
        )
    for epoch in range(epochs):
        for trial_id in trial_ids:
            tracker.trial_epoch(trial_id, epoch, {"val_acc": 0.5 + 0.1 * epoch, "train_loss": 1.0 / (epoch + 1)})
    if finish:
        for trial_id in trial_ids:
            tracker.trial_finished(trial_id, summary={"val_acc": 0.6, "best": {"epoch": 1}}, status="completed")


# -- pure rules -------------------------------------------------------------------------------------------------


def test_flatten_config_keeps_scalars_and_dots_nested_keys() -> None:
    np = pytest.importorskip("numpy")
    flat = flatten_config(
        {
            "a": {"b": 1, "c": {"d": "x"}},
            "lr": np.float32(0.5),
            "n": np.int64(3),
            "flag": True,
            "skip": [1, 2],
            "none": None,
            "path": Path("/tmp"),
        }
    )
    assert flat == {"a.b": 1, "a.c.d": "x", "lr": 0.5, "n": 3, "flag": True}
    assert type(flat["n"]) is int


def test_wandb_run_id_is_the_trial_id_without_reserved_characters() -> None:
    from tlsweep.tracking.tracker import wandb_run_id

    assert wandb_run_id("3f9a0c1d2e") == "3f9a0c1d2e"
    assert wandb_run_id("tune:cell/1 #2") == "tune-cell-1--2"


@pytest.mark.parametrize(
    ("spec_mode", "env_mode", "override", "has_key", "expected"),
    [
        (None, None, None, False, "offline"),
        (None, None, None, True, "online"),
        ("offline", None, None, True, "offline"),
        ("online", None, "disabled", True, "disabled"),
        (None, None, "online", False, "online"),
        ("online", "disabled", None, True, "disabled"),
        ("offline", "dryrun", None, True, "offline"),
        ("offline", "disabled", "offline", False, "offline"),
    ],
)
def test_resolve_mode(
    monkeypatch: pytest.MonkeyPatch,
    spec_mode: str | None,
    env_mode: str | None,
    override: str | None,
    has_key: bool,
    expected: str,
) -> None:
    if env_mode is None:
        monkeypatch.delenv("WANDB_MODE", raising=False)
    else:
        monkeypatch.setenv("WANDB_MODE", env_mode)
    monkeypatch.setattr(settings_module, "api_key_configured", lambda: has_key)
    assert resolve_mode(WandbSettings(mode=spec_mode), override) == expected


def test_resolve_mode_rejects_an_unknown_override() -> None:
    with pytest.raises(SpecError, match=r"--wandb: .*online, offline, disabled.*'upload'"):
        resolve_mode(WandbSettings(), "upload")


def test_settings_forbid_unknown_keys() -> None:
    with pytest.raises(ValueError, match="api_key"):
        WandbSettings.model_validate({"mode": "offline", "api_key": "x"})


def test_api_key_configured_reads_env_and_netrc(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from urllib.parse import urlsplit

    from wandb.sdk import wandb_setup

    monkeypatch.delenv("WANDB_IDENTITY_TOKEN_FILE", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", PLANTED_KEY)
    assert api_key_configured()
    monkeypatch.delenv("WANDB_API_KEY")
    empty = tmp_path / "empty-netrc"
    empty.write_text("")
    monkeypatch.setenv("NETRC", str(empty))
    monkeypatch.setattr(wandb_setup.singleton().settings, "api_key", None, raising=False)
    assert not api_key_configured()
    host = urlsplit(wandb_setup.singleton().settings.base_url).netloc
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine {host}\n  login user\n  password {PLANTED_KEY}\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    assert api_key_configured()


# -- the tracker ------------------------------------------------------------------------------------------------


def test_disabled_mode_is_a_null_tracker_that_writes_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    results = tmp_path / "results"
    tracker = make_tracker(WandbSettings(mode="online"), sweep_name="s", results_dir=results)
    assert isinstance(tracker, NullTracker) and tracker.mode == "disabled"
    drive(tracker, ["a", "b"])
    tracker.close()
    assert tracker.sync_command() is None
    assert not results.exists()


def test_offline_tracker_writes_one_run_per_trial_with_flat_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("WANDB_API_KEY", PLANTED_KEY)
    monkeypatch.setenv("WANDB_MODE", "offline")
    results = tmp_path / "results"
    settings = WandbSettings(project="proj", tags=["demo", "ci"])
    tracker = make_tracker(settings, sweep_name="age_sweep", results_dir=results)
    assert isinstance(tracker, WandbTracker)
    trial_ids = ["t0a1b2c3", "t1d4e5f6", "t2a7b8c9"]
    started = time.monotonic()
    drive(tracker, trial_ids)
    assert time.monotonic() - started < 0.5, "driver-side calls must only enqueue"
    tracker.close(timeout_s=60)

    run_dirs = offline_run_dirs(results)
    assert [d.name.rsplit("-", 1)[-1] for d in run_dirs] == sorted(trial_ids)
    for run_dir in run_dirs:
        run = run_contents(run_dir)
        index = trial_ids.index(run["run_id"])
        assert run["group"] == "age_sweep" and run["job_type"] == "tune" and run["project"] == "proj"
        assert run["name"] == f"trial-{index}" and run["tags"] == ["demo", "ci"]
        config = {k: v for k, v in run["config"].items() if k != "_wandb"}
        assert config == {
            "factors.init": "imagenet" if index else "scratch",
            "factors.train_fraction": 0.25,
            "params.lr": pytest.approx(0.01 * (index + 1)),
            "params.weight_decay": 1e-4,
            "cell_id": f"cell{index}",
            "seed": index,
            "phase": "tune",
        }
        assert run["steps"] == [0, 1]
        assert [h["val_acc"] for h in run["history"]] == pytest.approx([0.5, 0.6])
        assert run["summary"]["status"] == "completed"
        assert run["summary"]["val_acc"] == 0.6 and run["summary"]["best.epoch"] == 1

    command = tracker.sync_command()
    assert command == f"wandb sync {results.absolute() / 'wandb'}"
    synced = subprocess.run(
        [str(VENV_BIN / "wandb"), "sync", "--dry-run", *map(str, run_dirs)], capture_output=True, text=True, timeout=60
    )
    assert synced.returncode == 0, synced.stderr
    assert "Would sync 3 run(s)" in synced.stdout + synced.stderr
    assert files_containing(results, PLANTED_KEY) == []


def test_restarted_tracker_continues_the_same_run(tmp_path: Path) -> None:
    results = tmp_path / "results"
    settings = WandbSettings(mode="offline")
    first = WandbTracker(settings, sweep_name="s", results_dir=results, mode="offline")
    first.trial_started("trialX", name="x", config={"seed": 1}, job_type="tune")
    first.trial_epoch("trialX", 0, {"val_acc": 0.4})
    first.close(timeout_s=60)  # the driver dies before the trial ends

    second = WandbTracker(settings, sweep_name="s", results_dir=results, mode="offline")
    second.trial_started("trialX", name="x", config={"seed": 1}, job_type="tune")
    second.trial_epoch("trialX", 1, {"val_acc": 0.5})
    second.trial_finished("trialX", summary={"val_acc": 0.5}, status="completed")
    second.close(timeout_s=60)

    runs = [run_contents(d) for d in offline_run_dirs(results)]
    assert [r["run_id"] for r in runs] == ["trialX", "trialX"]
    assert [r["resume"] for r in runs] == [True, True]  # resume="allow": online, W&B continues the run
    assert [r["steps"] for r in runs] == [[0], [1]]
    synced = subprocess.run(
        [str(VENV_BIN / "wandb"), "sync", "--dry-run", str(results / "wandb")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert synced.returncode == 0, synced.stderr


def test_online_without_a_key_logs_offline_instead_of_prompting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from tlsweep.tracking import tracker as tracker_module

    monkeypatch.setattr(tracker_module, "api_key_configured", lambda: False)
    tracker = WandbTracker(WandbSettings(), sweep_name="s", results_dir=tmp_path, mode="online")
    with caplog.at_level(logging.WARNING, logger="tlsweep.tracking"):
        drive(tracker, ["k1"], epochs=1)
        tracker.close(timeout_s=60)
    assert tracker.mode == "offline" and tracker.sync_command() == f"wandb sync {tmp_path / 'wandb'}"
    assert "no API key is configured" in caplog.text
    assert [run_contents(d)["run_id"] for d in offline_run_dirs(tmp_path)] == ["k1"]


def test_wandb_failures_never_reach_the_driver(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import wandb
    from wandb.sdk.wandb_run import Run

    def broken_log(self: object, *args: object, **kwargs: object) -> None:
        raise RuntimeError("injected log failure")

    monkeypatch.setattr(Run, "log", broken_log)
    results = tmp_path / "results"
    tracker = WandbTracker(WandbSettings(), sweep_name="s", results_dir=results, mode="offline")
    with caplog.at_level(logging.WARNING, logger="tlsweep.tracking"):
        drive(tracker, ["a", "b"])
        tracker.close(timeout_s=60)
    failures = [r for r in caplog.records if "injected log failure" in r.getMessage()]
    assert len(failures) == 1, "one warning per kind of failure"
    assert {run_contents(d)["summary"]["status"] for d in offline_run_dirs(results)} == {"completed"}

    def broken_init(*args: object, **kwargs: object) -> None:
        raise RuntimeError("injected init failure")

    monkeypatch.setattr(wandb, "init", broken_init)
    tracker = WandbTracker(WandbSettings(), sweep_name="s", results_dir=tmp_path / "other", mode="offline")
    with caplog.at_level(logging.WARNING, logger="tlsweep.tracking"):
        drive(tracker, ["c", "d"])
        tracker.close(timeout_s=10)
    assert any("injected init failure" in r.getMessage() for r in caplog.records)


def test_a_hung_wandb_neither_blocks_the_driver_nor_close(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import wandb

    release = __import__("threading").Event()

    def hung_init(*args: object, **kwargs: object) -> None:
        release.wait(30)
        raise RuntimeError("released")

    monkeypatch.setattr(wandb, "init", hung_init)
    tracker = WandbTracker(WandbSettings(), sweep_name="s", results_dir=tmp_path, mode="offline", queue_size=3)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="tlsweep.tracking"):
        drive(tracker, ["a", "b", "c"], epochs=5)
        assert time.monotonic() - started < 0.5
        tracker.close(timeout_s=1.0)
        tracker.trial_epoch("a", 9, {"val_acc": 1.0})  # after close: ignored, no error
    assert time.monotonic() - started < 3.0
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "dropping new ones" in messages and "still busy after 1 s" in messages
    release.set()  # let the worker drain while wandb.init is still the injected one
    tracker._thread.join(10)
    assert not tracker._thread.is_alive()


def test_the_mirror_waits_for_the_driver_to_be_quiet_before_calling_wandb(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """wandb.init/finish hold the interpreter; the driver enqueues while it hands a slot to the next trial."""
    import wandb

    from tlsweep.tracking import tracker as tracker_module

    calls: list[float] = []

    def counting_init(*args: object, **kwargs: object) -> None:
        calls.append(time.monotonic())
        raise RuntimeError("not needed for this test")

    monkeypatch.setattr(wandb, "init", counting_init)
    tracker = WandbTracker(WandbSettings(), sweep_name="s", results_dir=tmp_path, mode="offline")
    tracker.trial_started("a", name="a", config={}, job_type="tune")
    busy_until = time.monotonic() + 0.6
    while time.monotonic() < busy_until:  # the driver keeps enqueuing every 50 ms
        tracker.trial_epoch("b", 1, {"val_acc": 0.5})
        time.sleep(0.05)
    quiet = time.monotonic()
    tracker.close(timeout_s=10)
    assert calls and calls[0] >= quiet, "wandb.init ran while the driver was still enqueuing"
    assert calls[0] - quiet < tracker_module._SETTLE_MAX_S


@pytest.mark.parametrize("server", ["closed-port", "silent-listener"])
def test_unreachable_server_degrades_to_offline_and_never_writes_the_key(tmp_path: Path, server: str) -> None:
    # A fresh process, because wandb reads its environment (base URL, key) once per process.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    if server == "silent-listener":
        listener.listen(8)  # accepts TCP connections, never answers
    base_url = "http://127.0.0.1:9" if server == "closed-port" else f"http://127.0.0.1:{listener.getsockname()[1]}"
    script = textwrap.dedent(
        """
        import sys, time
        from pathlib import Path
        from tlsweep.tracking import WandbSettings, make_tracker
        tracker = make_tracker(WandbSettings(init_timeout_s=2, finish_timeout_s=5), sweep_name="s",
                               results_dir=Path(sys.argv[1]))
        assert tracker.mode == "online", tracker.mode
        started = time.monotonic()
        for trial_id in ("u1", "u2"):
            tracker.trial_started(trial_id, name=trial_id, config={"seed": 0}, job_type="tune")
            tracker.trial_epoch(trial_id, 0, {"val_acc": 0.5})
            tracker.trial_finished(trial_id, summary={"val_acc": 0.5}, status="completed")
        assert time.monotonic() - started < 0.5
        tracker.close(timeout_s=60)
        print("MODE", tracker.mode)
        print("SYNC", tracker.sync_command())
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(WANDB_API_KEY=PLANTED_KEY, WANDB_BASE_URL=base_url, HOME=str(tmp_path / "home"))
    results = tmp_path / "results"
    started = time.monotonic()
    with listener:
        done = subprocess.run(
            [sys.executable, "-c", script, str(results)], env=env, capture_output=True, text=True, timeout=120
        )
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 40
    assert "MODE offline" in done.stdout and f"SYNC wandb sync {results / 'wandb'}" in done.stdout
    reason = "[Errno 111] Connection refused" if server == "closed-port" else "no answer within 2 s"
    assert f"W&B: cannot log online to {base_url} ({reason}); logging offline to {results / 'wandb'}" in done.stderr
    assert done.stderr.count("cannot log online") == 1
    assert sorted(run_contents(d)["run_id"] for d in offline_run_dirs(results)) == ["u1", "u2"]
    assert files_containing(tmp_path, PLANTED_KEY) == []
    assert PLANTED_KEY not in done.stdout + done.stderr


# -- the report's summary run -----------------------------------------------------------------------------------


def test_log_report_summary_offline_logs_tables_images_and_verdict(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    from PIL import Image

    figure = tmp_path / "figures" / "effect_by_cell.png"
    figure.parent.mkdir()
    Image.new("RGB", (8, 6), (200, 30, 30)).save(figure)
    cells = pd.DataFrame(
        {"delta": [0.05, float("nan")], "arm": ["imagenet", None]}, index=pd.Index(["c1", "c2"], name="cell")
    )
    results = tmp_path / "results"
    location = log_report_summary(
        WandbSettings(),
        sweep_name="age_sweep",
        results_dir=results,
        tables={"cells": cells},
        figures=[figure],
        verdict="H1 holds in 2 of 2 cells",
        mode_override="offline",
    )
    (run_dir,) = offline_run_dirs(results)
    assert location == str(run_dir)
    run = run_contents(run_dir)
    assert run["job_type"] == "report" and run["group"] == "age_sweep"
    assert run["summary"]["verdict_text"] == "H1 holds in 2 of 2 cells"
    (table_file,) = (run_dir / "files" / "media" / "table").rglob("cells_*.table.json")
    table = json.loads(table_file.read_text())
    assert table["columns"] == ["cell", "delta", "arm"]
    assert table["data"][0] == ["c1", 0.05, "imagenet"] and table["data"][1][0] == "c2"
    assert list((run_dir / "files" / "media" / "images").rglob("effect_by_cell_*.png"))
    assert list((run_dir / "files" / "media" / "html").rglob("verdict_*.html"))


def test_log_report_summary_disabled_or_failing_returns_none(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import wandb

    kwargs = dict(sweep_name="s", results_dir=tmp_path / "r", tables={}, figures=[], verdict="v")
    assert log_report_summary(WandbSettings(), mode_override="disabled", **kwargs) is None
    assert not (tmp_path / "r").exists()
    monkeypatch.setattr(wandb, "init", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("injected")))
    assert log_report_summary(WandbSettings(), mode_override="offline", **kwargs) is None


# -- the W&B Sweep ------------------------------------------------------------------------------------------------

SWEEP_SPEC = """\
name: age_hypothesis
dataset: {format: synthetic, root: data/age}
design:
  factors:
    init: [scratch, imagenet]
    train_fraction: [0.1, 1.0]
  tune:
    lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}
    weight_decay: {type: float, low: 0.0, high: 0.01}
    warmup_epochs: {type: int, low: 0, high: 2}  # at most the 2 epochs TrialConfig defaults to (validate checks)
    augmentation: {type: categorical, choices: [none, flip]}
  recipe: {lr: 0.01, weight_decay: 1.0e-4, warmup_epochs: 0, augmentation: none}
objective: {metric: val_acc, mode: max}
tracking:
  wandb: {project: age, mode: offline}
"""
SWEEP_ID = "swp0abc1"


def sweep_spec() -> object:
    import yaml

    from tlsweep.spec_load import parse_spec

    return parse_spec(yaml.safe_load(SWEEP_SPEC))


class FakeGraphQL:
    """W&B's GraphQL endpoint as ``wandb.Api()._service_api`` sees it: records every call, keeps one sweep."""

    def __init__(self, *, existing_state: str | None = None) -> None:
        self.calls: list[tuple[str, dict[str, object]]] = []
        self.state = existing_state  # None: the server has no sweep yet

    def execute_graphql(self, query: str, variables: dict[str, object]) -> dict[str, object]:
        name = query.split("(", 1)[0].split()[-1]
        self.calls.append((name, dict(variables)))
        if name == "UpsertSweep":
            if variables.get("state"):
                self.state = str(variables["state"])
            elif self.state is None:
                self.state = "PENDING"
            project = {"name": variables["projectName"], "entity": {"name": "lab"}}
            return {"upsertSweep": {"sweep": {"name": SWEEP_ID, "project": project}, "configValidationWarnings": []}}
        if name == "SweepWithRuns":
            if self.state is None or variables["sweep"] != SWEEP_ID:
                return {"project": {"sweep": None}}
            return {
                "project": {
                    "sweep": {"id": "U3dlZXA6MQ==", "name": SWEEP_ID, "state": self.state, "runs": {"edges": []}}
                }
            }
        raise AssertionError(f"unexpected GraphQL call {name}")

    def named(self, name: str) -> list[dict[str, object]]:
        return [variables for call, variables in self.calls if call == name]


class FakeApi:
    """``wandb.Api`` without its login check: W&B's sweep functions run unchanged on top of it."""

    def __init__(self, graphql: FakeGraphQL, *, entity: str | None, project: str) -> None:
        self.settings = {"base_url": "https://api.wandb.ai", "entity": entity, "project": project}
        self._service_api = graphql
        self.default_entity = "lab"


@pytest.fixture
def fake_wandb(monkeypatch: pytest.MonkeyPatch) -> FakeGraphQL:
    """A reachable W&B server with a key (the API faked), whose runs are still written offline to disk."""
    import wandb

    from tlsweep.tracking import server_check, wandb_sweep
    from tlsweep.tracking import tracker as tracker_module

    graphql = FakeGraphQL()
    monkeypatch.setattr(
        wandb_sweep,
        "public_api",
        lambda *, entity, project, timeout_s: FakeApi(graphql, entity=entity, project=project),
    )
    monkeypatch.setattr(tracker_module, "api_key_configured", lambda: True)
    monkeypatch.setattr(tracker_module, "unreachable_reason", lambda base_url, timeout_s: None)
    monkeypatch.setattr(server_check, "server_problem", lambda base_url, timeout_s: None)
    real_init = wandb.init
    monkeypatch.setattr(wandb, "init", lambda **kwargs: real_init(**{**kwargs, "mode": "offline"}))
    monkeypatch.setenv("WANDB_API_KEY", PLANTED_KEY)
    return graphql


def expected_sweep_url() -> str:
    """The sweep's page as W&B itself builds it for the default server (W&B maps its API host to its app host)."""
    from wandb.sdk.wandb_sweep import _get_sweep_url

    url = _get_sweep_url(base_url="https://api.wandb.ai", entity="lab", project="age", sweep_id=SWEEP_ID)
    assert url is not None and url.endswith(f"/lab/age/sweeps/{SWEEP_ID}")
    return url


def sweep_ids_in(results: Path) -> dict[str, str]:
    """run id → the sweep id recorded in that run's own offline file."""
    out = {}
    for run_dir in offline_run_dirs(results):
        (log_file,) = run_dir.glob("run-*.wandb")
        runs = [r.run for r in read_records(log_file) if r.WhichOneof("record_type") == "run"]
        out[runs[0].run_id] = runs[0].sweep_id
    return out


def test_sweep_config_has_the_objective_the_parameters_and_a_local_controller() -> None:
    from tlsweep.tracking.wandb_sweep import sweep_config

    assert sweep_config(sweep_spec()) == {
        "name": "age_hypothesis",
        "description": "tlsweep sweep age_hypothesis: trials are chosen by Ray Tune and Optuna (sampler tpe); "
        "W&B only shows them. The metric is the best-epoch val_acc of each trial.",
        "method": "bayes",
        "metric": {"name": "objective", "goal": "maximize"},
        "parameters": {
            "init": {"values": ["scratch", "imagenet"]},
            "train_fraction": {"values": [0.1, 1.0]},
            "lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 0.1},
            "weight_decay": {"distribution": "uniform", "min": 0.0, "max": 0.01},
            "warmup_epochs": {"distribution": "int_uniform", "min": 0, "max": 2},
            "augmentation": {"values": ["none", "flip"]},
        },
        "controller": {"type": "local"},
        "project": "age",
    }


def test_online_tracker_creates_one_sweep_and_every_run_joins_it(fake_wandb: FakeGraphQL, tmp_path: Path) -> None:
    import yaml

    from tlsweep.tracking.tracker import SweepLink
    from tlsweep.tracking.wandb_sweep import SweepRecord, sweep_config

    recorded: list[SweepRecord] = []
    link = SweepLink(config=sweep_config(sweep_spec()), on_record=recorded.append)
    results = tmp_path / "results"
    tracker = WandbTracker(
        WandbSettings(project="age"), sweep_name="age_hypothesis", results_dir=results, mode="online", sweep=link
    )
    drive(tracker, ["t0", "t1", "t2"])
    tracker.close(timeout_s=60, complete=True)

    (created,) = fake_wandb.named("UpsertSweep")[:1]
    sent = yaml.safe_load(created["config"])
    assert sent == sweep_config(sweep_spec())
    assert created["projectName"] == "age" and created["displayName"] == "age_hypothesis"
    assert created["id"] is None and created["priorRunsFilters"] is None
    url = expected_sweep_url()
    assert recorded == [SweepRecord(sweep_id=SWEEP_ID, entity="lab", project="age", url=url)]
    assert tracker.sweep_url() == url
    assert sweep_ids_in(results) == {"t0": SWEEP_ID, "t1": SWEEP_ID, "t2": SWEEP_ID}
    # one sweep for the whole tracker, marked finished at the end of a complete sweep
    assert [v.get("state") for v in fake_wandb.named("UpsertSweep")] == [None, "FINISHED"]
    assert fake_wandb.state == "FINISHED"
    assert files_containing(tmp_path, PLANTED_KEY) == []


def test_an_interrupted_sweep_leaves_its_w_and_b_sweep_open(fake_wandb: FakeGraphQL, tmp_path: Path) -> None:
    from tlsweep.tracking.tracker import SweepLink

    tracker = WandbTracker(
        WandbSettings(),
        sweep_name="s",
        results_dir=tmp_path,
        mode="online",
        sweep=SweepLink(config={"name": "s", "method": "random"}),
    )
    drive(tracker, ["a"], epochs=1)
    tracker.close(timeout_s=60)
    assert [v.get("state") for v in fake_wandb.named("UpsertSweep")] == [None]
    assert fake_wandb.state == "PENDING"


def test_a_resumed_sweep_reuses_and_reopens_its_recorded_sweep(fake_wandb: FakeGraphQL, tmp_path: Path) -> None:
    from tlsweep.tracking.tracker import SweepLink
    from tlsweep.tracking.wandb_sweep import SweepRecord

    fake_wandb.state = "FINISHED"  # the first run of the sweep created and finished it
    record = SweepRecord(sweep_id=SWEEP_ID, entity="lab", project="age", url="u")
    created: list[SweepRecord] = []
    tracker = WandbTracker(
        WandbSettings(project="age"),
        sweep_name="s",
        results_dir=tmp_path,
        mode="online",
        sweep=SweepLink(config={"name": "s"}, record=record, on_record=created.append),
    )
    drive(tracker, ["r1"], epochs=1)
    tracker.close(timeout_s=60, complete=True)
    assert created == []  # no second sweep
    assert "UpsertSweep" not in [call for call, _ in fake_wandb.calls[:1]]  # looked up first, never re-created
    assert all(v["id"] == "U3dlZXA6MQ==" for v in fake_wandb.named("UpsertSweep"))
    assert [v["state"] for v in fake_wandb.named("UpsertSweep")] == ["RUNNING", "FINISHED"]
    assert sweep_ids_in(tmp_path) == {"r1": SWEEP_ID}


def test_offline_runs_carry_the_recorded_sweep_id_without_any_api_call(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from tlsweep.tracking import wandb_sweep
    from tlsweep.tracking.tracker import SweepLink
    from tlsweep.tracking.wandb_sweep import SweepRecord

    monkeypatch.setattr(wandb_sweep, "public_api", lambda **kwargs: pytest.fail("offline must not call W&B"))
    record = SweepRecord(sweep_id=SWEEP_ID, entity=None, project="age")
    tracker = make_tracker(
        WandbSettings(mode="offline"),
        sweep_name="s",
        results_dir=tmp_path,
        mode_override="offline",
        sweep=SweepLink(config={}, record=record),
    )
    drive(tracker, ["o1", "o2"], epochs=1)
    tracker.close(timeout_s=60, complete=True)
    assert sweep_ids_in(tmp_path) == {"o1": SWEEP_ID, "o2": SWEEP_ID}
    assert tracker.sweep_url() is None  # offline: no URL is known


def test_a_sweep_that_cannot_be_created_costs_only_the_sweep_page(
    fake_wandb: FakeGraphQL, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from tlsweep.tracking.tracker import SweepLink

    def refuse(query: str, variables: dict[str, object]) -> dict[str, object]:
        raise RuntimeError("permission denied")

    monkeypatch.setattr(fake_wandb, "execute_graphql", refuse)
    tracker = WandbTracker(
        WandbSettings(),
        sweep_name="s",
        results_dir=tmp_path,
        mode="online",
        sweep=SweepLink(config={"name": "s", "method": "random"}),
    )
    with caplog.at_level(logging.WARNING, logger="tlsweep.tracking"):
        drive(tracker, ["f1", "f2"], epochs=1)
        tracker.close(timeout_s=60, complete=True)
    assert "could not create or reopen the W&B Sweep" in caplog.text and "permission denied" in caplog.text
    assert sweep_ids_in(tmp_path) == {"f1": "", "f2": ""}


def _results_with_offline_runs(tmp_path: Path, sweep: object = None) -> Path:
    from tlsweep.engine.run import sweep_provenance
    from tlsweep.results.store import ResultsStore

    spec = sweep_spec()
    results = tmp_path / "age_hypothesis"
    ResultsStore(results).write_spec(spec, sweep_provenance(spec, source=None))
    tracker = WandbTracker(
        WandbSettings(), sweep_name="age_hypothesis", results_dir=results, mode="offline", sweep=sweep
    )  # type: ignore[arg-type]
    drive(tracker, ["s1", "s2"], epochs=1)
    tracker.close(timeout_s=60)
    return results


def test_wandb_sync_creates_the_sweep_with_the_offline_runs_as_prior_runs(
    fake_wandb: FakeGraphQL, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import yaml
    from click.testing import CliRunner

    from tlsweep.cli import cli
    from tlsweep.tracking import wandb_settings as settings_mod
    from tlsweep.tracking import wandb_sweep, wandb_sync

    results = _results_with_offline_runs(tmp_path)
    uploaded: list[list[str]] = []
    monkeypatch.setattr(
        wandb_sync,
        "upload_offline_runs",
        lambda dirs, timeout_s: uploaded.append([d.name.split("-", 3)[3] for d in dirs]),
    )
    monkeypatch.setattr(settings_mod, "api_key_configured", lambda: True)
    done = CliRunner().invoke(cli, ["wandb", "sync", str(results)])
    assert done.exit_code == 0, done.output
    url = expected_sweep_url()
    assert done.output.strip() == f"W&B sweep: {url}"
    assert uploaded == [["s1", "s2"]]
    created, finished = fake_wandb.named("UpsertSweep")
    assert yaml.safe_load(created["config"]) == wandb_sweep.sweep_config(sweep_spec())
    assert json.loads(created["priorRunsFilters"]) == {"$or": [{"name": "s1"}, {"name": "s2"}]}
    assert finished["state"] == "FINISHED"
    assert json.loads((results / "wandb.json").read_text()) == {
        "sweep_id": SWEEP_ID,
        "entity": "lab",
        "project": "age",
        "url": url,
    }

    # again: the recorded sweep is found and the runs are (re)attached to it, no second sweep
    fake_wandb.calls.clear()
    fake_wandb.state = "RUNNING"
    done = CliRunner().invoke(cli, ["wandb", "sync", str(results), "--no-finish"])
    assert done.exit_code == 0, done.output
    assert [call for call, _ in fake_wandb.calls] == ["SweepWithRuns", "UpsertSweep"]
    (added,) = fake_wandb.named("UpsertSweep")
    assert added["id"] == "U3dlZXA6MQ==" and json.loads(added["priorRunsFilters"])["$or"][0] == {"name": "s1"}
    assert files_containing(tmp_path, PLANTED_KEY) == []


def test_wandb_sync_refuses_clearly_without_runs_or_a_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from tlsweep.tracking import wandb_settings as settings_mod
    from tlsweep.tracking.wandb_sync import WandbSyncError, sync_to_sweep

    results = _results_with_offline_runs(tmp_path)
    monkeypatch.setattr(settings_mod, "api_key_configured", lambda: False)
    with pytest.raises(WandbSyncError, match="no W&B API key is configured; run `wandb login`"):
        sync_to_sweep(results)
    for run_dir in offline_run_dirs(results):
        shutil.rmtree(run_dir)
    with pytest.raises(WandbSyncError, match=r"age_hypothesis/wandb: no offline W&B runs to upload"):
        sync_to_sweep(results)
