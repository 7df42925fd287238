"""tlsweep: when does transfer learning beat training from scratch? Sweeps on Ray Tune, statistics from Parquet.

The public API, imported lazily (``import tlsweep`` loads none of torch, Ray or Optuna)::

    import tlsweep

    spec = tlsweep.load_spec("sweeps/demo.yaml", ["confirm.seeds=3"])   # validated SweepSpec
    outcome = tlsweep.run_sweep(spec)                                   # tune -> confirm -> Parquet -> report
    results = tlsweep.load_results(outcome.location)                    # trials/epochs as pandas DataFrames
    report = tlsweep.build_report(outcome.location)                     # report.md, report.html, figures/

    data = tlsweep.load_dataset(spec.dataset, image_size=spec.model.image_size)   # decoded once, cached
    config = tlsweep.TrialConfig(backbone="resnet_tiny", epochs=2)      # one run, plain PyTorch, no Ray
    result = tlsweep.run_trial(config, data)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tlsweep.lazy import lazy_exports

__version__ = "0.2.0"

_EXPORTS: dict[str, str] = {
    "load_spec": "tlsweep.spec_load",
    "run_sweep": "tlsweep.engine.run",
    "load_results": "tlsweep.report.load",
    "build_report": "tlsweep.report.build",
    "load_dataset": "tlsweep.data.loading",
    "run_trial": "tlsweep.training.loop",
    "TrialConfig": "tlsweep.training.config",
}

__all__ = [
    "TrialConfig",
    "__version__",
    "build_report",
    "load_dataset",
    "load_results",
    "load_spec",
    "run_sweep",
    "run_trial",
]

if TYPE_CHECKING:
    from tlsweep.data.loading import load_dataset
    from tlsweep.engine.run import run_sweep
    from tlsweep.report.build import build_report
    from tlsweep.report.load import load_results
    from tlsweep.spec_load import load_spec
    from tlsweep.training.config import TrialConfig
    from tlsweep.training.loop import run_trial


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals(), __all__)
