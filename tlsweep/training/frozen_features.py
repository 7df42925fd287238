"""Frozen layers computed once per node, not once per epoch per trial.

When a trial's first layers are frozen (``freeze_depth`` ≥ 1) their BatchNorm layers are in eval mode and they
hold no dropout, so their output is a deterministic function of the image. :func:`frozen_prefix` splits a model
into that *prefix* and the *remainder* that still trains; :func:`prepare` computes the prefix's activations for
every image of train, val and test (and the mirrored train images for ``augmentation: flip``) once and stores
them in a node-local :class:`FeatureCache`, keyed by (architecture, freeze depth, the prefix's weights, the split's
pixels, view, storage dtype, device kind). Every trial whose prefix matches — any seed, learning rate, epochs,
cell or arm — trains the remainder on the stored activations; a linear probe (``freeze_depth: 5``) trains only the
head, on feature vectors.

The trial is the same run as without the cache: the model is built exactly as before (same head initialization),
batches come from the same permutation (``tlsweep.data.batches.batch_rows``), flips from the same draws
(``tlsweep.data.augment.draw_flips``) and the optimizer holds the same parameters. Only the rounding differs:
float32 storage reproduces the uncached activations to ≤ 1e-5 (CPU); float16 storage rounds each value to 11
significant bits, a relative error ≤ 2⁻¹¹ ≈ 4.9e-4 of its magnitude. By default feature vectors (full-body
freezes) are stored as float16 and feature maps (partial freezes) as float32 (:func:`storage_dtype`).

Where the cache lives and why. A file per (key) under ``$TLSWEEP_FEATURE_CACHE_DIR`` (default
``<tempdir>/tlsweep-features``), written atomically and memory-mapped: every Ray worker process of a node reads the
same pages, a restarted worker finds them again, and a file lock per entry makes concurrent trials compute each entry
once; trials that start together split the entries between them (one skips an entry another is computing, computes
the next, and waits only at the end).
Ray's object store was the alternative, but an object lives only as long as the worker that put it, and trial
workers come and go. The cache's total size is bounded by ``$TLSWEEP_FEATURE_CACHE_GB`` (default: a quarter of the
machine's memory, at most 16 GiB); the least recently used entries are removed to make room, and an entry larger
than the bound is not stored: that trial falls back.

Fallbacks (logged once per process and reason, at INFO on ``tlsweep.training.frozen_features``): no frozen layer,
augmentation that changes pixels beyond a flip, an architecture whose prefix is not known (partial freezes of
anything but torchvision ResNet/VGG and ``resnet_tiny``, including depth 5 of a body with more levels; full-body
freezes of models with dropout in the body or whose head is not their last operation), ``feature_cache: false``,
or an entry over the cache's bound.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import hashlib
import logging
import math
import os
import stat
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
import torch
from torch import nn

from tlsweep.errors import SpecError
from tlsweep.training.config import CACHEABLE_AUGMENTATIONS, FEATURE_CACHE_DTYPES, BodyFacts, cache_dtype_name

if TYPE_CHECKING:
    from tlsweep.data.types import DatasetTensors, SplitTensors
    from tlsweep.training.config import TrialConfig

LOG = logging.getLogger(__name__)
CACHE_DIR_ENV = "TLSWEEP_FEATURE_CACHE_DIR"
CACHE_GB_ENV = "TLSWEEP_FEATURE_CACHE_GB"
CACHE_DTYPE_ENV = "TLSWEEP_FEATURE_CACHE_DTYPE"  # no longer read: the setting feature_cache_dtype (results change)
FLOAT16_MAX_STORED = 6.0e4  # larger activations are stored as float32 (float16 ends at 65504)
STALE_TEMPORARY_S = 60.0  # a temporary of a dead process untouched this long is removed
_LOGGED: set[str] = set()
_BAD_LOGGED: set[str] = set()  # entries found bad in this process (each logged once)


def warn_once(message: str) -> None:
    if message not in _LOGGED:
        _LOGGED.add(message)
        LOG.warning(message)


def log_once(reason: str) -> None:
    if reason not in _LOGGED:
        _LOGGED.add(reason)
        LOG.info("frozen-feature cache not used: %s", reason)


# ---------------------------------------------------------------------------------------------- the split


class _Sequence(nn.Module):
    """Modules applied in turn (references to the model's own modules, so training the remainder trains it)."""

    def __init__(self, steps: list[nn.Module]) -> None:
        super().__init__()
        self.steps = nn.ModuleList(steps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for step in self.steps:
            x = step(x)
        return x


class _Headless(nn.Module):
    """The whole model with its head (a submodule ``name``) bypassed: the body's pooled output."""

    def __init__(self, model: nn.Module, name: str) -> None:
        super().__init__()
        self.model = model
        self.name = name

    def named_parameters(
        self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True
    ) -> Iterator[tuple[str, nn.Parameter]]:
        """The body's parameters only (the head is not part of the prefix)."""
        head = {id(p) for p in self.model.get_submodule(self.name).parameters()}
        for name, parameter in self.model.named_parameters(prefix, recurse, remove_duplicate):
            if id(parameter) not in head:
                yield name, parameter

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The body's parameters and buffers (what the stored features depend on), without the head's."""
        head = self.name + "."
        return {k: v for k, v in self.model.state_dict().items() if not k.startswith(head)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parent_name, _, attr = self.name.rpartition(".")
        parent = self.model.get_submodule(parent_name) if parent_name else self.model
        head = getattr(parent, attr)
        setattr(parent, attr, nn.Identity())
        try:
            return self.model(x)
        finally:
            setattr(parent, attr, head)


def _stochastic(modules: Iterator[nn.Module]) -> list[str]:
    """Class names of modules that draw random numbers in training mode (dropout, drop-path)."""
    found = []
    for module in modules:
        if isinstance(module, nn.modules.dropout._DropoutNd) and module.p > 0:
            found.append(type(module).__name__)
        elif "droppath" in type(module).__name__.lower() and float(getattr(module, "drop_prob", 0.0) or 0.0) > 0:
            found.append(type(module).__name__)
    return found


def frozen_prefix(model: nn.Module, freeze_depth: int) -> tuple[nn.Module, nn.Module] | str:
    """``(prefix, remainder)`` with ``remainder(prefix(x)) == model(x)`` and every parameter of ``prefix`` frozen
    by ``freeze_depth``; or a string saying why the model has no such split.

    Known families: torchvision ResNet and ``resnet_tiny`` (depth k < 5: stem, then ``layer1``..``layer{k-1}``),
    torchvision VGG (depth k < 5: the first k conv blocks; 5: the body up to its first dropout, so fc7 and the
    dropouts still run per step exactly as before). Any other model, depth 5 only: the body's output before the
    head, provided the body holds no dropout and the head is the model's last operation.
    """
    from torchvision.models import VGG, ResNet

    from tlsweep.training.backbones import TinyResNet, head_module
    from tlsweep.training.config import MAX_FREEZE_DEPTH

    if freeze_depth <= 0:
        return "no frozen layer (freeze_depth 0)"
    if isinstance(model, ResNet | TinyResNet) and freeze_depth < MAX_FREEZE_DEPTH:
        stem: list[nn.Module] = [model.conv1, model.bn1, model.relu]
        if isinstance(model, ResNet):
            stem.append(model.maxpool)
        stages: list[nn.Module] = [model.layer1, model.layer2, model.layer3, model.layer4]
        tail: list[nn.Module] = [*stages[freeze_depth - 1 :], model.avgpool, nn.Flatten(1), model.fc]
        return _Sequence([*stem, *stages[: freeze_depth - 1]]), _Sequence(tail)
    if isinstance(model, VGG):
        features: nn.Sequential = model.features
        ends = [i + 1 for i, m in enumerate(features) if isinstance(m, nn.MaxPool2d)]
        if freeze_depth < MAX_FREEZE_DEPTH:
            end = ends[freeze_depth - 1]
            rest = [*features[end:], model.avgpool, nn.Flatten(1), model.classifier]
            return _Sequence(list(features[:end])), _Sequence(rest)
        classifier = list(model.classifier)
        dropouts = [i for i, m in enumerate(classifier) if isinstance(m, nn.modules.dropout._DropoutNd)]
        cut = dropouts[0] if dropouts else len(classifier) - 1
        prefix = _Sequence([features, model.avgpool, nn.Flatten(1), *classifier[:cut]])
        return prefix, _Sequence(classifier[cut:])
    if freeze_depth < MAX_FREEZE_DEPTH:
        return f"partial freezes of {type(model).__name__} have no known prefix (only full-body freezes do)"
    head = head_module(model)
    name = next((n for n, m in model.named_modules() if m is head), None)
    if name is None:
        return f"the head of {type(model).__name__} is not one of its submodules"
    head_ids = {id(m) for m in head.modules()}
    stochastic = _stochastic(m for m in model.modules() if id(m) not in head_ids)
    if stochastic or float(getattr(model, "drop_rate", 0.0) or 0.0) > 0:
        return (
            f"{type(model).__name__}'s body draws random numbers in training ({', '.join(stochastic) or 'drop_rate'})"
        )
    return _Headless(model, name), head


def body_facts(backbone: str) -> BodyFacts:
    """``backbone``'s freeze levels and whether :func:`frozen_prefix` splits it below its whole body (the torchvision
    ResNets and VGG, ``resnet_tiny``): what ``training.config.effective_settings`` needs to know of it."""
    from tlsweep.training.backbones import freeze_levels, get_backbone

    return BodyFacts(freeze_levels(backbone), get_backbone(backbone).family in ("resnet", "vgg"))


def _verify(model: nn.Module, prefix: nn.Module, remainder: nn.Module, image_shape: tuple[int, ...]) -> str | int:
    """The number of values the prefix makes of one image when remainder(prefix(x)) reproduces model(x) on random
    images (eval mode), else why not."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            generator = torch.Generator().manual_seed(0)
            device = next(model.parameters()).device
            x = torch.randn((2, *image_shape), generator=generator).to(device)
            expected = model(x)
            features = prefix(x)
            got = remainder(features)
    finally:
        model.train(was_training)
    if got.shape != expected.shape or not torch.allclose(got, expected, rtol=1e-4, atol=1e-5):
        return f"{type(model).__name__}: the split into frozen prefix and remainder does not reproduce the model"
    return int(features[0].numel())


# ---------------------------------------------------------------------------------------------- the cache


@dataclass(frozen=True)
class CacheSettings:
    """Where the cache lives and its bound in bytes."""

    directory: Path
    max_bytes: int


def _memory_quarter() -> int:
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        memory = 16 * 2**30
    return int(min(memory // 4, 16 * 2**30))


def _parse_gigabytes(text: str) -> int:
    fix = f"set {CACHE_GB_ENV} to the bound in GiB, a finite number >= 0 such as 4 or 0.5 (0 turns the cache off)"
    try:
        value = float(text)
    except ValueError:
        hint = f" (a decimal point, not a comma: {text.replace(',', '.')})" if "," in text else ""
        raise SpecError(f"environment variable {CACHE_GB_ENV}={text!r} is not a number{hint}: {fix}") from None
    if not math.isfinite(value) or value < 0 or value * 2**30 >= 2**63:
        raise SpecError(f"environment variable {CACHE_GB_ENV}={text!r} is out of range: {fix}")
    return int(value * 2**30)


def cache_settings(environ: Mapping[str, str] | None = None) -> CacheSettings:
    """The cache's settings from ``$TLSWEEP_FEATURE_CACHE_DIR`` and ``_GB`` (the one place that reads them), each
    checked; ``_DTYPE`` is refused: the storage dtype changes results, so it is the trial setting
    ``feature_cache_dtype`` (recorded with the results).

    Raises:
        SpecError: a bound that is not a finite number >= 0, or ``_DTYPE`` set, naming the variable and the fix.
    """
    environ = os.environ if environ is None else environ
    directory = Path(environ.get(CACHE_DIR_ENV) or Path(tempfile.gettempdir()) / "tlsweep-features")
    gigabytes = environ.get(CACHE_GB_ENV, "").strip()
    max_bytes = _parse_gigabytes(gigabytes) if gigabytes else _memory_quarter()
    dtype = environ.get(CACHE_DTYPE_ENV, "").strip()
    if dtype:
        raise SpecError(
            f"environment variable {CACHE_DTYPE_ENV}={dtype!r} is no longer read: the storage dtype changes results, "
            "so it is a setting recorded with them: unset the variable and give model.feature_cache_dtype in the "
            f"spec (or --feature-cache-dtype to tlsweep train): {', '.join(FEATURE_CACHE_DTYPES)}"
        )
    return CacheSettings(directory, max_bytes)


class EntryBusy(Exception):
    """Another process holds the entry's lock (it is computing it)."""


class CacheUnusable(Exception):
    """The cache directory cannot hold entries (not a directory, not writable, full, an odd lock): run uncached."""


def _why(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _open_regular(path: Path, flags: int) -> int:
    """A descriptor of ``path`` opened without blocking (a FIFO never hangs), provided it is a regular file."""
    fd = os.open(path, flags | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    return fd


class _DigestWriter:
    """A binary file that hashes what is written to it (``np.save`` writes through ``write`` in chunks)."""

    def __init__(self, handle: BinaryIO, digest: Any) -> None:
        self.handle, self.digest = handle, digest

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return self.handle.write(data)


def _digest(key: str) -> Any:
    """The digest an entry's bytes are checked with; keyed, so an entry moved under another key does not match."""
    return hashlib.sha256(f"tlsweep-features:{key}:".encode())


class FeatureCache:
    """Arrays stored once per key as ``.npy`` files in ``directory``, memory-mapped on read, at most ``max_bytes``
    in total (least recently used entries removed first).

    Each entry has a ``.sha256`` file beside it, the digest of its bytes, checked on its first use in a process;
    an entry whose digest, shape or dtype is wrong, or that cannot be read, is a miss: computed again and replaced
    atomically (logged once per entry). A directory that cannot hold entries raises :class:`CacheUnusable`.
    """

    def __init__(self, directory: Path | str | None = None, max_bytes: int | None = None) -> None:
        if directory is None or max_bytes is None:
            settings = cache_settings()
            directory = settings.directory if directory is None else directory
            max_bytes = settings.max_bytes if max_bytes is None else max_bytes
        self.directory = Path(directory)
        self.max_bytes = int(max_bytes)
        self.computed = 0  # entries this process computed (tests and benchmarks read it)
        self._checked: set[tuple[str, int, int, int]] = set()  # entries whose digest this process checked
        self._cleaned = False

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.npy"

    def digest_path(self, key: str) -> Path:
        return self.directory / f"{key}.sha256"

    def entries(self) -> list[Path]:
        try:
            return sorted(self.directory.glob("*.npy")) if self.directory.is_dir() else []
        except OSError:
            return []

    def size_bytes(self) -> int:
        total = 0
        for path in self.entries():
            with contextlib.suppress(OSError):
                total += path.stat().st_size
        return total

    @contextlib.contextmanager
    def _locked(self, key: str, wait: bool = True) -> Iterator[None]:
        lock = self.directory / f"{key}.lock"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CacheUnusable(f"{self.directory} is not a usable directory ({_why(exc)})") from None
        try:
            fd = _open_regular(lock, os.O_RDWR | os.O_CREAT)
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EROFS, errno.EPERM):
                raise CacheUnusable(f"cannot open the lock {lock} ({_why(exc)})") from None
            try:  # a read-only cache still serves the entries it holds
                fd = _open_regular(lock, os.O_RDONLY)
            except OSError:
                raise CacheUnusable(f"cannot open the lock {lock} ({_why(exc)})") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise EntryBusy(key) from None
            except OSError as exc:
                raise CacheUnusable(f"cannot lock {lock} ({_why(exc)})") from None
            self._clean_temporaries()
            yield
        finally:
            os.close(fd)  # releases the lock

    def get(
        self,
        key: str,
        nbytes: int,
        compute: Callable[[], np.ndarray],
        *,
        wait: bool = True,
        accept: Callable[[np.ndarray], str | None] | None = None,
    ) -> np.ndarray | None:
        """The stored array for ``key``, computing and storing it first if absent or bad; None when ``nbytes``
        (its size) exceeds the bound. ``accept`` says what is wrong with a stored array (None: nothing). With
        ``wait=False``, raise :class:`EntryBusy` instead of waiting while another process computes it.

        Raises:
            CacheUnusable: the directory cannot be used (the caller runs without the cache).
        """
        if nbytes > self.max_bytes:
            return None
        with self._locked(key, wait):
            stored = self._read(key, accept)
            if stored is not None:
                return stored
            array = compute()
            try:
                self._write(key, array)
            except CacheUnusable:
                with contextlib.suppress(OSError):  # a waiter holding it computes the entry again: harmless
                    (self.directory / f"{key}.lock").unlink()
                raise
            self.computed += 1
            stored = self._read(key, accept)
            if stored is None:
                raise CacheUnusable(f"{self.path(key)} does not read back as written")
            return stored

    def _read(self, key: str, accept: Callable[[np.ndarray], str | None] | None) -> np.ndarray | None:
        """The entry if present and good; None if absent, or bad (then logged once and removed)."""
        path = self.path(key)
        try:
            info = os.stat(path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._discard(key, _why(exc))
            return None
        if not stat.S_ISREG(info.st_mode):
            self._discard(key, "not a regular file")
            return None
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError:  # evicted by another process just now
            return None
        except Exception as exc:  # noqa: BLE001 - any unreadable file is a miss
            self._discard(key, f"unreadable ({type(exc).__name__}: {str(exc)[:200]})")
            return None
        reason = "an object array" if array.dtype.hasobject else accept(array) if accept else None
        if reason:
            self._discard(key, reason)
            return None
        checked = (key, info.st_dev, info.st_ino, info.st_size)
        if checked not in self._checked:
            reason = self._check_digest(key)
            if reason:
                self._discard(key, reason)
                return None
            self._checked.add(checked)
        with contextlib.suppress(OSError):
            os.utime(path)  # recently used (a read-only cache keeps its order)
        return array

    def _check_digest(self, key: str) -> str | None:
        try:
            fd = _open_regular(self.digest_path(key), os.O_RDONLY)
            with os.fdopen(fd, "rb") as handle:
                expected = handle.read(128).decode("ascii", "replace").strip()
        except OSError as exc:
            return f"no readable digest ({_why(exc)})"
        digest = _digest(key)
        try:
            with os.fdopen(_open_regular(self.path(key), os.O_RDONLY), "rb") as handle:
                while chunk := handle.read(2**22):
                    digest.update(chunk)
        except OSError as exc:
            return f"unreadable ({_why(exc)})"
        return None if digest.hexdigest() == expected else "its bytes do not match its digest"

    def _discard(self, key: str, reason: str) -> None:
        """Remove a bad entry (it is computed again) and log once that it was bad."""
        for path in (self.path(key), self.digest_path(key)):
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise CacheUnusable(f"the bad entry {path} cannot be removed ({_why(exc)})") from None
        if key not in _BAD_LOGGED:
            _BAD_LOGGED.add(key)
            LOG.warning("frozen-feature cache: entry %s is bad (%s); computing it again", self.path(key), reason)

    def _write(self, key: str, array: np.ndarray) -> None:
        path, digest_path = self.path(key), self.digest_path(key)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        digest_tmp = digest_path.with_name(f".{digest_path.name}.{os.getpid()}.tmp")
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
        try:
            self._make_room(array.nbytes, keep=path)
            digest = _digest(key)
            with os.fdopen(_open_regular(tmp, flags), "wb") as handle:
                np.save(_DigestWriter(handle, digest), array, allow_pickle=False)
            with os.fdopen(_open_regular(digest_tmp, flags), "wb") as handle:
                handle.write(digest.hexdigest().encode() + b"\n")
            os.replace(tmp, path)
            os.replace(digest_tmp, digest_path)
        except OSError as exc:
            raise CacheUnusable(f"cannot write {path} ({_why(exc)})") from None
        finally:
            for leftover in (tmp, digest_tmp):
                with contextlib.suppress(OSError):
                    leftover.unlink()

    def _clean_temporaries(self) -> None:
        """Remove temporaries that processes killed while writing left behind (once per process)."""
        if self._cleaned:
            return
        self._cleaned = True
        now = time.time()
        for leftover in self.directory.glob(".*.tmp"):
            with contextlib.suppress(OSError, ValueError):
                pid = int(leftover.name.rsplit(".", 2)[-2])
                if pid != os.getpid() and not _alive(pid) and now - leftover.lstat().st_mtime > STALE_TEMPORARY_S:
                    leftover.unlink()

    def _make_room(self, nbytes: int, keep: Path) -> None:
        stats = []
        for entry in self.entries():
            with contextlib.suppress(OSError):
                stats.append((entry.stat().st_mtime, entry.stat().st_size, entry))
        total = sum(size for _, size, _ in stats)
        for _, size, entry in sorted(stats):
            if total + nbytes <= self.max_bytes:
                break
            if entry != keep:
                with contextlib.suppress(OSError):
                    entry.unlink()  # a process that mapped it keeps reading it (POSIX)
                with contextlib.suppress(OSError):
                    entry.with_suffix(".sha256").unlink()
                total -= size


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


# ---------------------------------------------------------------------------------------------- trial side


@dataclass
class FrozenFeatures:
    """A trial's stored activations: ``train`` (and ``train_flipped`` for flip), ``val``, ``test`` as tensors on
    the trial's device (rows = the split's images), and the module that maps them to logits."""

    remainder: nn.Module
    train: torch.Tensor
    train_flipped: torch.Tensor | None
    val: torch.Tensor
    test: torch.Tensor
    keys: dict[str, str]


_FINGERPRINTS: dict[tuple[int, tuple[int, ...], str], str] = {}


def split_fingerprint(split: SplitTensors) -> str:
    """sha256 of a split's pixels and labels (memoized per process for the same tensor)."""
    images = split.images
    memo = (images.data_ptr(), tuple(images.shape), str(images.device))
    if memo not in _FINGERPRINTS:
        digest = hashlib.sha256(f"{tuple(images.shape)}:{images.dtype}".encode())
        digest.update(np.ascontiguousarray(images.cpu().numpy()).data)
        digest.update(np.ascontiguousarray(split.labels.cpu().numpy()).data)
        _FINGERPRINTS[memo] = digest.hexdigest()
    return _FINGERPRINTS[memo]


def weights_fingerprint(prefix: nn.Module) -> str:
    """sha256 of the prefix's parameters and buffers (names, shapes, values)."""
    digest = hashlib.sha256()
    for name, value in prefix.state_dict().items():
        tensor = value.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().data if tensor.numel() else b"")
    return digest.hexdigest()


def storage_dtype(freeze_depth: int, name: str = "auto") -> np.dtype[np.floating]:
    """The setting ``feature_cache_dtype``: ``float16``, ``float32`` or ``auto`` (the default): float16 for a full-body
    freeze (feature vectors; a head trained on them ends where it ends with float32 ones), float32 for a partial one
    (layers that still train on float16-rounded inputs drift from an uncached run)."""
    return np.dtype(cache_dtype_name(freeze_depth, name))


def compute_features(
    prefix: nn.Module,
    split: SplitTensors,
    *,
    flipped: bool,
    batch_size: int,
    device: torch.device,
    amp: bool,
    dtype: np.dtype[np.floating],
) -> np.ndarray:
    """The prefix's activations for every image of ``split`` (mirrored first if ``flipped``), as ``dtype``; the
    images are normalized exactly as ``TensorAugment`` does."""
    from tlsweep.data.augment import normalize
    from tlsweep.data.batches import iterate_batches

    parts = []
    prefix.eval()
    with torch.inference_mode():
        indices = np.arange(len(split))
        for images, _ in iterate_batches(split, indices, batch_size, shuffle=False, generator=None, device=device):
            x = normalize(images.flip(-1) if flipped else images)
            if amp:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                parts.append(prefix(x).float().cpu().numpy())
    array = np.concatenate(parts) if parts else np.zeros((0,), dtype=np.float32)
    if dtype == np.float16 and np.abs(array).max(initial=0.0) > FLOAT16_MAX_STORED:
        return array  # float16 would overflow: keep float32
    return array.astype(dtype, copy=False)


def _wrong_shape(array: np.ndarray, *, rows: int, per_image: int, dtype: np.dtype[np.floating]) -> str | None:
    """What is wrong with a stored array for a split of ``rows`` images, ``per_image`` values each (None: nothing)."""
    if array.dtype not in (dtype, np.dtype(np.float32)):  # float32: float16 would have overflowed
        return f"dtype {array.dtype}, expected {dtype}"
    if rows == 0 and array.shape[:1] == (0,):
        return None
    if array.ndim < 2 or array.shape[0] != rows or math.prod(array.shape[1:]) != per_image:
        return f"shape {array.shape}, expected {rows} rows of {per_image} values"
    return None


_CACHE: FeatureCache | None = None
_VERIFIED: dict[tuple[str, str, tuple[int, ...]], str | int] = {}  # (key base, head, image shape) -> _verify's answer


def default_cache() -> FeatureCache:
    global _CACHE
    if _CACHE is None:
        _CACHE = FeatureCache()
    return _CACHE


def prepare(
    config: TrialConfig,
    model: nn.Module,
    data: DatasetTensors,
    device: torch.device,
    amp: bool,
    *,
    cache: FeatureCache | None = None,
) -> FrozenFeatures | None:
    """The trial's stored activations (computed and stored first where absent), or None — with the reason logged
    once — when the trial runs the uncached path."""
    if not config.feature_cache:
        log_once("feature_cache is off")
        return None
    if config.augmentation not in CACHEABLE_AUGMENTATIONS:
        log_once(f"augmentation {config.augmentation!r} changes pixels (only none and flip can use stored features)")
        return None
    split = frozen_prefix(model, config.freeze_depth)
    if isinstance(split, str):
        log_once(split)
        return None
    prefix, remainder = split
    if any(parameter.requires_grad for parameter in prefix.parameters()):  # depth 5 of a body with more levels
        log_once(f"freeze_depth {config.freeze_depth} leaves layers of {config.backbone}'s body training")
        return None
    dtype = storage_dtype(config.freeze_depth, config.feature_cache_dtype)
    base = "|".join(
        [
            type(model).__qualname__,
            config.backbone,
            f"depth{config.freeze_depth}",
            weights_fingerprint(prefix),
            f"{dtype.name}",
            f"{device.type}{'-amp' if amp else ''}",
        ]
    )
    image_shape = tuple(data.train.images.shape[1:])
    verified = (base, config.head, image_shape)  # the same split of the same weights: checked once per process
    if verified not in _VERIFIED:
        _VERIFIED[verified] = _verify(model, prefix, remainder, image_shape)
    per_image = _VERIFIED[verified]
    if isinstance(per_image, str):
        log_once(per_image)
        return None
    cache = cache or default_cache()
    views = [("train", False), ("val", False), ("test", False)]
    if config.augmentation == "flip":
        views.append(("train", True))
    arrays: dict[str, torch.Tensor] = {}
    keys: dict[str, str] = {}
    # Trials that start together share the work: a view another process is computing is skipped on the first pass
    # (this one computes the others meanwhile) and waited for on the second.
    pending, wait = views, False
    while pending:
        busy = []
        for split_name, flipped in pending:
            part: SplitTensors = getattr(data, split_name)
            view = f"{split_name}{'_flipped' if flipped else ''}"
            key = hashlib.sha256(f"{base}|{split_fingerprint(part)}|{view}".encode()).hexdigest()[:32]
            started = time.perf_counter()
            nbytes = per_image * len(part) * dtype.itemsize
            try:
                array = cache.get(
                    key,
                    nbytes,
                    lambda part=part, flipped=flipped: compute_features(  # type: ignore[misc]
                        prefix,
                        part,
                        flipped=flipped,
                        batch_size=config.eval_batch_size,
                        device=device,
                        amp=amp,
                        dtype=dtype,
                    ),
                    wait=wait,
                    accept=functools.partial(_wrong_shape, rows=len(part), per_image=per_image, dtype=dtype),
                )
            except EntryBusy:
                busy.append((split_name, flipped))
                continue
            except CacheUnusable as exc:
                warn_once(
                    f"frozen-feature cache not used: {exc}; trials run their frozen layers every step "
                    f"(set {CACHE_DIR_ENV} to a writable local directory with free space)"
                )
                return None
            if array is None:
                log_once(
                    f"the {view} features ({nbytes / 2**20:.0f} MiB) exceed the cache's bound "
                    f"({cache.max_bytes / 2**20:.0f} MiB; set {CACHE_GB_ENV})"
                )
                return None
            LOG.debug("features %s ready in %.2fs", view, time.perf_counter() - started)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # a read-only memory map: trials never write to it
                arrays[view], keys[view] = torch.from_numpy(array).to(device), key
        pending, wait = busy, True
    return FrozenFeatures(
        remainder=remainder,
        train=arrays["train"],
        train_flipped=arrays.get("train_flipped"),
        val=arrays["val"],
        test=arrays["test"],
        keys=keys,
    )
