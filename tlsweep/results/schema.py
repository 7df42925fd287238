"""The Parquet schema of a results directory: the contract between the sweep engine, the report and W&B.

``trials.parquet`` holds one row per trial, ``epochs.parquet`` one row per trial × epoch. Both are written by
the driver only (see ``tlsweep.results.store``). Columns are fixed; the factor columns are the factors tlsweep knows
(``FACTOR_COLUMNS``); a factor a sweep does not vary holds the value the sweep used for it.
"""

from __future__ import annotations

import pyarrow as pa

from tlsweep.spec import FACTOR_NAMES

_FACTOR_TYPES: dict[str, pa.DataType] = {
    "init": pa.string(),  # arm: "imagenet" | "checkpoint" | "scratch"
    "train_fraction": pa.float64(),
    "epochs": pa.int32(),
    "augmentation": pa.string(),
    "freeze_depth": pa.int16(),  # null when it does not apply (scratch)
}
# One typed column per factor a spec may vary (tlsweep.spec.FACTOR_NAMES), in that order.
FACTOR_COLUMNS: dict[str, pa.DataType] = {name: _FACTOR_TYPES[name] for name in FACTOR_NAMES}

PHASES = ("tune", "confirm")
# Columns added after the first release: files written before them are read with these columns all null.
ADDED_COLUMNS = frozenset({"resumed_from_epoch", "test_class_acc", "test_confusion"})
STATUSES = ("ok", "diverged", "pruned", "failed")  # pruned: stopped early by ASHA (tune phase only)

TRIALS_SCHEMA = pa.schema(
    [
        ("sweep", pa.string()),
        ("trial_id", pa.string()),  # content hash of (phase, cell_id, params, seed)
        ("phase", pa.string()),  # "tune" | "confirm"
        ("cell_id", pa.string()),  # e.g. "train_fraction=0.1|epochs=2|augmentation=flip" (init excluded)
        ("config_kind", pa.string()),  # tune: "recipe" | "search"; confirm: "best" | "recipe"
        ("tune_index", pa.int32()),  # 0..trials_per_cell-1 in the tune phase (0 is the recipe); null in confirm
        ("replicate", pa.int32()),  # 0..seeds-1 in the confirm phase; null in tune
        ("seed", pa.int64()),  # replicate seed: subset, order, augmentation, head init; shared across arms
        ("arm", pa.string()),  # the init level (same as init)
        *[(name, dtype) for name, dtype in FACTOR_COLUMNS.items()],
        ("lr", pa.float64()),
        ("weight_decay", pa.float64()),
        ("params_json", pa.string()),  # every resolved hyperparameter of the trial, JSON object
        ("status", pa.string()),  # "ok" | "diverged" | "pruned" | "failed"
        ("error", pa.string()),  # last error message for failed trials, else null
        ("attempts", pa.int32()),  # 1 + retries Ray made
        ("resumed_from_epoch", pa.int32()),  # continued from a checkpoint (Ray retry or dead driver); else null
        ("best_val_acc", pa.float64()),  # the objective's usual metric, on the best-validation epoch
        ("best_val_loss", pa.float64()),
        ("best_epoch", pa.int32()),  # 1-based
        ("final_val_acc", pa.float64()),
        ("test_acc", pa.float64()),  # confirm phase only (never used for selection); null in tune
        ("test_balanced_acc", pa.float64()),
        ("test_loss", pa.float64()),
        ("test_mae", pa.float64()),  # mean absolute class error (ordinal labels only)
        ("test_off_by_one", pa.float64()),  # accuracy within one class (ordinal labels only)
        ("test_class_acc", pa.string()),  # JSON list: each class's test accuracy (recall), in class order; null: none
        ("test_confusion", pa.string()),  # JSON K×K test counts: row = true class, column = predicted class
        ("objective", pa.float64()),  # the spec's objective metric value for this trial
        ("chance", pa.float64()),  # 1 / num_classes
        ("num_classes", pa.int32()),
        ("n_train", pa.int32()),  # size of the training subset
        ("n_val", pa.int32()),
        ("n_test", pa.int32()),
        ("subset_hash", pa.string()),  # hash of the training subset indices: equal across arms for one seed
        ("epochs_run", pa.int32()),
        ("optimizer_steps", pa.int64()),
        ("wall_time_s", pa.float64()),
        ("node_id", pa.string()),
        ("hostname", pa.string()),
        ("finished_at", pa.timestamp("ms", tz="UTC")),
    ]
)

EPOCHS_SCHEMA = pa.schema(
    [
        ("sweep", pa.string()),
        ("trial_id", pa.string()),
        ("phase", pa.string()),
        ("cell_id", pa.string()),
        ("arm", pa.string()),
        ("seed", pa.int64()),
        ("epoch", pa.int32()),  # 1-based
        ("step", pa.int64()),  # optimizer steps done at the end of this epoch
        ("train_loss", pa.float64()),
        ("train_acc", pa.float64()),
        ("val_loss", pa.float64()),
        ("val_acc", pa.float64()),
        ("lr", pa.float64()),
        ("epoch_time_s", pa.float64()),
    ]
)
