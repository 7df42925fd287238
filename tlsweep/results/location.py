"""Where a sweep's results live: a URI turned into a pyarrow filesystem and a path inside it.

Accepted forms: a local path (relative paths become absolute; a shared NFS/EFS/Filestore mount is a local path),
``file:///abs/path``, ``s3://bucket/prefix`` and ``gs://bucket/prefix`` (``gcs://`` is read as ``gs://``).

For ``s3://``, the endpoint of an S3-compatible server (MinIO, Ceph, moto, ...) comes from the standard
``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` variable. pyarrow 26 honours these by itself, but only in the
process that reads them: a filesystem it builds that way, once pickled to a Ray worker on another node, talks to
AWS. So tlsweep builds the filesystem with an explicit ``endpoint_override``, which travels with the pickle.
Credentials are never put into the filesystem object: every process (driver and Ray workers) takes them from
the usual AWS chain (environment, ``~/.aws``, instance profile). Query parameters that pyarrow understands
(``s3://bucket/prefix?region=eu-west-1``) are passed through to pyarrow.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pyarrow.fs as pafs

from tlsweep.errors import StoreError

ACCEPTED_FORMS = "a local path, file:///abs/path, s3://bucket/prefix or gs://bucket/prefix"
_SCHEME_ALIASES = {"s3": "s3", "gs": "gs", "gcs": "gs"}
RAY_SUBDIR = "ray"


@dataclass(frozen=True)
class Location:
    """A directory of results: ``uri`` as shown to users, ``filesystem`` + ``path`` for pyarrow.

    ``uri`` is normalised: an absolute local path, or ``s3://bucket/prefix`` / ``gs://bucket/prefix`` (with the
    query string, if one was given). ``path`` never has a scheme: ``/abs/path`` or ``bucket/prefix``.
    """

    uri: str
    filesystem: pafs.FileSystem
    path: str

    @property
    def is_local(self) -> bool:
        return isinstance(self.filesystem, pafs.LocalFileSystem)

    def join(self, *parts: str) -> Location:
        """The location of ``parts`` below this one (``loc.join("report", "figures")``)."""
        clean = [_check_part(part, self.uri) for part in parts]
        if not clean:
            return self
        path = posixpath.join(self.path, *clean)
        if self.is_local:
            return Location(uri=path, filesystem=self.filesystem, path=path)
        base, sep, query = self.uri.partition("?")
        return Location(uri=posixpath.join(base, *clean) + sep + query, filesystem=self.filesystem, path=path)

    def __str__(self) -> str:
        return self.uri


def _check_part(part: str, uri: str) -> str:
    stripped = part.strip("/")
    if not stripped or any(piece in ("", ".", "..") for piece in stripped.split("/")):
        raise StoreError(f"cannot join {part!r} to {uri}: use a relative name without '.', '..' or empty parts")
    return stripped


def resolve_location(uri: str | Path) -> Location:
    """Turn a user-given results URI or path into a :class:`Location`.

    Raises:
        StoreError: the scheme is not one of :data:`ACCEPTED_FORMS`, the bucket is missing, or pyarrow cannot
            build the filesystem (for example it cannot find the bucket's region).
    """
    if isinstance(uri, Path):
        return _local(uri)
    text = str(uri).strip()
    if not text:
        raise StoreError(f"empty results location: give {ACCEPTED_FORMS}")
    if "://" not in text:
        return _local(Path(text))
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise StoreError(
                f"{text}: a file:// URI must be file:///absolute/path (no host); accepted: {ACCEPTED_FORMS}"
            )
        return _local(Path(unquote(parts.path)))
    if scheme not in _SCHEME_ALIASES:
        raise StoreError(f"unsupported results location {text!r} (scheme {scheme!r}); accepted: {ACCEPTED_FORMS}")
    scheme = _SCHEME_ALIASES[scheme]
    bucket = parts.netloc
    if not bucket:
        raise StoreError(f"{text}: no bucket name; write it as {scheme}://bucket/prefix")
    key = parts.path.strip("/")
    path = f"{bucket}/{key}" if key else bucket
    normalised = f"{scheme}://{path}" + (f"?{parts.query}" if parts.query else "")
    try:
        if scheme == "s3":
            filesystem = _s3_filesystem(bucket, parts.query)
        else:
            filesystem, _ = pafs.FileSystem.from_uri(f"gs://{path}" + (f"?{parts.query}" if parts.query else ""))
    except (OSError, ValueError) as exc:
        hint = (
            "check the bucket name, the network and the credentials; for an S3-compatible server set "
            "AWS_ENDPOINT_URL=http(s)://host:port"
            if scheme == "s3"
            else "check the bucket name, the network and the credentials (gcloud auth application-default login)"
        )
        raise StoreError(f"cannot open results location {normalised}: {exc} ({hint})") from exc
    return Location(uri=normalised, filesystem=filesystem, path=path)


def _local(path: Path) -> Location:
    absolute = path.expanduser().resolve()
    text = absolute.as_posix()
    return Location(uri=text, filesystem=pafs.LocalFileSystem(), path=text)


def s3_endpoint_from_env() -> str | None:
    """The S3 endpoint URL from ``AWS_ENDPOINT_URL_S3`` (preferred) or ``AWS_ENDPOINT_URL``, if set."""
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def _s3_filesystem(bucket: str, query: str) -> pafs.FileSystem:
    endpoint = s3_endpoint_from_env()
    if query or endpoint is None:
        # pyarrow reads the query (region=..., endpoint_override=...) and resolves the bucket's region itself.
        filesystem, _ = pafs.FileSystem.from_uri(f"s3://{bucket}" + (f"?{query}" if query else ""))
        return filesystem
    parsed = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise StoreError(f"S3 endpoint {endpoint!r} (from AWS_ENDPOINT_URL[_S3]) must look like http(s)://host:port")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return pafs.S3FileSystem(endpoint_override=parsed.netloc, scheme=parsed.scheme, region=region)


def ray_storage_args(location: Location) -> dict[str, object]:
    """Keyword arguments for ``tune.RunConfig`` that keep Ray Tune's experiment state under ``<location>/ray``.

    Local: ``storage_path`` is the absolute path and ``storage_filesystem`` is None. Remote: ``storage_path`` is
    the path without a scheme (``bucket/prefix/ray``) and ``storage_filesystem`` the location's filesystem, so
    Ray uses the same endpoint and region as the store.
    """
    ray_location = location.join(RAY_SUBDIR)
    if location.is_local:
        return {"storage_path": ray_location.path, "storage_filesystem": None}
    return {"storage_path": ray_location.path, "storage_filesystem": location.filesystem}
