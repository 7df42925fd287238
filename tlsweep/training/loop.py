"""One training run, plain PyTorch (no Ray): ``run_trial(config, data, *, report) -> TrialResult``.

Seeding. The replicate seed ``config.seed`` alone decides the training subset (``nested_subset``), and, through
independent streams derived from it with ``numpy.random.SeedSequence``, the data order, the augmentation, the
random initialization (head; body too for scratch) and the global torch RNG (dropout). The streams do not depend on
the init, the freeze depth or the learning rate, so two arms run with the same seed see the same subset, the same
batches and the same augmentation: their comparison is paired. On CPU a run is reproducible bit for bit.

Divergence. A non-finite training (or validation) loss stops the run at once; the result has ``status="diverged"``
and chance-level metrics: every accuracy (val, test, balanced) equals ``1/num_classes``, every loss and the ordinal
errors are NaN, ``best_epoch`` is 0 and ``best_state`` is None. It is an outcome, not an exception.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tlsweep.errors import DataError, SpecError, StoreError
from tlsweep.training.config import STATE_FORMAT

if TYPE_CHECKING:
    import torch
    from torch import nn

    from tlsweep.data.types import DatasetTensors
    from tlsweep.training import frozen_features
    from tlsweep.training.config import TrialConfig

Report = Callable[[dict[str, float], Callable[[], dict[str, Any]]], None]
# Settings that may differ between a run and its resumption (they do not change what is computed on CPU).
RUNTIME_SETTINGS = frozenset({"device", "num_threads", "eval_batch_size", "amp", "feature_cache"})


@dataclass
class TrialResult:
    """The outcome of one run; ``to_dict()`` is JSON-ready (it leaves out ``best_state``)."""

    status: str  # "ok" | "diverged"
    best_val_acc: float
    best_val_loss: float
    best_epoch: int  # 1-based; 0 when diverged
    final_val_acc: float
    test_acc: float
    test_balanced_acc: float
    test_loss: float
    test_mae: float | None  # None unless the labels are ordinal
    test_off_by_one: float | None
    chance: float
    num_classes: int
    n_train: int
    n_val: int
    n_test: int
    subset_hash: str
    epochs_run: int
    optimizer_steps: int
    wall_time_s: float
    history: list[dict[str, float]]
    best_state: dict[str, Any] | None = field(default=None, repr=False)  # model state dict of the best val epoch

    def to_dict(self) -> dict[str, Any]:
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self) if f.name != "best_state"}


@dataclass(frozen=True)
class Streams:
    """Seeds of the independent random streams of one replicate."""

    order: int
    augment: int
    model: int
    global_torch: int


def derive_streams(seed: int) -> Streams:
    children = np.random.SeedSequence([int(seed) & (2**63 - 1), 0x74726961]).spawn(4)
    values = [int(child.generate_state(1, np.uint64)[0] >> 1) for child in children]
    return Streams(*values)


def resolve_device(name: str, *, what: str = "device") -> torch.device:
    """The torch device ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N`` names.

    Raises:
        SpecError: ``name`` is none of these.
        DataError: ``name`` is a CUDA device this machine does not have.
    """
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise SpecError(f"{what} {name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise SpecError(f"{what} {name!r}: tlsweep runs on cpu or cuda; use auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DataError(f"{what} {name!r} requested but CUDA is not available; use device 'cpu' or 'auto'")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise DataError(
            f"{what} {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s), "
            f"cuda:0..cuda:{torch.cuda.device_count() - 1}"
        )
    return device


def use_amp(config: TrialConfig, device: torch.device) -> bool:
    """bf16 autocast + channels_last: only on a CUDA device that supports bf16, and only if ``config.amp``."""
    import torch

    return bool(config.amp and device.type == "cuda" and torch.cuda.is_bf16_supported())


@contextlib.contextmanager
def torch_settings(config: TrialConfig) -> Iterator[None]:
    """The run's CPU thread count and cuDNN autotuning; the previous settings are restored after.

    ``torch.use_deterministic_algorithms`` is not set: the CPU kernels a trial uses are deterministic already
    (tested), and setting it imports torch._inductor (seconds per process).
    """
    import torch

    threads = torch.get_num_threads()
    benchmark = torch.backends.cudnn.benchmark
    try:
        if config.num_threads > 0:
            torch.set_num_threads(config.num_threads)
        torch.backends.cudnn.benchmark = True  # fixed batch shapes: cuDNN picks the fastest kernels once (CUDA only)
        yield
    finally:
        torch.set_num_threads(threads)
        torch.backends.cudnn.benchmark = benchmark


def check_config(config: TrialConfig) -> None:
    """Raise UnknownNameError for an unregistered backbone, else SpecError naming the first invalid setting.

    Runs before any data is touched. The rules are ``tlsweep.training.config``'s (``check_trial_config``); only
    the backbone registry and the backbone's freeze levels (``freeze_depth`` in 0..``freeze_levels``) need torch.
    """
    from tlsweep.training.backbones import check_freeze_depth, get_backbone
    from tlsweep.training.config import check_trial_config

    get_backbone(config.backbone)
    check_trial_config(config)
    check_freeze_depth(config.freeze_depth, config.backbone)


def _cpu_copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone().cpu() for key, value in state.items()}


@dataclass
class _Progress:
    """What changes from epoch to epoch; saved and restored with the training state."""

    epoch: int = 0
    step: int = 0
    elapsed_s: float = 0.0
    best_val_acc: float = -math.inf
    best_val_loss: float = math.inf
    best_epoch: int = 0
    best_state: dict[str, Any] | None = None
    history: list[dict[str, float]] = field(default_factory=list)

    def improves(self, val_acc: float, val_loss: float) -> bool:
        return val_acc > self.best_val_acc or (val_acc == self.best_val_acc and val_loss < self.best_val_loss)


def run_trial(
    config: TrialConfig,
    data: DatasetTensors,
    *,
    report: Report | None = None,
    resume_state: dict[str, Any] | None = None,
) -> TrialResult:
    """Train ``config.backbone`` on ``data`` for ``config.epochs`` epochs and test the best-validation weights.

    Plain PyTorch, no Ray: the seed fixes the training subset, data order, augmentation and initialization, so a
    run is reproducible on CPU.

    Args:
        config: every setting of the run (``TrialConfig``).
        data: the dataset's decoded splits (``load_dataset``).
        report: called after each epoch as ``report(epoch_metrics, get_state)``; ``get_state()`` (call it during
            ``report``) returns a ``torch.save``-able dict that ``resume_state`` continues from exactly.
        resume_state: a dict from ``get_state()`` to continue an interrupted run.

    Returns:
        ``TrialResult``: status (``ok`` or ``diverged``: a non-finite loss is an outcome, with chance-level
        metrics), best and final validation metrics, test metrics of the best-validation weights, the per-epoch
        history, subset hash, sizes, optimizer steps and wall time.

    Raises:
        SpecError: for a setting that cannot run (unknown backbone, a freeze depth beyond the backbone's levels).
    """
    check_config(config)
    device = resolve_device(config.device)
    with torch_settings(config):
        return _run(config, data, device, report, resume_state)


def _run(
    config: TrialConfig,
    data: DatasetTensors,
    device: torch.device,
    report: Report | None,
    resume_state: dict[str, Any] | None,
) -> TrialResult:
    """The trial body as named steps: the subset, the training set-up, a resume, the epochs, the test."""
    run = _TrialRun.start(config, data, device)
    if resume_state is not None:
        run.resume(resume_state)
    run.prepare_frozen_features()
    diverged = run.train_epochs(report)
    return run.result(diverged)


@dataclass
class _Subsets:
    """The rows of one replicate: its nested training subset (and that subset's hash), all of val and test."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    hashed: str

    @classmethod
    def of(cls, config: TrialConfig, data: DatasetTensors) -> _Subsets:
        from tlsweep.data.subsets import nested_subset, subset_hash

        train = nested_subset(data.train.labels, config.train_fraction, config.seed)
        val, test = np.arange(len(data.val)), np.arange(len(data.test))
        if len(train) < 2 or len(val) == 0:
            raise DataError(
                f"dataset {data.name!r}: a run needs at least 2 training images (got {len(train)} with "
                f"train_fraction={config.train_fraction}) and 1 validation image (got {len(val)})"
            )
        return cls(train, val, test, subset_hash(train))


@dataclass
class _TrialRun:
    """One run's moving parts: the data (staged on the device), the model and its optimizer, schedule, loss and
    augmentation, the seeded generators, the progress; ``frozen`` holds the frozen layers' features once computed."""

    config: TrialConfig
    host_data: DatasetTensors
    data: DatasetTensors
    device: torch.device
    subsets: _Subsets
    model: nn.Module
    amp: bool
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    criterion: nn.Module
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor]
    order_generator: torch.Generator
    augment_generator: torch.Generator
    started: float
    progress: _Progress = field(default_factory=lambda: _Progress())
    frozen: frozen_features.FrozenFeatures | None = None

    @property
    def drop_last(self) -> bool:
        return len(self.subsets.train) % self.config.batch_size == 1  # a batch of one breaks BatchNorm

    @classmethod
    def start(cls, config: TrialConfig, data: DatasetTensors, device: torch.device) -> _TrialRun:
        """The subset and the random streams, then the model (init, freeze, new head), its optimizer and per-step
        learning-rate schedule."""
        import torch
        from torch import nn

        from tlsweep.data.augment import TensorAugment
        from tlsweep.data.batches import num_batches
        from tlsweep.training.backbones import create_model
        from tlsweep.training.device import stage_dataset
        from tlsweep.training.optim import build_optimizer, build_scheduler, schedule_for

        started = time.perf_counter()
        subsets = _Subsets.of(config, data)
        staged = stage_dataset(data, device)  # CUDA: uint8 splits on the device once per worker process
        streams = derive_streams(config.seed)
        torch.manual_seed(streams.global_torch)
        model = create_model(
            config.backbone,
            staged.num_classes,
            init=config.init,
            freeze_depth=config.freeze_depth,
            seed=streams.model,
            head=config.head,
        ).to(device)
        amp = use_amp(config, device)
        if amp:
            model = model.to(memory_format=torch.channels_last)
        drop_last = len(subsets.train) % config.batch_size == 1
        optimizer = build_optimizer(config, model)
        steps_per_epoch = num_batches(len(subsets.train), config.batch_size, drop_last)
        return cls(
            config,
            data,
            staged,
            device,
            subsets,
            model,
            amp,
            optimizer,
            scheduler=build_scheduler(optimizer, schedule_for(config, steps_per_epoch)),
            criterion=nn.CrossEntropyLoss(label_smoothing=config.label_smoothing),
            augment=TensorAugment(config.augmentation),
            order_generator=torch.Generator().manual_seed(streams.order),
            augment_generator=torch.Generator().manual_seed(streams.augment),
            started=started,
        )

    def state(self) -> dict[str, Any]:
        """The training state a ``resume`` continues from exactly (``torch.save``-able)."""
        import torch

        progress = self.progress
        return {
            "format": STATE_FORMAT,
            "config": self.config.to_dict(),
            "subset_hash": self.subsets.hashed,
            "progress": {
                "epoch": progress.epoch,
                "step": progress.step,
                "elapsed_s": progress.elapsed_s + (time.perf_counter() - self.started),
                "best_val_acc": progress.best_val_acc,
                "best_val_loss": progress.best_val_loss,
                "best_epoch": progress.best_epoch,
                "best_state": progress.best_state,  # already a private CPU copy, never mutated
                "history": copy.deepcopy(progress.history),
            },
            "model": _cpu_copy(self.model.state_dict()),
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "scheduler": copy.deepcopy(self.scheduler.state_dict()),
            "rng": {
                "order": self.order_generator.get_state(),
                "augment": self.augment_generator.get_state(),
                "torch": torch.get_rng_state(),
                "cuda": list(torch.cuda.get_rng_state_all()) if self.device.type == "cuda" else [],
            },
        }

    def resume(self, state: dict[str, Any]) -> None:
        """Continue from a saved ``state`` of the same run (same settings and subset, else StoreError)."""
        import torch

        _check_resumable(state, self.config, self.subsets.hashed)
        saved = state["progress"]
        self.progress = _Progress(**{**saved, "history": copy.deepcopy(saved["history"])})
        self.started -= saved["elapsed_s"]
        self.progress.elapsed_s = 0.0
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.order_generator.set_state(state["rng"]["order"])
        self.augment_generator.set_state(state["rng"]["augment"])
        torch.set_rng_state(state["rng"]["torch"])
        if self.device.type == "cuda" and state["rng"]["cuda"]:
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])

    def prepare_frozen_features(self) -> None:
        """Frozen layers computed once per node and reused (None: this trial runs them every step, the reason
        logged)."""
        from tlsweep.training import frozen_features

        self.frozen = frozen_features.prepare(self.config, self.model, self.host_data, self.device, self.amp)

    def evaluate(self, split_name: str, indices: np.ndarray) -> dict[str, float | None]:
        from tlsweep.training.evaluate import classification_metrics, predict_probabilities, probabilities_of

        config, device, amp, frozen = self.config, self.device, self.amp, self.frozen
        if frozen is not None:
            self.model.eval()
            stored, labels_of = getattr(frozen, split_name), getattr(self.data, split_name).labels
            probabilities, labels, loss = probabilities_of(
                frozen.remainder,
                _stored_batches(stored, labels_of, indices, config.eval_batch_size, device, amp),
                use_amp=amp,
                device=device,
            )
        else:
            probabilities, labels, loss = predict_probabilities(
                self.model,
                getattr(self.data, split_name),
                indices,
                batch_size=config.eval_batch_size,
                device=device,
                use_amp=amp,
                channels_last=amp,
            )
        return classification_metrics(probabilities, labels, ordinal=self.data.ordinal, loss=loss)

    def train_epochs(self, report: Report | None) -> bool:
        """Train and validate the remaining epochs, reporting each; True when a loss stopped being finite."""
        for epoch in range(self.progress.epoch + 1, self.config.epochs + 1):
            epoch_started = time.perf_counter()
            train = self._train_one_epoch()
            self.progress.step += int(train["steps"])
            if not math.isfinite(train["loss"]):
                return True
            val = self.evaluate("val", self.subsets.val)
            val_loss, val_acc = float(val["loss"]), float(val["acc"])  # type: ignore[arg-type]
            if not math.isfinite(val_loss):
                return True
            row = {
                "epoch": epoch,
                "step": self.progress.step,
                "train_loss": train["loss"],
                "train_acc": train["acc"],
                "val_loss": val_loss,
                "val_acc": val_acc,
                "lr": train["lr"],
                "epoch_time_s": time.perf_counter() - epoch_started,
            }
            self.progress.epoch = epoch
            self.progress.history.append(row)
            if self.progress.improves(val_acc, val_loss):
                self.progress.best_val_acc, self.progress.best_val_loss, self.progress.best_epoch = (
                    val_acc,
                    val_loss,
                    epoch,
                )
                self.progress.best_state = _cpu_copy(self.model.state_dict())
            if report is not None:
                report(dict(row), self.state)
        return False

    def _train_one_epoch(self) -> dict[str, float]:

        config, data, device, amp, frozen = self.config, self.data, self.device, self.amp, self.frozen
        generators = (self.order_generator, self.augment_generator)
        forward: nn.Module
        if frozen is not None:
            forward = frozen.remainder
            batches = _feature_batches(
                frozen, data, self.subsets.train, config, device, amp, self.drop_last, *generators
            )
        else:
            forward = self.model
            batches = _image_batches(
                data, self.subsets.train, config, device, amp, self.drop_last, self.augment, *generators
            )
        return _train_epoch(
            self.model,
            forward,
            batches,
            device,
            amp,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            criterion=self.criterion,
        )

    def result(self, diverged: bool) -> TrialResult:
        """Test the best-validation weights (a diverged run: chance-level metrics)."""
        progress, subsets, data = self.progress, self.subsets, self.data
        base: dict[str, Any] = {
            "chance": 1.0 / data.num_classes,
            "num_classes": data.num_classes,
            "n_train": len(subsets.train),
            "n_val": len(subsets.val),
            "n_test": len(subsets.test),
            "subset_hash": subsets.hashed,
            "epochs_run": len(progress.history) + (1 if diverged else 0),
            "optimizer_steps": progress.step,
            "history": progress.history,
        }
        if diverged or progress.best_state is None:
            return _diverged_result(base, data.ordinal, wall_time_s=time.perf_counter() - self.started)
        self.model.load_state_dict(progress.best_state)
        test = self.evaluate("test", subsets.test)
        return TrialResult(
            status="ok",
            best_val_acc=progress.best_val_acc,
            best_val_loss=progress.best_val_loss,
            best_epoch=progress.best_epoch,
            final_val_acc=progress.history[-1]["val_acc"],
            test_acc=float(test["acc"]),  # type: ignore[arg-type]
            test_balanced_acc=float(test["balanced_acc"]),  # type: ignore[arg-type]
            test_loss=float(test["loss"]),  # type: ignore[arg-type]
            test_mae=test["mae"],
            test_off_by_one=test["off_by_one"],
            wall_time_s=time.perf_counter() - self.started,
            best_state=progress.best_state,
            **base,
        )


def checks_each_step(device: torch.device) -> bool:
    """Whether a training step reads its loss on the host (to stop at the first non-finite one): everywhere but
    on CUDA, where that read would make every step wait for the GPU."""
    return device.type != "cuda"


def _model_input(x: torch.Tensor, device: torch.device, amp: bool) -> torch.Tensor:
    """A batch as the model takes it: float32 on ``device`` (no copy where it is already), channels_last under
    ``amp`` where it is a B×C×H×W map (images, or a frozen prefix's convolutional activations)."""
    import torch

    x = x.to(device, torch.float32)
    if amp and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def _image_batches(
    data: DatasetTensors,
    indices: np.ndarray,
    config: TrialConfig,
    device: torch.device,
    amp: bool,
    drop_last: bool,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor],
    order_generator: torch.Generator,
    augment_generator: torch.Generator,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Augmented, normalized training batches of images (the uncached path)."""
    from tlsweep.data.batches import iterate_batches

    for images, labels in iterate_batches(
        data.train,
        indices,
        config.batch_size,
        shuffle=True,
        generator=order_generator,
        device=device,
        drop_last=drop_last,
    ):
        yield _model_input(augment(images, augment_generator), device, amp), labels


def _feature_batches(
    frozen: frozen_features.FrozenFeatures,
    data: DatasetTensors,
    indices: np.ndarray,
    config: TrialConfig,
    device: torch.device,
    amp: bool,
    drop_last: bool,
    order_generator: torch.Generator,
    augment_generator: torch.Generator,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The same batches as ``_image_batches`` (same permutation, same flip draws), as the frozen prefix's stored
    activations: the mirrored image's where the flip policy mirrors it."""
    import torch

    from tlsweep.data.augment import draw_flips
    from tlsweep.data.batches import batch_rows

    for rows in batch_rows(indices, config.batch_size, shuffle=True, generator=order_generator, drop_last=drop_last):
        stored_rows = rows.to(frozen.train.device)
        x = frozen.train.index_select(0, stored_rows)
        if frozen.train_flipped is not None:
            flips = draw_flips(len(rows), augment_generator, x.device)
            mirrored = frozen.train_flipped.index_select(0, stored_rows)
            x = torch.where(flips.view(-1, *([1] * (x.dim() - 1))), mirrored, x)
        labels = data.train.labels.index_select(0, rows.to(data.train.labels.device))
        yield _model_input(x, device, amp), labels.to(device)


def _stored_batches(
    stored: torch.Tensor,
    labels: torch.Tensor,
    indices: np.ndarray,
    batch_size: int,
    device: torch.device,
    amp: bool,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Evaluation batches of stored activations, in index order."""
    from tlsweep.data.batches import batch_rows

    for rows in batch_rows(indices, batch_size, shuffle=False, generator=None):
        x = stored.index_select(0, rows.to(stored.device))
        yield _model_input(x, device, amp), labels.index_select(0, rows.to(labels.device)).to(device)


def _train_epoch(
    model: nn.Module,
    forward: nn.Module,
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    amp: bool,
    *,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    criterion: nn.Module,
) -> dict[str, float]:
    """One pass over the batches; ``loss`` is NaN/inf when a batch's loss is not finite.

    ``forward`` maps a batch to logits: ``model`` itself, or the part after its frozen prefix. Losses and correct
    counts accumulate on the device; on CPU each step's loss is checked (free there) and the epoch stops at the
    first non-finite one, on CUDA the sum is checked once at the end of the epoch, so no step waits for the host.
    """
    import torch

    from tlsweep.training.backbones import train_mode

    train_mode(model)
    check_each_step = checks_each_step(device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen, steps, lr = 0, 0, optimizer.param_groups[0]["lr"]
    for x, labels in batches:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = forward(x)
            loss = criterion(logits.float(), labels)
        if check_each_step:
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                return {"loss": loss_value, "acc": math.nan, "lr": lr, "steps": steps}
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        lr = optimizer.param_groups[0]["lr"]
        optimizer.step()
        scheduler.step()
        steps += 1
        loss_sum += loss.detach().double() * len(labels)
        correct += (logits.detach().argmax(dim=1) == labels).sum()
        seen += len(labels)
    total = float(loss_sum)  # the epoch's one host synchronisation
    if not math.isfinite(total):
        return {"loss": total, "acc": math.nan, "lr": lr, "steps": steps}
    return {"loss": total / seen, "acc": int(correct) / seen, "lr": lr, "steps": steps}


def _diverged_result(base: dict[str, Any], ordinal: bool, *, wall_time_s: float) -> TrialResult:
    chance, nan = base["chance"], math.nan
    return TrialResult(
        status="diverged",
        best_val_acc=chance,
        best_val_loss=nan,
        best_epoch=0,
        final_val_acc=chance,
        test_acc=chance,
        test_balanced_acc=chance,
        test_loss=nan,
        test_mae=nan if ordinal else None,
        test_off_by_one=nan if ordinal else None,
        wall_time_s=wall_time_s,
        **base,
    )


def _check_resumable(state: dict[str, Any], config: TrialConfig, hashed: str) -> None:
    if state.get("format") != STATE_FORMAT:
        raise StoreError(f"training state has format {state.get('format')!r}; this tlsweep reads {STATE_FORMAT}")
    # a setting added since the state was saved (e.g. head) had its default then
    saved = {k: v for k, v in {**type(config)().to_dict(), **state["config"]}.items() if k not in RUNTIME_SETTINGS}
    current = {k: v for k, v in config.to_dict().items() if k not in RUNTIME_SETTINGS}
    changed = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    if changed:
        details = ", ".join(f"{k}: saved {saved.get(k)!r} vs now {current.get(k)!r}" for k in changed)
        raise StoreError(f"cannot resume a run with different settings ({details})")
    if state["subset_hash"] != hashed:
        raise StoreError(
            f"cannot resume: the training subset changed (saved {state['subset_hash']}, now {hashed}); "
            "the dataset differs from the one the run started on"
        )


def pretrain(config: TrialConfig, data: DatasetTensors, out: Path, *, report: Report | None = None) -> dict[str, Any]:
    """Train ``config.backbone`` on a source dataset and save its best-validation body for ``init: checkpoint:``.

    Writes ``{"backbone": body state dict, "arch", "classes", "metrics", "config"}`` to ``out`` atomically and
    returns the metrics (``TrialResult.to_dict()``).
    """
    from tlsweep.training.backbones import body_state_dict
    from tlsweep.training.predict import atomic_torch_save

    result = run_trial(config, data, report=report)
    if result.status != "ok" or result.best_state is None:
        raise DataError(
            f"pretraining {config.backbone} on {data.name!r} diverged (lr={config.lr}); lower --lr and run again"
        )
    metrics = result.to_dict()
    atomic_torch_save(
        {
            "backbone": body_state_dict(result.best_state, config.backbone),
            "arch": config.backbone,
            "classes": list(data.class_names),
            "metrics": {k: v for k, v in metrics.items() if k != "history"},
            "history": metrics["history"],
            "config": config.to_dict(),
        },
        Path(out),
    )
    return metrics
