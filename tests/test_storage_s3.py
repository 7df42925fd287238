"""S3 specifics of the results store and Ray Tune's state, against moto's S3 server on loopback (no network).

What S3 promises like every backend (round trips, merges, schema checks, copies) runs in ``test_store_contract.py``.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.fs as pafs
import pytest
from moto_server import S3Bucket

from tlsweep.errors import StoreError
from tlsweep.results.location import Location, ray_storage_args, resolve_location
from tlsweep.results.schema import TRIALS_SCHEMA
from tlsweep.results.store import ResultsStore, rows_to_table


def _trials(*ids: str, status: str = "ok") -> object:
    return rows_to_table(
        [{"sweep": "demo", "trial_id": i, "phase": "tune", "status": status, "best_val_acc": 0.5} for i in ids],
        TRIALS_SCHEMA,
    )


def _objects(bucket: S3Bucket, prefix: str = "") -> list[str]:
    filesystem = bucket.endpoint.filesystem()
    selector = pafs.FileSelector(f"{bucket.name}/{prefix}".rstrip("/"), recursive=True, allow_not_found=True)
    return sorted(
        info.path[len(bucket.name) + 1 :]
        for info in filesystem.get_file_info(selector)
        if info.type == pafs.FileType.File
    )


def test_endpoint_from_aws_endpoint_url_is_baked_into_the_filesystem(s3_env: S3Bucket) -> None:
    location = resolve_location(s3_env.uri("prefix", "demo") + "/")
    assert location.uri == f"s3://{s3_env.name}/prefix/demo"
    assert location.path == f"{s3_env.name}/prefix/demo"
    assert not location.is_local
    options = location.filesystem.__reduce__()[1][0]
    assert options["endpoint_override"] == s3_env.endpoint.host_port and options["scheme"] == "http"
    assert options["access_key"] is None  # credentials stay in the environment / instance profile
    assert ray_storage_args(location) == {
        "storage_path": f"{s3_env.name}/prefix/demo/ray",
        "storage_filesystem": location.filesystem,
    }


def test_aws_endpoint_url_s3_wins_over_the_generic_variable(s3_env: S3Bucket, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_env.endpoint.url)
    store = ResultsStore(s3_env.uri("demo"))
    store.write_text("spec.resolved.yaml", "name: demo\n")
    assert _objects(s3_env) == ["demo/spec.resolved.yaml"]


def test_bad_endpoint_variable_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "ftp://somewhere")
    with pytest.raises(StoreError, match="AWS_ENDPOINT_URL"):
        resolve_location("s3://bucket/demo")


def test_missing_bucket_is_a_store_error(s3_env: S3Bucket) -> None:
    store = ResultsStore("s3://tlsweep-no-such-bucket/demo")
    assert not store.exists()
    with pytest.raises(
        StoreError, match=r"cannot write s3://tlsweep-no-such-bucket/demo/trials.parquet.*bucket exists"
    ):
        store.write_trials(_trials("a"))


def test_explicit_endpoint_in_the_uri_query(s3_bucket: S3Bucket, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_bucket.endpoint.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_bucket.endpoint.secret_key)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    query = f"endpoint_override={s3_bucket.endpoint.host_port}&scheme=http&region=us-east-1"
    location = resolve_location(f"{s3_bucket.uri('demo')}?{query}")
    assert location.uri == f"s3://{s3_bucket.name}/demo?{query}"
    assert location.join("ray").uri == f"s3://{s3_bucket.name}/demo/ray?{query}"
    ResultsStore(location).write_trials(_trials("a"))
    assert _objects(s3_bucket) == ["demo/trials.parquet"]


def test_store_on_a_prebuilt_location(s3_bucket: S3Bucket) -> None:
    location = Location(uri=s3_bucket.uri("x"), filesystem=s3_bucket.endpoint.filesystem(), path=f"{s3_bucket.name}/x")
    store = ResultsStore(location)
    store.write_trials(_trials("a"))
    assert store.read_trials().column("trial_id").to_pylist() == ["a"]


def test_s3_object_appears_only_when_the_stream_is_closed(s3_env: S3Bucket) -> None:
    """The property the store's remote atomicity rests on: readers see the old object until close()."""
    store = ResultsStore(s3_env.uri("demo"))
    store.write_trials(_trials("old"))
    location = store.location.join("trials.parquet")
    new_object = b"x" * (6 * 2**20)  # above pyarrow's 5 MiB part size, so a multipart upload
    stream = location.filesystem.open_output_stream(location.path)
    stream.write(new_object)
    stream.flush()
    assert store.read_trials().column("trial_id").to_pylist() == ["old"]
    assert location.filesystem.get_file_info(location.path).size < 2**20
    stream.close()
    assert location.filesystem.get_file_info(location.path).size == len(new_object)


def test_s3_streams_commit_even_on_an_error_path(s3_env: S3Bucket) -> None:
    """pyarrow's S3 stream commits whatever it holds when closed, even on an error path; the store must not."""
    location = resolve_location(s3_env.uri("demo"))
    hazard = location.join("hazard.bin")
    with pytest.raises(RuntimeError):
        with location.filesystem.open_output_stream(hazard.path) as stream:
            stream.write(b"half")
            raise RuntimeError("writer failed midway")
    assert location.filesystem.get_file_info(hazard.path).size == 4  # the partial object was committed
    # so the store serialises first: StoreContract.test_a_failed_serialisation_never_replaces_the_file


def test_pickled_filesystem_reaches_the_endpoint_without_the_variable(s3_env: S3Bucket) -> None:
    """What a Ray worker on another node gets: the pickled filesystem, credentials but no endpoint variable."""
    store = ResultsStore(s3_env.uri("demo"))
    store.write_trials(_trials("a"))
    payload = pickle.dumps(store.location)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    script = textwrap.dedent(
        """
        import pickle, sys
        from tlsweep.results.store import ResultsStore
        location = pickle.loads(sys.stdin.buffer.read())
        print(ResultsStore(location).read_trials().column("trial_id").to_pylist())
        """
    )
    result = subprocess.run([sys.executable, "-c", script], input=payload, capture_output=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().strip() == "['a']"


@pytest.mark.ray
def test_ray_tune_keeps_its_experiment_state_in_the_bucket(ray_local: None, s3_env: S3Bucket) -> None:
    from ray import tune

    location = resolve_location(s3_env.uri("tlsweep", "demo"))
    storage = ray_storage_args(location)

    def trainable(config: dict[str, int]) -> None:
        import json
        import tempfile

        from ray import tune as inner_tune

        for step in range(2):
            with tempfile.TemporaryDirectory() as directory:
                Path(directory, "state.json").write_text(json.dumps({"step": step}))
                inner_tune.report(
                    {"score": config["x"] * step}, checkpoint=inner_tune.Checkpoint.from_directory(directory)
                )

    tuner = tune.Tuner(
        trainable,
        param_space={"x": tune.grid_search([1, 2])},
        tune_config=tune.TuneConfig(max_concurrent_trials=2),
        run_config=tune.RunConfig(name="exp", verbose=0, **storage),
    )
    results = tuner.fit()

    assert results.num_errors == 0 and len(results) == 2
    assert all(result.checkpoint is not None for result in results)
    assert all(result.checkpoint.path.startswith(f"{s3_env.name}/tlsweep/demo/ray/exp/") for result in results)
    experiment_path = f"{storage['storage_path']}/exp"
    assert tune.Tuner.can_restore(experiment_path, storage_filesystem=storage["storage_filesystem"])
    objects = _objects(s3_env, "tlsweep/demo/ray/exp")
    assert "tlsweep/demo/ray/exp/tuner.pkl" in objects
    assert any(Path(name).name.startswith("experiment_state-") for name in objects)
    assert sum(name.endswith("/state.json") for name in objects) >= 2  # checkpoints uploaded by the workers
