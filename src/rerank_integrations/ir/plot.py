"""The evaluation chart: mean of each metric per system (bars), and the distribution of the
per-query deltas against the baseline (one histogram per metric, each system in its bar colour).

The title names what was evaluated (``eval`` passes the data set and the first stage). Given the
comparisons, a bar whose difference from the baseline is significant carries the mark the
table prints (``*``: p < alpha), and the chart says which test and alpha.

Drawn with matplotlib's Agg canvas on a ``Figure`` object (no pyplot, no display, no global
state), so it works on a headless machine and in a thread. The file is rendered in memory and
replaced atomically (:mod:`.outputs`): a failed write leaves the previous chart.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rerank_integrations.errors import RerankInputError
from rerank_integrations.extras import import_extra
from rerank_integrations.ir import EVAL_EXTRA
from rerank_integrations.ir.metrics import Comparison, Evaluation
from rerank_integrations.ir.outputs import write_bytes

__all__ = ["SIGNIFICANT", "check_plot_path", "evaluation_figure", "plot_evaluation"]

SIGNIFICANT = "*"
"""The mark of a significant difference from the baseline, as in the table (:mod:`.report`)."""

_TESTS = {"ttest": "paired t-test", "wilcoxon": "Wilcoxon signed-rank test"}


def check_plot_path(path: str | os.PathLike[str]) -> None:
    """Fail before any work (exit 2) when matplotlib cannot write ``path``'s format, its
    suffix (``eval --plot out.trec`` used to raise matplotlib's ValueError after the
    evaluation). No suffix is matplotlib's default format."""
    import_extra("matplotlib", extra=EVAL_EXTRA, feature="--plot")
    from matplotlib.backend_bases import FigureCanvasBase

    suffix = Path(path).suffix[1:]
    supported = FigureCanvasBase.get_supported_filetypes()
    if suffix and suffix.lower() not in supported:
        raise RerankInputError(
            "--plot", f"{os.fspath(path)}: no chart format {suffix!r} ({', '.join(supported)})"
        )


def _bar_label(value: float, comparison: Comparison | None, alpha: float) -> str:
    p = comparison.p_value if comparison is not None else None
    return f"{value:.3f}" + (SIGNIFICANT if p is not None and p < alpha else "")


def evaluation_figure(
    evaluation: Evaluation,
    baseline: str,
    *,
    title: str = "",
    comparisons: Sequence[Comparison] = (),
    alpha: float = 0.05,
) -> Any:
    """The chart as a matplotlib ``Figure`` (Agg canvas): bars of the means, labelled with
    their value and, when ``comparisons`` say so, the significance mark; the per-query delta
    histograms below."""
    import_extra("matplotlib", extra=EVAL_EXTRA, feature="--plot")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    metrics = evaluation.metrics
    systems = evaluation.systems
    others = [s for s in systems if s != baseline]
    by_key = {(c.system, c.metric): c for c in comparisons if c.baseline == baseline}
    columns = max(1, len(metrics))
    rows = 2 if others else 1
    fig = Figure(figsize=(max(6.0, 3.2 * columns), 3.6 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(rows, columns)

    bars = fig.add_subplot(grid[0, :])
    width = 0.8 / len(systems)
    for i, system in enumerate(systems):
        xs = [m + (i - (len(systems) - 1) / 2) * width for m in range(len(metrics))]
        means = [evaluation.mean(system, metric) for metric in metrics]
        drawn = bars.bar(xs, means, width, label=system, color=f"C{i}")
        labels = [
            _bar_label(value, by_key.get((system, metric)), alpha)
            for value, metric in zip(means, metrics, strict=True)
        ]
        bars.bar_label(drawn, labels=labels, fontsize=7, padding=2)
    bars.set_xticks(range(len(metrics)), metrics)
    bars.set_ylabel("mean over queries")
    top = max(evaluation.mean(s, m) for s in systems for m in metrics)
    bars.set_ylim(0, max(1.0, top) * 1.18)  # room for the labels and the legend
    bars.legend(fontsize=8, loc="upper right", ncols=min(3, len(systems)))
    queries = f"{len(evaluation.query_ids)} queries"
    bars.set_title(f"{title} ({queries})" if title else queries, fontsize=10)
    if comparisons:
        test = _TESTS.get(comparisons[0].test, comparisons[0].test)
        bars.set_xlabel(
            f"{SIGNIFICANT} p < {alpha:g} against {baseline} (two-sided {test}), as in the table",
            fontsize=8,
        )

    for j, metric in enumerate(metrics if others else []):
        ax = fig.add_subplot(grid[1, j])
        data = [evaluation.deltas(system, baseline, metric) for system in others]
        reach = max(0.05, *(abs(x) for d in data for x in d)) * 1.05
        edges = [reach * (k - 10.5) / 10.5 for k in range(22)]  # symmetric; 0 mid-bin
        colors = [f"C{systems.index(system)}" for system in others]  # as in the bars
        ax.hist(
            data,
            bins=edges,
            color=colors,
            histtype="step" if len(others) > 1 else "bar",
            linewidth=1.5,
        )
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.axvline(0.0, color="black", linewidth=0.8)
        ax.set_title(f"{metric}: per-query delta vs {baseline}", fontsize=9)
        ax.set_xlabel("delta")
        ax.set_ylabel("queries")
    return fig


def plot_evaluation(
    evaluation: Evaluation,
    baseline: str,
    path: str | os.PathLike[str],
    *,
    title: str = "",
    comparisons: Sequence[Comparison] = (),
    alpha: float = 0.05,
) -> Path:
    """Write the chart (:func:`evaluation_figure`) to ``path`` (format from the suffix, e.g.
    ``.png``); returns it."""
    fig = evaluation_figure(evaluation, baseline, title=title, comparisons=comparisons, alpha=alpha)
    out = Path(path)
    chart = io.BytesIO()
    # the format from the suffix, as savefig(path) picks it (none: matplotlib's default)
    fig.savefig(chart, format=out.suffix[1:] or None, dpi=110)
    write_bytes(out, chart.getvalue())
    return out
