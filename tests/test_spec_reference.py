"""The README's spec reference is generated from the spec's models and lists every key (issue 24, item 3)."""

from __future__ import annotations

from pathlib import Path

from tlsweep.spec_reference import MEANINGS, reference_rows, spec_reference

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- spec-reference:start -->\n", "<!-- spec-reference:end -->"


def test_the_readme_holds_the_generated_reference() -> None:
    text = README.read_text()
    assert START in text and END in text
    held = text.split(START, 1)[1].split(END, 1)[0]
    assert held == spec_reference(), "README's spec reference is stale: paste `python -m tlsweep.spec_reference`"


def test_every_key_of_the_models_has_a_line_and_every_line_a_key() -> None:
    keys = [key for key, _, _ in reference_rows()]
    assert len(keys) == len(set(keys))
    assert set(keys) == set(MEANINGS)  # spec_reference() raises for a key without a line
    for key in ("dataset.split_ratios.train", "dataset.split_seed", "dataset.extensions", "model.pretrain.dataset"):
        assert key in keys  # the ImageFolder keys and the pretraining dataset block the issue found missing
    assert ("checkpoints.every.seconds", "float \\| null", "`60.0`") in reference_rows()
