"""The README and the CLI stay in step: every command is documented and has help text."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from tlsweep import __version__
from tlsweep.cli import cli

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _commands(group: click.Group, prefix: str = "tlsweep") -> list[tuple[str, click.Command]]:
    found = []
    for name, command in group.commands.items():
        found.append((f"{prefix} {name}", command))
        if isinstance(command, click.Group):
            found.extend(_commands(command, f"{prefix} {name}"))
    return found


@pytest.mark.parametrize(("path", "command"), _commands(cli), ids=[p for p, _ in _commands(cli)])
def test_every_command_is_documented_and_has_help(path: str, command: click.Command) -> None:
    assert command.help, f"{path} has no help text"
    assert f"`{path}" in README, f"{path} is not in README.md"


def test_the_readme_starts_with_the_two_commands() -> None:
    head = README[:1500]
    assert "make demo" in head and "make test" in head


def test_version_and_help() -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["--version"]).output.strip() == f"tlsweep, version {__version__}"
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0 and "run" in result.output and "report" in result.output


def _field_names(model: type, prefix: str = "") -> list[str]:
    from pydantic import BaseModel

    names = []
    for name, field in model.model_fields.items():
        names.append(name)
        annotation = field.annotation
        for candidate in (annotation, *getattr(annotation, "__args__", ())):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel) and name not in ("dataset",):
                names.extend(_field_names(candidate))
    return names


def test_every_spec_field_is_in_the_readme_reference() -> None:
    from tlsweep.spec import SweepSpec

    reference = README.split("## The sweep spec", 1)[1].split("\n## ", 1)[0]
    missing = sorted({n for n in _field_names(SweepSpec) if not re.search(rf"\b{n}\b", reference)})
    assert missing == []


@pytest.mark.ray
@pytest.mark.slow
def test_the_from_python_example_runs(ray_local, tiny_assets, tmp_path, capsys) -> None:
    import yaml
    from sweep_fixtures import smallest_spec_dict

    block = README.split("## From Python", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    assert 'tlsweep.load_spec("sweeps/demo.yaml"' in block
    spec_path = tmp_path / "tiny.yaml"
    spec_path.write_text(yaml.safe_dump(smallest_spec_dict(tiny_assets, tmp_path / "runs")))  # one cell
    exec(compile(block.replace("sweeps/demo.yaml", str(spec_path)), "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "compares ('checkpoint', 'scratch')" in printed
    assert str(tmp_path / "runs" / "tiny" / "report" / "report.md") in printed
    assert (tmp_path / "runs" / "tiny" / "trials.parquet").exists()
