"""Strict YAML for sweep specs and ``--set`` values: only what JSON can say, bounded in size, nesting and aliases.

PyYAML's safe loader still accepts things a sweep spec never means: a duplicate key silently keeps the last
value, ``2024-01-01`` becomes a ``datetime.date``, ``.inf``/``.nan`` become non-finite floats, an alias may refer
to the node that contains it (a cycle), a few kilobytes of nested aliases expand to gigabytes, and a few thousand
nested brackets exhaust Python's recursion limit. :func:`load_yaml` refuses each of these with a
:class:`~tlsweep.errors.SpecError` naming the file, the line and the fix. Nothing here imports torch or ray.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml
import yaml.reader
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from tlsweep.errors import SpecError

MAX_SPEC_BYTES = 1 << 20  # a sweep spec is a few KB; 1 MiB leaves room for generated specs
MAX_DEPTH = 64  # nesting of mappings and lists, aliases expanded (a spec nests about 5 deep)
MAX_VALUES = 100_000  # scalars, lists and mappings once aliases are expanded

_NON_JSON_TAGS = {
    "tag:yaml.org,2002:timestamp": "a date or time",
    "tag:yaml.org,2002:binary": "binary data",
    "tag:yaml.org,2002:set": "a set",
    "tag:yaml.org,2002:omap": "an ordered map",
    "tag:yaml.org,2002:pairs": "a list of pairs",
}


def _where(source: str, node_or_mark: Any) -> str:
    mark = getattr(node_or_mark, "start_mark", node_or_mark)
    line = getattr(mark, "line", None)
    return f"{source}:{line + 1}" if isinstance(line, int) else source


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that bounds nesting while composing (PyYAML's composer recurses once per level)."""

    source = "<yaml>"

    def __init__(self, stream: str, source: str) -> None:
        super().__init__(stream)
        self.source = source
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise SpecError(
                    f"{_where(self.source, mark)}: nesting deeper than {MAX_DEPTH} levels; a sweep spec "
                    "nests a few levels (see sweeps/*.yaml): remove the extra brackets or indentation"
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise SpecError(
                    f"{_where(self.source, key_node)}: key {key!r} is a {type(key).__name__}; keys are "
                    f'names: quote it ("{key_node.value}":) or fix the indentation'
                )
            if key in seen:
                raise SpecError(
                    f"{_where(self.source, key_node)}: duplicate key {key!r} (first at line "
                    f"{seen[key].start_mark.line + 1}); YAML would keep only the last value: remove one"
                )
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_float(self, node: ScalarNode) -> float:
        value = super().construct_yaml_float(node)
        if not math.isfinite(value):
            raise SpecError(
                f"{_where(self.source, node)}: {node.value!r} is not a finite number; every number in a "
                "sweep spec must be finite: give a number such as 1.0e6"
            )
        return value

    def construct_non_json(self, node: Node) -> Any:
        kind = _NON_JSON_TAGS.get(node.tag, node.tag)
        text = node.value if isinstance(node, ScalarNode) else "..."
        raise SpecError(
            f"{_where(self.source, node)}: {text!r} reads as {kind}, which a sweep spec cannot hold; "
            f'quote it to keep it as text: "{text}"'
        )


_StrictLoader.add_constructor("tag:yaml.org,2002:float", _StrictLoader.construct_yaml_float)
for _tag in _NON_JSON_TAGS:
    _StrictLoader.add_constructor(_tag, _StrictLoader.construct_non_json)


def _check_graph(root: Node, source: str) -> None:
    """Refuse cycles (an alias inside the node it names), aliases expanding past MAX_VALUES, and nesting past
    MAX_DEPTH once aliases are expanded. Shared (aliased) nodes are measured once: linear in the file's size."""
    sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded values, height)
    open_nodes: set[int] = set()

    def measure(node: Node, depth: int) -> tuple[int, int]:
        key = id(node)
        if key in open_nodes:
            raise SpecError(
                f"{_where(source, node)}: an alias refers to a mapping or list that contains it (a "
                "recursive alias); a sweep spec is a tree: write the value out instead of the alias"
            )
        if key not in sizes:
            if depth > MAX_DEPTH:
                raise SpecError(
                    f"{_where(source, node)}: nesting deeper than {MAX_DEPTH} levels once aliases are "
                    "expanded; write the values out without nested aliases"
                )
            open_nodes.add(key)
            children: list[Node] = []
            if isinstance(node, SequenceNode):
                children = list(node.value)
            elif isinstance(node, MappingNode):
                children = [part for pair in node.value for part in pair]
            total, height = 1, 0
            for child in children:
                size, child_height = measure(child, depth + 1)
                total += size
                height = max(height, child_height + 1)
                if total > MAX_VALUES:
                    raise SpecError(
                        f"{_where(source, node)}: aliases expand to more than {MAX_VALUES:,} values; a "
                        "sweep spec needs a few hundred: remove the nested aliases"
                    )
            open_nodes.discard(key)
            sizes[key] = (total, height)
        total, height = sizes[key]
        if depth + height > MAX_DEPTH:
            raise SpecError(
                f"{_where(source, node)}: nesting deeper than {MAX_DEPTH} levels once aliases are "
                "expanded; write the values out without nested aliases"
            )
        return total, height

    measure(root, 0)


def load_yaml(text: str, *, source: str) -> Any:
    """The JSON-like value of YAML ``text`` (dicts with string keys, lists, str, int, finite float, bool, None).

    Raises:
        SpecError: ``"<source>:<line>: <problem>; <fix>"`` for invalid YAML, duplicate keys, non-string keys,
            non-JSON values (dates, sets, binary), non-finite numbers, recursive aliases, alias expansion beyond
            :data:`MAX_VALUES` and nesting beyond :data:`MAX_DEPTH`.
    """
    loader: _StrictLoader | None = None
    try:
        loader = _StrictLoader(text, source)  # the reader refuses control characters here already
        node = loader.get_single_node()
        if node is None:
            return None
        _check_graph(node, source)
        return loader.construct_document(node)
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        raise SpecError(
            f"{source}:{line}: the control character {chr(exc.character)!r} is not allowed in YAML; remove it"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        detail = f"{context}, {problem}" if context else problem
        raise SpecError(
            f"{_where(source, mark)}: not valid YAML: {detail}; check the brackets, quotes and indentation there"
        ) from None
    except RecursionError:  # a bound above should come first; never let it become a traceback
        raise SpecError(f"{source}: nested too deeply to read; a sweep spec nests a few levels") from None
    finally:
        if loader is not None:
            loader.dispose()


def decode_spec_bytes(data: bytes, *, source: str) -> str:
    """``data`` as UTF-8 text (a leading BOM dropped), refusing oversized or non-UTF-8 input with a SpecError."""
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError(
            f"{source}: {len(data):,} bytes is too large for a sweep spec (at most {MAX_SPEC_BYTES:,}); "
            "is this the right file?"
        )
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SpecError(
            f"{source}:{line}: byte 0x{data[exc.start]:02x} at offset {exc.start} is not UTF-8; save the "
            "file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
        ) from None


def read_yaml_file(path: Path, *, source: str | None = None) -> Any:
    """Read and parse a YAML spec file strictly (:func:`decode_spec_bytes`, then :func:`load_yaml`).

    Raises:
        SpecError: the file is missing, unreadable, too large, not UTF-8 or not strict YAML.
    """
    source = source or str(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_SPEC_BYTES + 1)
    except FileNotFoundError:
        raise SpecError(f"{source}: no such file; the specs shipped with tlsweep are in sweeps/*.yaml") from None
    except IsADirectoryError:
        raise SpecError(f"{source}: is a directory; give the sweep spec's YAML file") from None
    except OSError as exc:
        raise SpecError(
            f"{source}: cannot be read ({exc.strerror or exc}); check the path and its permissions"
        ) from None
    return load_yaml(decode_spec_bytes(data, source=source), source=source)


def parse_override_value(raw: str, *, source: str, item: str) -> Any:
    """The value of one ``--set key=value`` (YAML, as strict as a spec file; an empty value is ``""``).

    Raises:
        SpecError: naming ``source``, the ``--set`` item and how to quote a string.
    """
    if not raw.strip():
        return ""
    try:
        return load_yaml(raw, source="value")
    except SpecError as exc:
        reason = str(exc).removeprefix("value:1: ").removeprefix("value: ")
        raise SpecError(
            f"{source}: --set {item!r}: {reason}. The value is read as YAML (e.g. --set confirm.seeds=8, "
            "--set 'design.factors.epochs=[2, 5]'); quote text: --set 'name=\"my-sweep\"'"
        ) from None
