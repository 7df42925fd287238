"""Recording benchmark: milliseconds the driver spends recording one finished trial when 1k / 5k / 20k trials are
already recorded, on a local disk and on S3 (a moto server on loopback), measured in one run.

    .venv/bin/python bench/recording.py [--sizes 1000 5000 20000] [--trials 20] [--epochs 9] [--no-s3]

For each size a results directory is filled with that many recorded trials (``epochs`` epoch rows each), then a
``ResultsRecorder`` records ``--trials`` more through the Tune callback API (start, one result per epoch, the final
result, complete). Reported: the median time of one ``on_trial_complete`` (the driver is blocked meanwhile) with
each trial written at once (``flush_interval_s=0``, the worst case), the mean cost per trial with the default 2 s
batching, and the time to compact the parts at the end of the phase. Runs against whichever tlsweep is on
``PYTHONPATH`` (an older one without part files reports its rewrite-everything cost in the first column).
Needs ``moto[server]`` for the S3 rows (skipped otherwise).
"""

from __future__ import annotations

import argparse
import inspect
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


class FakeTrial:
    """The attributes of a Ray Tune ``Trial`` that the recorder reads."""

    def __init__(self, trial_id: str, config: dict[str, Any]) -> None:
        self.trial_id, self.config = trial_id, config
        self.last_result: dict[str, Any] = {}
        self.num_failures = 0
        self.error_file = None


def _spec() -> Any:
    from tlsweep.spec_load import load_spec

    return load_spec(REPO / "sweeps" / "demo.yaml")


def _planned(spec: Any, index: int) -> tuple[Any, dict[str, Any]]:
    from tlsweep.design import plan_tune_trial, studies, trial_config
    from tlsweep.engine.trainable import trial_message

    study = studies(spec)[index % len(studies(spec))]
    planned = plan_tune_trial(spec, study, index, {"lr": 0.01 + index * 1e-7, "augmentation": "none"})
    config = trial_config(spec, planned.levels, planned.params, planned.seed, num_threads=1)
    return planned, trial_message(planned, config, spec.objective.metric)


def _results(epochs: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    history = [
        {
            "epoch": e,
            "step": 10 * e,
            "train_loss": 1.0 / e,
            "train_acc": 0.5,
            "val_loss": 1.1 / e,
            "val_acc": 0.4 + e / 100,
            "lr": 0.01,
            "epoch_time_s": 0.5,
        }
        for e in range(1, epochs + 1)
    ]
    final = {
        "final": True,
        "status": "ok",
        "objective": 0.5,
        "best_val_acc": 0.5,
        "best_val_loss": 0.9,
        "best_epoch": epochs,
        "final_val_acc": 0.5,
        "chance": 0.125,
        "num_classes": 8,
        "n_train": 100,
        "n_val": 50,
        "n_test": 50,
        "subset_hash": "abc",
        "epochs_run": epochs,
        "optimizer_steps": 10 * epochs,
        "wall_time_s": 3.0,
        "history": history,
        "node_id": "n",
        "hostname": "h",
    }
    return history, final


def _fill(store: Any, spec: Any, n: int, epochs: int) -> None:
    """``n`` recorded trials (and their epochs), as one earlier driver left them."""
    from tlsweep.results.schema import EPOCHS_SCHEMA, TRIALS_SCHEMA
    from tlsweep.results.store import rows_to_table

    history, final = _results(epochs)
    trials, epoch_rows = [], []
    for i in range(n):
        tid = f"{i:016x}"
        trials.append(
            {
                "sweep": spec.name,
                "trial_id": tid,
                "phase": "tune",
                "cell_id": "c",
                "arm": "scratch",
                "status": "ok",
                "params_json": "{}",
                "lr": 0.01,
                "objective": 0.5,
                **{k: final[k] for k in ("best_val_acc", "epochs_run", "wall_time_s")},
            }
        )
        epoch_rows.extend({"sweep": spec.name, "trial_id": tid, "phase": "tune", **h} for h in history)
    store.write_trials(rows_to_table(trials, TRIALS_SCHEMA), metadata={"spec_hash": "x"})
    store.write_epochs(rows_to_table(epoch_rows, EPOCHS_SCHEMA), metadata={"spec_hash": "x"})


def _record(
    spec: Any, store: Any, count: int, epochs: int, flush_interval_s: float | None, start: int
) -> tuple[list[float], float]:
    """Driver time of each recorded trial (``on_trial_complete`` plus the next Tune step) and their sum with the
    final flush."""
    from tlsweep.engine.recorder import ResultsRecorder
    from tlsweep.tracking import NullTracker

    kwargs: dict[str, Any] = {}
    if flush_interval_s is not None:
        kwargs["flush_interval_s"] = flush_interval_s
    recorder = ResultsRecorder(spec, store, metadata={"spec_hash": "x"}, tracker=NullTracker(), **kwargs)
    history, final = _results(epochs)
    times = []
    for i in range(start, start + count):
        _, config = _planned(spec, i)
        trial = FakeTrial(f"ray-{i}", config)
        recorder.on_trial_start(0, [], trial)
        for result in history:
            recorder.on_trial_result(0, [], trial, result)
        recorder.on_trial_result(0, [], trial, final)
        t0 = time.perf_counter()
        recorder.on_trial_complete(0, [], trial)
        if hasattr(recorder, "on_step_end"):
            recorder.on_step_end(0, [])  # where a due flush happens, after Tune's next step
        times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    if hasattr(recorder, "flush"):
        recorder.flush()  # the end of the phase
    return times, sum(times) + time.perf_counter() - t0


def _compact(store: Any) -> float:
    if not hasattr(store, "compact"):
        return float("nan")
    t0 = time.perf_counter()
    store.compact()
    return time.perf_counter() - t0


def _moto() -> tuple[subprocess.Popen[bytes], str] | None:
    try:
        import moto.server  # noqa: F401
    except ImportError:
        return None
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(150):
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1)
            break
        except urllib.error.HTTPError:
            break
        except OSError:
            time.sleep(0.2)
    os.environ.update(
        AWS_ENDPOINT_URL=url,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_REGION="us-east-1",
    )
    import pyarrow.fs as pafs

    pafs.S3FileSystem(
        endpoint_override=f"127.0.0.1:{port}",
        scheme="http",
        region="us-east-1",
        access_key="testing",
        secret_key="testing",
        allow_bucket_creation=True,
    ).create_dir("bench")
    return process, "s3://bench"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 20000])
    parser.add_argument("--trials", type=int, default=20, help="trials recorded per measurement")
    parser.add_argument("--epochs", type=int, default=9, help="epoch rows per trial")
    parser.add_argument("--no-s3", action="store_true")
    args = parser.parse_args()

    import tlsweep
    from tlsweep.engine.recorder import ResultsRecorder
    from tlsweep.results.store import ResultsStore

    spec = _spec()
    batching = "flush_interval_s" in inspect.signature(ResultsRecorder.__init__).parameters
    print(f"tlsweep from {Path(tlsweep.__file__).parent}; part files: {'yes' if batching else 'no (rewrites whole)'}")
    backends = [("local", tempfile.mkdtemp(prefix="tlsweep-bench-rec-"))]
    moto = None if args.no_s3 else _moto()
    if moto is not None:
        backends.append(("s3 (moto)", moto[1]))
    elif not args.no_s3:
        print("moto[server] not installed: S3 rows skipped")
    print(
        f"{'backend':<10} {'recorded':>8} {'ms/trial (each written)':>24} {'ms/trial (2 s batches)':>23} "
        f"{'compact s':>9}"
    )
    try:
        for name, root in backends:
            for n in args.sizes:
                uri = f"{root}/n{n}"
                store = ResultsStore(uri)
                _fill(store, spec, n, args.epochs)
                times, _ = _record(spec, store, args.trials, args.epochs, 0.0 if batching else None, n)
                each = statistics.median(times) * 1000
                batched = float("nan")
                if batching:
                    _, total = _record(spec, store, args.trials, args.epochs, 2.0, n + args.trials)
                    batched = total / args.trials * 1000
                compact = _compact(store)
                print(f"{name:<10} {n:>8} {each:>24.1f} {batched:>23.2f} {compact:>9.2f}", flush=True)
    finally:
        if moto is not None:
            moto[0].terminate()
            moto[0].wait(timeout=10)


if __name__ == "__main__":
    main()
