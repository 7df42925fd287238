"""Relative paths in a sweep spec file mean paths beside that file, wherever tlsweep is started from.

``tlsweep.spec_load.load_spec`` anchors them before validation: every relative path the file writes (the dataset's
``root``, ``model.pretrain.dataset.root``, ``model.pretrained.checkpoint``, a weights file given as
``model.pretrained.imagenet``, ``storage``) becomes an absolute path under the spec file's folder; ``--set`` values
are anchored at the current folder, as a shell argument is. So the spec the run records, the results' hash and
every error name the same absolute path.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tlsweep.spec import SweepSpec

PATH_FIELDS: tuple[tuple[str, ...], ...] = (
    ("dataset", "root"),
    ("model", "pretrain", "dataset", "root"),
    ("model", "pretrained", "checkpoint"),
    ("model", "pretrained", "imagenet"),
    ("storage",),
)
_WEIGHTS_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")  # a weights file, not a weights name


def _is_local_path(keys: tuple[str, ...], value: Any) -> bool:
    if not isinstance(value, str) or not value.strip() or "://" in value:
        return False
    if keys[-1] == "imagenet":  # a torchvision weights name or a timm tag, unless it names a file
        return "/" in value or os.sep in value or value.endswith(_WEIGHTS_SUFFIXES)
    return True


def anchor_paths(data: dict[str, Any], folder: Path) -> dict[str, Any]:
    """``data`` (a spec mapping) with each relative path of :data:`PATH_FIELDS` joined to ``folder`` (absolute);
    ``~`` is expanded, absolute paths and URIs stay as they are. The mapping given is not changed."""
    anchored = dict(data)
    for keys in PATH_FIELDS:
        node = anchored
        parents_ok = True
        for key in keys[:-1]:  # copy the path of mappings down to the value, so `data` stays untouched
            child = node.get(key)
            if not isinstance(child, dict):
                parents_ok = False
                break
            node[key] = node = dict(child)
        value = node.get(keys[-1]) if parents_ok else None
        if _is_local_path(keys, value):
            path = Path(str(value)).expanduser()
            node[keys[-1]] = str(path if path.is_absolute() else Path(os.path.abspath(folder / path)))
    return anchored


def relative_result_hash(spec: SweepSpec, folder: Path) -> str:
    """The result hash ``spec`` had before paths were anchored: each absolute path under ``folder`` written relative
    to it, as a spec read from that folder by tlsweep ≤ 0.2 recorded it. ``check_resume`` accepts it (results
    recorded then resume), and it pins the hashes of older specs."""
    from tlsweep.spec import result_fields_hash

    resolved = spec.result_fields()
    for keys in PATH_FIELDS:
        node: Any = resolved
        for key in keys[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        value = node.get(keys[-1]) if isinstance(node, dict) else None
        if _is_local_path(keys, value) and Path(str(value)).is_absolute() and Path(str(value)).is_relative_to(folder):
            node[keys[-1]] = os.path.relpath(str(value), str(folder))
    return result_fields_hash(resolved)
