"""The layout's promises: pure packages need neither torch nor Ray, and importing tlsweep changes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna

import tlsweep
from tlsweep.engine.sweep_environment import RESULT_FILES_LOGGER, SWEEP_ENVIRONMENT, sweep_settings

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


def _python(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS)])}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=300, cwd=REPO
    )


def test_spec_design_results_report_and_stats_work_with_torch_and_ray_unimportable(tmp_path: Path) -> None:
    proc = _python(f"""
        import importlib.abc, pkgutil, sys

        class Refuse(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "torchvision", "ray"):
                    raise ImportError(f"{{name}} is unimportable in this test")

        sys.meta_path.insert(0, Refuse())
        import tlsweep
        for package in ("results", "report", "stats"):
            module = importlib.import_module(f"tlsweep.{{package}}")
            for info in pkgutil.walk_packages(module.__path__, f"tlsweep.{{package}}."):
                importlib.import_module(info.name)
        import tlsweep.design, tlsweep.errors, tlsweep.plan, tlsweep.space, tlsweep.spec

        from report_fixtures import simulate_results
        root = simulate_results(__import__("pathlib").Path({str(tmp_path)!r}) / "r", seeds=4, trials_per_cell=2)
        report = tlsweep.build_report(root, formats=("md",), n_resamples=199)
        spec = tlsweep.load_spec("sweeps/demo.yaml")
        assert report.markdown_path.exists() and spec.compared_arms
        assert tlsweep.plan.detectable(spec).d_z > 0 and tlsweep.plan.sweep_work(spec)
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision", "ray")))
    """)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_importing_every_tlsweep_module_changes_no_environment_logging_or_optuna_setting() -> None:
    proc = _python("""
        import importlib, json, logging, os, pkgutil, warnings
        # the libraries' own import-time effects are theirs: load them first
        for name in ("ray", "ray.tune", "ray.tune.search", "ray.tune.schedulers", "optuna", "torch", "torchvision",
                     "wandb", "pyarrow", "pandas", "matplotlib", "rich", "click", "pydantic", "scipy.stats",
                     "statsmodels.api", "markdown_it", "yaml", "PIL.Image"):
            importlib.import_module(name)
        import optuna

        def snapshot():
            loggers = {"": logging.getLogger()}
            loggers.update({n: l for n, l in logging.Logger.manager.loggerDict.items() if isinstance(l, logging.Logger)})
            return {
                "env": dict(os.environ),
                "loggers": {n: [l.level, l.propagate, l.disabled, [id(f) for f in l.filters],
                                [id(h) for h in l.handlers]] for n, l in loggers.items() if not n.startswith("tlsweep")},
                "optuna": optuna.logging.get_verbosity(),
                "warnings": [repr(f) for f in warnings.filters],
            }

        before = snapshot()
        import tlsweep
        names = [info.name for info in pkgutil.walk_packages(tlsweep.__path__, "tlsweep.")]
        for name in names:
            importlib.import_module(name)
        after = snapshot()
        changed = {k: k for k in before if before[k] != after[k]}
        detail = {k: sorted(set(map(str, after[k].items() if isinstance(after[k], dict) else [after[k]]))
                            ^ set(map(str, before[k].items() if isinstance(before[k], dict) else [before[k]])))[:10]
                  for k in changed}
        print(json.dumps({"modules": len(names), "changed": detail}))
    """)
    assert proc.returncode == 0, proc.stderr[-3000:]
    outcome = json.loads(proc.stdout.strip().splitlines()[-1])
    assert outcome["modules"] > 50
    assert outcome["changed"] == {}


def test_sweep_settings_apply_inside_and_restore_everything_after(monkeypatch) -> None:
    monkeypatch.setenv("RAY_AIR_NEW_OUTPUT", "1")  # a user's own choice survives
    for name in SWEEP_ENVIRONMENT:
        if name != "RAY_AIR_NEW_OUTPUT":
            monkeypatch.delenv(name, raising=False)
    logger = __import__("logging").getLogger(RESULT_FILES_LOGGER)
    filters_before = list(logger.filters)
    optuna.logging.set_verbosity(optuna.logging.INFO)
    try:
        with sweep_settings():
            assert os.environ["RAY_AIR_NEW_OUTPUT"] == "1"
            assert os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] == "1"
            assert optuna.logging.get_verbosity() == optuna.logging.WARNING
            assert len(logger.filters) == len(filters_before) + 1
            record = logger.makeRecord(logger.name, 30, __file__, 1, "Failed to fetch metrics for t1", None, None)
            assert not logger.filter(record)
        assert os.environ["RAY_AIR_NEW_OUTPUT"] == "1"
        assert "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS" not in os.environ
        assert optuna.logging.get_verbosity() == optuna.logging.INFO
        assert logger.filters == filters_before
    finally:
        optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_run_sweep_applies_the_settings_only_while_it_runs() -> None:
    from tlsweep.engine.run import run_sweep

    assert getattr(run_sweep, "__wrapped__", None) is not None  # functools.wraps of the sweep_settings decorator


def test_the_public_api_is_lazy_complete_and_documented() -> None:
    proc = _python("""
        import sys, tlsweep
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "ray", "optuna", "pyarrow")))
    """)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stderr[-2000:]
    assert set(tlsweep.__all__) == {
        "load_spec",
        "run_sweep",
        "load_results",
        "build_report",
        "load_dataset",
        "run_trial",
        "TrialConfig",
        "__version__",
    }
    for name in tlsweep.__all__:
        value = getattr(tlsweep, name)
        if name == "__version__":
            assert isinstance(value, str)
            continue
        doc = value.__doc__ or ""
        assert "Args:" in doc or "Attributes:" in doc, f"tlsweep.{name} does not document its arguments"
        if callable(value) and not isinstance(value, type):
            assert "Returns:" in doc, f"tlsweep.{name} does not document what it returns"
    assert "__version__" in dir(tlsweep) and "run_sweep" in dir(tlsweep)
