"""Loading a sweep spec: a YAML file plus ``--set`` overrides, validated field by field (``tlsweep.spec``) and then
checked against the plan it makes (``tlsweep.design.check_design``); also the ``spec.resolved.yaml`` saved with results.

Every error names the file, the dotted field path, what was given and what is allowed. Nothing here imports torch
or ray.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from tlsweep.design import check_design
from tlsweep.errors import SpecError
from tlsweep.spec import LEGACY_PROVENANCE_KEY, SweepSpec
from tlsweep.spec_yaml import load_yaml, parse_override_value, read_yaml_file


def apply_overrides(data: dict[str, Any], overrides: list[str], *, source: str) -> dict[str, Any]:
    """Apply ``dotted.key=value`` overrides (values parsed as YAML) to a nested dict."""
    result = json.loads(json.dumps(data))
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise SpecError(f"{source}: --set {item!r}: expected dotted.key=value, e.g. --set confirm.seeds=8")
        value = parse_override_value(raw, source=source, item=item)
        node = result
        parts = key.strip().split(".")
        if any(not part for part in parts):
            raise SpecError(
                f"{source}: --set {item!r}: {key.strip()!r} has an empty part; write dotted.key=value, "
                "e.g. --set confirm.seeds=8"
            )
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise SpecError(f"{source}: --set {key}: {part!r} holds a {type(child).__name__}, not a mapping")
            node = child
        node[parts[-1]] = value
    return result


def _allowed_fields(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str] | None:
    """Field names allowed at the parent of ``loc`` (for 'unknown key' messages), when it can be found."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int) or not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(str(part))
        if field is None:
            return None
        current = field.annotation
        args = getattr(current, "__args__", ())
        models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        if models:
            current = models[0]
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return None


def format_validation_error(exc: ValidationError, *, source: str) -> str:
    lines = [f"{source}: invalid sweep spec ({exc.error_count()} problem{'s' if exc.error_count() > 1 else ''}):"]
    for err in exc.errors():
        loc = tuple(err["loc"])
        # drop discriminator tags pydantic inserts for unions (e.g. 'synthetic' in dataset.synthetic.root)
        path = ".".join(str(p) for p in loc) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            allowed = _allowed_fields(SweepSpec, loc)
            hint = f"; allowed keys here: {allowed}" if allowed else ""
            lines.append(f"  {path}: unknown key{hint}")
        elif err["type"] == "missing":
            lines.append(f"  {path}: required field is missing")
        else:
            given = err.get("input")
            given_text = "" if isinstance(given, dict) else f" (got {given!r})"
            lines.append(f"  {path}: {msg}{given_text}")
    return "\n".join(lines)


def parse_spec(data: Any, *, source: str = "<spec>") -> SweepSpec:
    if data is None:
        raise SpecError(f"{source}: the file is empty; a sweep spec is a YAML mapping (see sweeps/demo.yaml)")
    if not isinstance(data, dict):
        raise SpecError(f"{source}: a sweep spec must be a YAML mapping at the top level, got {type(data).__name__}")
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(format_validation_error(exc, source=source)) from None
    try:
        check_design(spec)
    except ValueError as exc:
        raise SpecError(f"{source}: invalid sweep spec (1 problem):\n  (top level): {exc}") from None
    return spec


def load_spec(path: str | Path, overrides: list[str] | None = None) -> SweepSpec:
    """Read a sweep YAML, apply ``--set`` style overrides and validate it, as ``tlsweep validate`` does.

    Args:
        path: the sweep YAML (``sweeps/*.yaml`` are complete examples).
        overrides: ``dotted.key=value`` strings, values in YAML (``["confirm.seeds=12", "design.factors.epochs=[2,5]"]``).

    Returns:
        The frozen, validated ``SweepSpec``: ``tlsweep.design.studies(spec)`` and ``trial_counts(spec)`` give
        the experiment's plan, ``spec.compared_arms`` its comparisons and ``spec.resolved()`` the saved form.

    Raises:
        SpecError: naming the file, the dotted field, what was given and what is allowed.
    """
    path = Path(path)
    source = str(path)
    data = read_yaml_file(path, source=source)
    data = apply_overrides(data or {}, overrides or [], source=source) if isinstance(data, dict) else data
    return parse_spec(data, source=source)


def split_resolved(text: str, *, source: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The spec mapping of a saved ``spec.resolved.yaml`` and the legacy provenance block it may carry.

    Results written by tlsweep 0.1.0 append a ``tlsweep:`` block (hash, versions, ...) to the spec; it is taken
    out here so that what remains is a spec again.

    Raises:
        SpecError: the text is not YAML or not a mapping.
    """
    try:
        data = load_yaml(text, source=source)
    except SpecError as exc:
        raise SpecError(f"{exc}; {_RESOLVED_FIX}") from None
    if not isinstance(data, dict):
        raise SpecError(
            f"{source}: a sweep spec must be a YAML mapping at the top level, got "
            f"{type(data).__name__}; {_RESOLVED_FIX}"
        )
    legacy = data.pop(LEGACY_PROVENANCE_KEY, None)
    if legacy is not None and not isinstance(legacy, dict):
        raise SpecError(f"{source}: `{LEGACY_PROVENANCE_KEY}` is not a spec field; remove it")
    return data, legacy


def parse_resolved_spec(text: str, *, source: str) -> SweepSpec:
    """The ``SweepSpec`` saved with a sweep's results (``spec.resolved.yaml``, old layout included).

    Raises:
        SpecError: naming ``source``, every invalid field and how to get a valid file back.
    """
    data, _ = split_resolved(text, source=source)
    try:
        return parse_spec(data, source=source)
    except SpecError as exc:
        raise SpecError(f"{exc}\n{_RESOLVED_FIX}") from None


_RESOLVED_FIX = (
    "this file records the spec the sweep ran with: restore it, or rerun `tlsweep run SPEC` with that spec to "
    "rewrite it"
)
