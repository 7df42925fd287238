"""The report's figures (matplotlib, Agg backend), written as PNG files; per-seed points are always drawn."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tlsweep.report.analysis import Analysis, Family, cell_levels, extra_factors
from tlsweep.report.classes import Confusion, row_normalised
from tlsweep.report.formatting import CORRECTION_NAMES, describe_cell_short, fmt_level, fmt_num
from tlsweep.report.load import Hypothesis, Results, is_accuracy_like
from tlsweep.stats import mean_interval

_PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")


_STYLE = {"font.size": 9, "axes.titlesize": 9.5, "axes.labelsize": 9, "legend.fontsize": 8, "figure.titlesize": 11}


def _subplots(n_rows: int, n_cols: int, figsize: tuple[float, float], **kwargs: Any) -> tuple[Any, Any]:
    """A figure on matplotlib's Agg canvas without pyplot: no global backend or figure state is touched."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.subplots(n_rows, n_cols, **kwargs)


def arm_colors(results: Results) -> dict[str, str]:
    compared = results.arms
    arms = [*compared, *sorted(set(results.trials["arm"].dropna()) - set(compared))]
    return {arm: _PALETTE[i % len(_PALETTE)] for i, arm in enumerate(arms)}


def _metric_label(metric: str) -> str:
    text = metric.replace("_", " ").replace("acc", "accuracy").replace("val ", "validation ")
    return f"{text} (%)" if is_accuracy_like(metric) else text


def _extra_combos(results: Results) -> list[tuple[tuple[str, Any], ...]]:
    names = extra_factors(results)
    levels = cell_levels(results).values()
    combos = []
    for lv in levels:
        combo = tuple((name, lv.get(name)) for name in names)
        if combo not in combos:
            combos.append(combo)
    return combos or [()]


def _matches(levels: dict[str, Any], combo: tuple[tuple[str, Any], ...]) -> bool:
    return all(levels.get(name) == value for name, value in combo)


def _outside_legend(fig, axes) -> None:
    """One legend for the whole figure, below the panels (never over the data)."""
    handles = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=False):
            if label not in handles:
                handles[label] = handle
    if handles:
        width = fig.get_size_inches()[0]
        ncols = max(1, min(len(handles), int(width // 2.9)))
        fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=ncols, frameon=False)


def _combo_text(combo: tuple[tuple[str, Any], ...]) -> str:
    return ", ".join(f"{name} {fmt_level(value)}" for name, value in combo)


def _confirm_rows(results: Results, kind: str = "best") -> pd.DataFrame:
    t = results.trials
    return t[(t["phase"] == "confirm") & (t["config_kind"] == kind) & t["value"].notna()]


def accuracy_vs_fraction(results: Results, path: Path, *, rng: np.random.Generator) -> Path | None:
    """Metric vs train fraction (log x) per arm: per-seed points, mean and 95% bootstrap CI ribbon."""
    rows = _confirm_rows(results)
    if rows.empty:
        return None
    colors = arm_colors(results)
    hyp = results.hypothesis
    arms = [a for a in results.arms if a in set(rows["arm"])]
    epochs_levels = sorted(rows["epochs"].dropna().unique())
    combos = _extra_combos(results)
    fractions = sorted(rows["train_fraction"].dropna().unique())
    fig, axes = _subplots(
        len(combos),
        len(epochs_levels),
        figsize=(3.4 * len(epochs_levels) + 0.6, 2.9 * len(combos) + 0.6),
        squeeze=False,
        sharey=True,
    )
    s = results.scale
    chance = rows["chance"].dropna()
    for (i, combo), (j, n_epochs) in itertools.product(enumerate(combos), enumerate(epochs_levels)):
        ax = axes[i][j]
        panel = rows[rows["epochs"] == n_epochs]
        for name, value in combo:
            panel = panel[panel[name].astype(str) == str(value)]
        for k, arm in enumerate(arms):
            arm_rows = panel[panel["arm"] == arm]
            xs, means, lows, highs = [], [], [], []
            for fraction, group in arm_rows.groupby("train_fraction"):
                values = group["value"].to_numpy(float) * s
                offset = (k - (len(arms) - 1) / 2) * 0.04
                jitter = 10 ** (offset + rng.uniform(-0.012, 0.012, values.size))
                ax.scatter(fraction * jitter, values, s=14, color=colors[arm], alpha=0.55, linewidths=0, zorder=3)
                if not values.size:
                    continue
                interval = mean_interval(values)
                xs.append(fraction)
                means.append(interval.estimate)
                lows.append(interval.low if math.isfinite(interval.low) else interval.estimate)
                highs.append(interval.high if math.isfinite(interval.high) else interval.estimate)
            if xs:
                ax.plot(xs, means, "-o", color=colors[arm], ms=4, lw=1.6, label=f"{arm} (mean, 95% CI)", zorder=4)
                ax.fill_between(xs, lows, highs, color=colors[arm], alpha=0.18, linewidth=0)
        if not chance.empty and results.accuracy_like:
            ax.axhline(float(chance.median()) * s, color="0.5", ls=":", lw=1, label="chance")
        ax.set_xscale("log")
        ax.set_xticks(fractions)
        ax.set_xticklabels([fmt_level(float(f)) for f in fractions])
        ax.minorticks_off()
        ax.set_xlabel("train fraction (log scale)")
        if j == 0:
            ax.set_ylabel(_metric_label(hyp.metric))
        title = f"{fmt_level(n_epochs)} epochs"
        ax.set_title(title + (f" — {_combo_text(combo)}" if combo else ""))
        ax.grid(alpha=0.3)
    _outside_legend(fig, axes)
    fig.suptitle(f"{_metric_label(hyp.metric)} vs training-set size\n(confirm phase, tuned configs; dots = seeds)")
    fig.savefig(path, dpi=110)
    return path


def difference_heatmap(results: Results, family: Family | None, path: Path) -> Path | None:
    """Δ = treated − baseline over train fraction × epochs; * significant, outline = equivalent (caught up)."""
    if family is None or not family.cells:
        return None
    from matplotlib.patches import Rectangle

    hyp = results.hypothesis
    s = results.scale
    combos = _extra_combos(results)
    fractions = sorted({c.levels["train_fraction"] for c in family.cells if c.levels.get("train_fraction") is not None})
    epochs_levels = sorted({c.levels["epochs"] for c in family.cells if c.levels.get("epochs") is not None})
    diffs = [
        abs(c.contrast.difference.estimate * s) for c in family.cells if math.isfinite(c.contrast.difference.estimate)
    ]
    vmax = max(diffs) if diffs else 1.0
    vmax = vmax if vmax > 0 else 1.0
    fig, axes = _subplots(
        1,
        len(combos),
        figsize=(max(6.4 / len(combos), 1.7 * len(fractions) + 2.2) * len(combos), 1.1 * len(epochs_levels) + 2.2),
        squeeze=False,
    )
    image = None
    for ax, combo in zip(axes[0], combos, strict=False):
        grid = np.full((len(epochs_levels), len(fractions)), np.nan)
        for cell in family.cells:
            if (
                not _matches(cell.levels, combo)
                or cell.levels.get("epochs") not in epochs_levels
                or cell.levels.get("train_fraction") not in fractions
            ):
                continue
            r = epochs_levels.index(cell.levels.get("epochs"))
            c = fractions.index(cell.levels.get("train_fraction"))
            diff = cell.contrast.difference
            grid[r, c] = diff.estimate * s
            if not cell.contrast.computable:
                text = "not\ncomputed"
            else:
                mark = "*" if cell.decision.significant else ""
                text = f"{fmt_num(diff.estimate * s, 1, True)}{mark}"
                if math.isfinite(diff.low):
                    text += f"\n[{fmt_num(diff.low * s, 1, True)}, {fmt_num(diff.high * s, 1, True)}]"
            value = grid[r, c]
            dark = math.isfinite(value) and abs(value) > 0.6 * vmax
            ax.text(c, r, text, ha="center", va="center", fontsize=8.5, color="white" if dark else "black")
            if cell.decision.equivalent:
                ax.add_patch(Rectangle((c - 0.47, r - 0.47), 0.94, 0.94, fill=False, ec="#009E73", lw=3, zorder=5))
        image = ax.imshow(grid, cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="auto", origin="lower")
        ax.set_xticks(range(len(fractions)), [fmt_level(float(f)) for f in fractions])
        ax.set_yticks(range(len(epochs_levels)), [fmt_level(e) for e in epochs_levels])
        ax.set_xlabel("train fraction")
        ax.set_ylabel("epochs")
        if combo:
            ax.set_title(_combo_text(combo))
    if image is not None:
        bar = fig.colorbar(image, ax=axes[0].tolist(), shrink=0.9)
        bar.set_label(f"Δ {hyp.metric} ({results.unit})")
    corr = CORRECTION_NAMES[family.correction]
    fig.suptitle(f"{hyp.treated} − {hyp.baseline}: mean difference [95% CI] in {results.unit}")
    fig.supxlabel(
        f"* significant ({corr}, alpha {fmt_level(hyp.alpha)})\ngreen outline = {hyp.baseline} "
        f"caught up: equivalent within ±{fmt_level(hyp.margin * s)} {results.unit} (TOST)",
        fontsize=8.5,
    )
    fig.savefig(path, dpi=110)
    return path


def _cell_grid(results: Results, cells: list[str]) -> tuple[list[list[str | None]], list[str]]:
    """Panels laid out as rows = (extra factors, epochs), columns = train fraction."""
    levels = cell_levels(results)
    fractions = sorted({levels[c].get("train_fraction") for c in cells}, key=lambda v: (v is None, v or 0))
    row_keys = []
    for cell in cells:
        key = tuple((k, v) for k, v in levels[cell].items() if k != "train_fraction")
        if key not in row_keys:
            row_keys.append(key)
    grid: list[list[str | None]] = [[None] * len(fractions) for _ in row_keys]
    for cell in cells:
        key = tuple((k, v) for k, v in levels[cell].items() if k != "train_fraction")
        grid[row_keys.index(key)][fractions.index(levels[cell].get("train_fraction"))] = cell
    return grid, list(levels)


def validation_curves(results: Results, path: Path) -> Path | None:
    """Validation accuracy per epoch per arm (confirm runs of the tuned configs): seeds, median and IQR band."""
    epochs = results.epochs
    confirm = _confirm_rows(results)
    if epochs.empty or confirm.empty:
        return None
    ids = set(confirm["trial_id"])
    data = epochs[epochs["trial_id"].isin(ids) & epochs["val_acc"].notna()]
    if data.empty:
        return None
    colors = arm_colors(results)
    cells = [c for c in cell_levels(results) if c in set(data["cell_id"])]
    grid, _ = _cell_grid(results, cells)
    levels = cell_levels(results)
    n_rows, n_cols = len(grid), len(grid[0])
    fig, axes = _subplots(n_rows, n_cols, figsize=(3.2 * n_cols + 0.4, 2.5 * n_rows + 0.7), squeeze=False, sharey=True)
    for r, c in itertools.product(range(n_rows), range(n_cols)):
        ax = axes[r][c]
        cell = grid[r][c]
        if cell is None:
            ax.set_visible(False)
            continue
        for arm in results.arms:
            rows = data[(data["cell_id"] == cell) & (data["arm"] == arm)]
            if rows.empty:
                continue
            wide = rows.pivot_table(index="epoch", columns="trial_id", values="val_acc") * 100
            for column in wide.columns:
                ax.plot(wide.index, wide[column], color=colors[arm], lw=0.6, alpha=0.3)
            q25, q50, q75 = (wide.quantile(q, axis=1) for q in (0.25, 0.5, 0.75))
            ax.fill_between(wide.index, q25, q75, color=colors[arm], alpha=0.2, linewidth=0)
            ax.plot(wide.index, q50, color=colors[arm], lw=2, label=f"{arm} median (IQR band)")
        ax.set_title(describe_cell_short(levels[cell]))
        ax.set_xlabel("epoch")
        if c == 0:
            ax.set_ylabel("validation accuracy (%)")
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    _outside_legend(fig, axes)
    fig.suptitle("Validation accuracy during training\n(confirm runs of the tuned configs; thin lines = seeds)")
    fig.savefig(path, dpi=110)
    return path


def freeze_depth_figure(results: Results, path: Path) -> Path | None:
    """Metric (confirm, when freeze depth is a factor) or tuning objective (when it was tuned) vs freeze depth."""
    trials = results.trials
    hyp = results.hypothesis
    as_factor = "freeze_depth" in results.cell_factors
    if as_factor:
        rows = _confirm_rows(results)
        y, ylabel = rows["value"], _metric_label(hyp.metric)
        scale = results.scale
    else:
        rows = trials[(trials["phase"] == "tune") & trials["objective"].notna()]
        y, ylabel = rows["objective"], _metric_label(results.objective_metric)
        scale = 100.0 if is_accuracy_like(results.objective_metric) else 1.0
    frozen = rows[rows["freeze_depth"].notna()]
    if frozen["freeze_depth"].nunique() < 2:
        return None
    colors = arm_colors(results)
    group_cols = [n for n in results.cell_factors if n != "freeze_depth" and n in rows.columns]
    groups = list(rows.groupby(group_cols, sort=True))
    n = len(groups)
    n_cols = min(n, 4)
    n_rows = math.ceil(n / n_cols)
    fig, axes = _subplots(n_rows, n_cols, figsize=(3.2 * n_cols + 0.4, 2.6 * n_rows + 0.7), squeeze=False, sharey=True)
    for index, (ax, (key, group)) in enumerate(zip(axes.flat, groups, strict=False)):
        values = y.loc[group.index].astype(float) * scale
        depth_rows = group[group["freeze_depth"].notna()]
        for arm, arm_rows in depth_rows.groupby("arm"):
            v = values.loc[arm_rows.index]
            ax.scatter(
                arm_rows["freeze_depth"].astype(float), v, s=14, alpha=0.6, color=colors.get(arm, "0.3"), linewidths=0
            )
            medians = v.groupby(arm_rows["freeze_depth"]).median()
            ax.plot(
                medians.index.astype(float),
                medians.values,
                "-o",
                ms=3,
                color=colors.get(arm, "0.3"),
                label=f"{arm} (median)",
            )
        unfrozen = group[group["freeze_depth"].isna()]
        for arm, arm_rows in unfrozen.groupby("arm"):
            level = float(values.loc[arm_rows.index].median())
            ax.axhline(level, color=colors.get(arm, "0.3"), ls="--", lw=1.2, label=f"{arm} (median, no freezing)")
        key = key if isinstance(key, tuple) else (key,)
        ax.set_title(describe_cell_short(dict(zip(group_cols, key, strict=False))))
        ax.set_xlabel("freeze depth")
        if index % n_cols == 0:
            ax.set_ylabel(ylabel)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    _outside_legend(fig, axes)
    tuned = results.spec is not None and "freeze_depth" in results.spec.design.tune
    source = (
        "confirm runs, freeze depth a factor"
        if as_factor
        else "tuning trials, freeze depth tuned"
        if tuned
        else "tuning trials, freeze depth fixed per arm"
    )
    fig.suptitle(
        f"Accuracy vs freeze depth ({source}; dots = runs)\n"
        "freeze depth 0 = full fine-tuning, 1 = stem frozen, …, 5 = linear probe"
    )
    fig.savefig(path, dpi=110)
    return path


def tuning_curves(results: Results, analysis: Analysis, path: Path) -> Path | None:
    """Expected best validation score after k trials (U-estimator, 95% bootstrap band) and each trial's score."""
    if not analysis.tuning:
        return None
    colors = arm_colors(results)
    scale = 100.0 if is_accuracy_like(results.objective_metric) else 1.0
    cells = list(dict.fromkeys(t.cell_id for t in analysis.tuning))
    grid, _ = _cell_grid(results, cells)
    levels = cell_levels(results)
    n_rows, n_cols = len(grid), len(grid[0])
    fig, axes = _subplots(n_rows, n_cols, figsize=(3.2 * n_cols + 0.4, 2.6 * n_rows + 0.7), squeeze=False, sharey=True)
    for r, c in itertools.product(range(n_rows), range(n_cols)):
        ax = axes[r][c]
        cell = grid[r][c]
        if cell is None:
            ax.set_visible(False)
            continue
        for k, tuning in enumerate(t for t in analysis.tuning if t.cell_id == cell):
            color = colors.get(tuning.arm, "0.3")
            curve = tuning.curve
            if curve is None:
                continue
            ax.plot(
                curve.k,
                curve.expected * scale,
                "-",
                color=color,
                lw=1.8,
                label=f"{tuning.arm}: expected best of k (95% band)",
            )
            if np.all(np.isfinite(curve.low)):
                ax.fill_between(curve.k, curve.low * scale, curve.high * scale, color=color, alpha=0.18, linewidth=0)
            trial_k = np.arange(1, tuning.values.size + 1) + (k - 0.5) * 0.12
            ax.scatter(
                trial_k,
                tuning.values * scale,
                s=12,
                color=color,
                alpha=0.55,
                linewidths=0,
                zorder=3,
                label=f"{tuning.arm}: trial i (x = i)",
            )
            if math.isfinite(tuning.recipe_value):
                ax.scatter(
                    [1 + (k - 0.5) * 0.12],
                    [tuning.recipe_value * scale],
                    marker="D",
                    s=28,
                    facecolors="none",
                    edgecolors=color,
                    zorder=4,
                    label=f"{tuning.arm}: fixed recipe",
                )
        ax.set_title(describe_cell_short(levels[cell]))
        ax.set_xlabel("tuning budget k (trials)")
        if c == 0:
            ax.set_ylabel(_metric_label(results.objective_metric))
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    _outside_legend(fig, axes)
    fig.suptitle(
        "Tuning curves: expected best validation score after k trials\n(U-estimator with 95% bootstrap "
        "band; dots = single trials; diamond = fixed recipe)"
    )
    fig.savefig(path, dpi=110)
    return path


def write_figures(
    results: Results, analysis: Analysis, directory: Path, *, rng: np.random.Generator
) -> dict[str, Path]:
    """Write every figure that has data; returns name → path (missing names = nothing to plot)."""
    import matplotlib

    directory.mkdir(parents=True, exist_ok=True)
    with matplotlib.rc_context(_STYLE):
        made = _draw_all(results, analysis, directory, rng=rng)
    return {name: path for name, path in made.items() if path is not None}


def confusion_name(arm: str) -> str:
    return f"confusion_{arm}"


def write_confusion_figures(
    confusions: list[Confusion], class_names: list[str], cell_text: str, directory: Path
) -> dict[str, Path]:
    """One row-normalised confusion-matrix figure per arm (``confusion_<arm>.png``); returns name → path."""
    import matplotlib

    directory.mkdir(parents=True, exist_ok=True)
    with matplotlib.rc_context(_STYLE):
        return {
            confusion_name(c.arm): confusion_figure(
                c, class_names, cell_text, directory / f"{confusion_name(c.arm)}.png"
            )
            for c in confusions
        }


def confusion_figure(confusion: Confusion, class_names: list[str], cell_text: str, path: Path) -> Path:
    """Share of each true class (row) predicted as each class (column), summed over seeds; the diagonal is the
    per-class accuracy. Shares are written in the squares up to 20 classes."""
    shares = row_normalised(confusion.counts) * 100
    size = len(class_names)
    side = min(11.0, max(3.6, 0.42 * size + 2.2))
    fig, axes = _subplots(1, 1, figsize=(side + 1.0, side), squeeze=False)
    ax = axes[0][0]
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=100, aspect="equal")
    if size <= 20:
        for (r, c), value in np.ndenumerate(shares):
            if math.isfinite(value):
                ax.text(
                    c,
                    r,
                    f"{value:.0f}",
                    ha="center",
                    va="center",
                    fontsize=7.5,
                    color="white" if value > 60 else "black",
                )
    for r in np.flatnonzero(~np.isfinite(shares).all(axis=1)):
        ax.text((size - 1) / 2, r, "no test images", ha="center", va="center", fontsize=7.5, color="#777")
    ticks = range(size)
    labels = [name if len(name) <= 14 else name[:13] + "…" for name in class_names]
    ax.set_xticks(ticks, labels, rotation=90 if size > 4 else 0)
    ax.set_yticks(ticks, labels)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    bar = fig.colorbar(image, ax=ax, shrink=0.85)
    bar.set_label("% of the true class's test images")
    ax.set_title(
        f"{confusion.arm}: test confusion, row-normalised\n{cell_text}, {confusion.seeds} confirm seed(s) summed"
    )
    fig.savefig(path, dpi=110)
    return path


def heatmap_name(results: Results, comparison: Hypothesis) -> str:
    """The figure name of a comparison's difference heatmap: ``difference_heatmap`` when it is the only one."""
    if len(results.comparisons) <= 1:
        return "difference_heatmap"
    return f"difference_heatmap_{comparison.treated}_vs_{comparison.baseline}"


def _draw_all(
    results: Results, analysis: Analysis, directory: Path, *, rng: np.random.Generator
) -> dict[str, Path | None]:
    heatmaps = {}
    for part in analysis.comparisons or []:
        name = heatmap_name(results, part.hypothesis)
        heatmaps[name] = difference_heatmap(
            results.for_comparison(part.hypothesis), part.primary, directory / f"{name}.png"
        )
    if not analysis.comparisons:
        heatmaps["difference_heatmap"] = difference_heatmap(
            results, analysis.primary, directory / "difference_heatmap.png"
        )
    return {
        "accuracy_vs_fraction": accuracy_vs_fraction(results, directory / "accuracy_vs_fraction.png", rng=rng),
        **heatmaps,
        "validation_curves": validation_curves(results, directory / "validation_curves.png"),
        "freeze_depth": freeze_depth_figure(results, directory / "freeze_depth.png"),
        "tuning_curves": tuning_curves(results, analysis, directory / "tuning_curves.png"),
    }
