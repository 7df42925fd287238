"""`tlsweep dashboard` checks the Optuna journal against trials.parquet: a damaged, emptied, duplicated or foreign
journal is refused with the fix (`--rebuild`, which rebuilds it from the Parquet), one that only lacks trials is
served with a note saying what it lacks, and the sweep driver sets a foreign or duplicated journal aside."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_exit import run_tlsweep
from report_fixtures import simulate_results

from tlsweep.results.store import ResultsStore
from tlsweep.tracking.optuna_mirror import JOURNAL_FILE, open_study_mirror, read_journal
from tlsweep.tracking.study_dashboard import StudyDashboardError, _storage, expected_studies, prepare_journal


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two finished sweeps with their journals (``other`` a different sweep of the same design)."""
    base = tmp_path_factory.mktemp("sweeps")
    mine = simulate_results(base / "mine", seeds=2, trials_per_cell=2)
    other = simulate_results(base / "other", name="other", seeds=3, trials_per_cell=2)
    for root in (mine, other):
        prepare_journal(root)
    return mine, other


@pytest.fixture
def results(sweeps: tuple[Path, Path], tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(sweeps[0], tmp_path / "mine"))


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def _cut_in_half(journal: Path, other: Path) -> None:
    lines = _lines(journal)
    journal.write_bytes(b"".join(lines[: len(lines) // 2]))


def _emptied(journal: Path, other: Path) -> None:
    journal.write_bytes(b"")


def _duplicated(journal: Path, other: Path) -> None:
    journal.write_bytes(b"".join(line + line for line in _lines(journal)))


def _foreign(journal: Path, other: Path) -> None:
    journal.write_bytes((other / JOURNAL_FILE).read_bytes())


def _dev_null(journal: Path, other: Path) -> None:
    journal.unlink()
    journal.symlink_to(os.devnull)


def _fifo(journal: Path, other: Path) -> None:
    journal.unlink()
    os.mkfifo(journal)


def _garbled(journal: Path, other: Path) -> None:
    journal.write_bytes(b"not json\n{}\n")


REFUSED: dict[str, tuple[Callable[[Path, Path], None], str]] = {
    "emptied": (_emptied, "it holds none of the"),
    "duplicated line by line": (_duplicated, "trials recorded more than once"),
    "another sweep's": (_foreign, "studies of another sweep (other)"),
    "a link to /dev/null": (_dev_null, "is not a regular file"),
    "a FIFO": (_fifo, "is not a regular file"),
    "garbled": (_garbled, "Optuna cannot read this journal"),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", list(REFUSED))
def test_a_journal_that_does_not_mirror_the_parquet_is_refused_with_the_fix(
    case: str,
    results: Path,
    sweeps: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    damage, says = REFUSED[case]
    journal = results / JOURNAL_FILE
    damage(journal, sweeps[1])
    code, out, err = run_tlsweep(["dashboard", results], capsys, monkeypatch)
    assert code == 2 and out == "", out
    assert len(err.strip().splitlines()) == 1 and str(journal) in err and says in err
    assert "--rebuild" in err
    rebuilt = prepare_journal(results, rebuild=True)  # the fix the message gives
    trials = ResultsStore(results).read_trials()
    assert rebuilt.built and rebuilt.trials == trials.num_rows
    assert rebuilt.studies == len(expected_studies(trials))
    assert prepare_journal(results).lacks is None


def test_a_journal_with_trials_the_parquet_lacks_is_refused(results: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trials = ResultsStore(results).read_trials()
    fewer = trials.slice(0, trials.num_rows - 3)  # the Parquet files of another run, three trials short
    monkeypatch.setattr(ResultsStore, "read_trials", lambda self, *args, **kwargs: fewer)
    with pytest.raises(StudyDashboardError, match=r"3 trials not in trials.parquet \(.*\);.*--rebuild"):
        prepare_journal(results)


def test_a_journal_cut_short_is_served_with_what_it_lacks(
    results: Path, sweeps: tuple[Path, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _cut_in_half(results / JOURNAL_FILE, sweeps[1])
    journal = prepare_journal(results)
    total = ResultsStore(results).read_trials().num_rows
    assert not journal.built and 0 < journal.trials < total
    assert journal.lacks is not None
    assert f"it lacks {total - journal.trials} of the {total} trials in trials.parquet" in journal.lacks
    served: list[Path] = []

    class Server:
        server_port = 1

        def serve_forever(self) -> None:
            raise KeyboardInterrupt

        def server_close(self) -> None:
            pass

    from tlsweep.tracking import study_dashboard

    monkeypatch.setattr(study_dashboard, "make_server", lambda path, port: served.append(path) or Server())
    code, out, _ = run_tlsweep(["dashboard", results], capsys, monkeypatch)
    assert code == 0 and served == [results / JOURNAL_FILE]
    assert f"Note: it lacks {total - journal.trials} of the {total} trials" in out and "--rebuild" in out


def test_the_driver_sets_a_foreign_or_duplicated_journal_aside_and_rebuilds_it(
    results: Path, sweeps: tuple[Path, Path]
) -> None:
    store = ResultsStore(results)
    journal = results / JOURNAL_FILE
    for damage, kind in ((_foreign, "another sweep"), (_duplicated, "more than once")):
        damage(journal, sweeps[1])
        before = journal.read_bytes()
        mirror = open_study_mirror(store.read_spec(), store)
        assert mirror.enabled and mirror.trial_ids() == set()
        assert mirror.sync(store.read_trials(), store.read_epochs()) == store.read_trials().num_rows
        contents = read_journal(_storage(journal))
        assert Counter(len(ids) for ids in contents.trials.values()) == Counter(
            len(ids) for ids in expected_studies(store.read_trials()).values()
        )
        assert set(contents.sweeps.values()) == {"demo"}, kind
        set_aside = sorted(results.glob(f"{JOURNAL_FILE}.mismatched-*"))
        assert set_aside and set_aside[-1].read_bytes() == before
        set_aside[-1].unlink()
