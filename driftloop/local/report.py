"""The simulation's HTML report: one self-contained page with its pictures embedded."""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path

from driftloop.config import DriftConfig
from driftloop.layout import STAGE_NAMES
from driftloop.local.measured import RUNS_PER_MONTH, DriftPower
from driftloop.local.outcome import ACTED_ON_POINTS, HARM_POINTS, RunRow, SimulationResult, criterion
from driftloop.stores.objects import ObjectNotFound, ObjectStore

SHAP_GRID_FILE = "grid.png"


def _png(figure: object) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")  # type: ignore[attr-defined]
    return base64.b64encode(buffer.getvalue()).decode()


def _drift_figure(rows: list[RunRow]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.4))
    x = range(len(rows))
    ax.semilogy(x, [max(r.statistic, 1e-300) for r in rows], "o-",
                label="statistic: smallest feature p-value (weighted for predictions)")
    ax.semilogy(x, [r.threshold for r in rows], "k--", label="corrected threshold")
    for i, r in enumerate(rows):
        if r.drift:
            ax.annotate("drift", (i, max(r.statistic, 1e-300)), textcoords="offset points", xytext=(0, 8),
                        ha="center", color="crimson")
    ax.set_xticks(list(x), [f"{r.time}\n{r.test_set}" for r in rows], fontsize=8)
    ax.set_ylabel("p-value (log)")
    ax.set_title("Drift statistic against its threshold, per hourly run (below the line = drift)")
    ax.legend(fontsize=8)
    encoded = _png(fig)
    plt.close(fig)
    return encoded


@dataclass(frozen=True)
class RetrainMark:
    run: int  # index of the hourly run that started the retrain: the mark sits on it
    label: str
    promoted: bool


def retrain_marks(rows: list[RunRow]) -> list[RetrainMark]:
    return [RetrainMark(i, f"→ {r.retrained_on}", bool(r.promoted)) for i, r in enumerate(rows) if r.retrained]


def _accuracy_figure(rows: list[RunRow]) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.4))
    x = list(range(len(rows)))
    accuracy = [100 * r.accuracy if r.accuracy is not None else float("nan") for r in rows]
    ax.plot(x, accuracy, "o-", label="accuracy of the serving model")
    # Estimates outside their calibration's domain are not numbers to believe: grey crosses, no interval.
    estimated = [r.accuracy_estimate if r.accuracy_estimate and not r.accuracy_estimate.outside_domain else None
                 for r in rows]
    if any(e is not None for e in estimated):
        nan = float("nan")
        ax.fill_between(x, [100 * e.lower if e else nan for e in estimated],
                        [100 * e.upper if e else nan for e in estimated], color="tab:orange", alpha=0.18,
                        label="its 95 % interval")
        ax.plot(x, [100 * e.estimate if e else nan for e in estimated], "s--", color="tab:orange", markersize=4,
                label="estimated without labels")
    unreliable = [(i, r.accuracy_estimate) for i, r in enumerate(rows)
                  if r.accuracy_estimate and r.accuracy_estimate.outside_domain]
    if unreliable:
        ax.scatter([i for i, _ in unreliable], [100 * e.estimate for _, e in unreliable], marker="x", color="grey",
                   label="estimate outside its calibration's domain (unreliable)")
    # Each retrain is marked at the run that started it, with a short horizontal label beside it.
    marks = retrain_marks(rows)
    for promoted, marker, colour, label in ((True, "^", "green", "retrained, promoted"),
                                            (False, "v", "grey", "retrained, champion kept")):
        chosen = [m for m in marks if m.promoted == promoted]
        if chosen:
            ax.scatter([m.run for m in chosen], [accuracy[m.run] for m in chosen], marker=marker, s=90,
                       color=colour, zorder=3, label=label)
    for m in marks:
        ax.annotate(m.label, (m.run, accuracy[m.run]), textcoords="offset points",
                    xytext=(0, -16 if m.run % 2 else 10), ha="center", fontsize=7,
                    color="green" if m.promoted else "grey")
    lowest = ([a for a in accuracy if a == a] + [100 * e.lower for e in estimated if e is not None]
              + [100 * e.estimate for _, e in unreliable])
    ax.set_ylim(min(lowest or [0]) - 12, 108)
    ax.legend(fontsize=7, loc="lower left")
    ax.set_xticks(x, [f"{r.time}\n{r.test_set}" for r in rows], fontsize=8)
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Accuracy per hourly run (labels known only because this is a simulation) and its label-free "
                 "estimate", fontsize=10)
    encoded = _png(fig)
    plt.close(fig)
    return encoded


def _matrix_figure(matrix: dict[str, dict[str, dict[str, float]]]) -> str:
    import matplotlib.pyplot as plt
    import numpy as np

    labels = list(matrix)
    values = np.array([[100 * matrix[m][s]["accuracy"] for s in STAGE_NAMES] for m in labels])
    fig, ax = plt.subplots(figsize=(9, 0.8 + 0.6 * len(labels)))
    image = ax.imshow(values, cmap="RdYlGn", vmin=max(0.0, float(values.min()) - 5), vmax=100, aspect="auto")
    for i in range(len(labels)):
        for j in range(len(STAGE_NAMES)):
            ax.text(j, i, f"{values[i, j]:.1f}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(STAGE_NAMES)), STAGE_NAMES, fontsize=8)
    ax.set_yticks(range(len(labels)), [f"trained on {m}" for m in labels], fontsize=8)
    ax.set_title("Accuracy (%) of each model on each stage's test set")
    fig.colorbar(image, ax=ax)
    encoded = _png(fig)
    plt.close(fig)
    return encoded


def _shap_samples(rows: list[RunRow], objects: ObjectStore) -> list[tuple[str, str]]:
    """The SHAP grid of the first run and of every run that drifted."""
    chosen = [rows[0]] + [r for r in rows[1:] if r.drift] if rows else []
    pictures = []
    for row in chosen:
        try:
            data = objects.get_bytes(f"{objects.key_from_uri(row.explanations)}/{SHAP_GRID_FILE}")
        except ObjectNotFound:
            continue
        pictures.append((f"{row.time} on {row.test_set} (model trained on {row.model_trained_on})",
                         base64.b64encode(data).decode()))
    return pictures


def estimate_cell(row: RunRow) -> str:
    """The run's label-free estimate and its interval; ``-`` without one; outside its calibration's
    domain the mark and why, not the number."""
    estimate = row.accuracy_estimate
    if estimate is None:
        return "-"
    return f"{estimate.shown()} ({estimate.why_unreliable()})" if estimate.outside_domain else estimate.shown()


def _methods(rows: list[RunRow]) -> str:
    names = sorted({r.accuracy_estimate.method for r in rows if r.accuracy_estimate is not None})
    return ", ".join(names) or "no run had a calibrated model"


def _table(headers: list[str], body: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in body)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _percent(value: float) -> str:
    return f"{100 * value:.0f} %"


def mild_rows(rows: list[RunRow], power: DriftPower | None) -> list[list[str]]:
    """The runs 5-10 points below their model's own stage, each with the benchmark's power for its batch size."""
    body = []
    for r in criterion(rows).mild:
        cell_power = band_power = "not measured (bench/results/accuracy_estimation.json missing)"
        if power is not None:
            size = power.nearest_size(r.n_images)
            cell = power.cell(r.model_trained_on.split("#")[0], r.test_set)
            band = power.band(100 * HARM_POINTS, 100 * ACTED_ON_POINTS, size)
            cell_power = "-" if cell is None else (f"{_percent(cell.flagged[size])} of {cell.n_batches[size]} "
                                                   f"batches of {size} ({cell.drop_points:.1f} points on average)")
            band_power = "-" if band.power is None else f"{_percent(band.power)} over {len(band.cells)} cells"
        body.append([r.time, r.test_set, r.model_trained_on, f"{100 * (r.accuracy_drop or 0):.1f}",
                     "TRUE" if r.drift else "false", "yes" if r.retrained else "no", cell_power, band_power])
    return body


def _criterion_section(rows: list[RunRow], drift: DriftConfig) -> str:
    """The default run's criterion (issue 14), this run's verdict on it, and the false-alarm budget."""
    judged = criterion(rows)
    power = DriftPower.load()
    on_original = ", ".join(f"{r.time} (model trained on {r.model_trained_on})" for r in judged.retrained_on_original)
    missed = ", ".join(f"{r.time} {r.test_set} ({100 * (r.accuracy_drop or 0):.1f} points)"
                       for r in judged.harmful_not_acted_on)
    items = [
        f"Retrains on Original while an Original model served: {on_original or 'none'}.",
        f"Runs {100 * ACTED_ON_POINTS:.0f} points or more below the serving model's accuracy on its own stage: "
        f"{len(judged.harmful)}, of which acted on (a retrain started): "
        f"{len(judged.harmful) - len(judged.harmful_not_acted_on)}" + (f"; not acted on: {missed}" if missed else "")
        + ".",
    ]
    if power is not None:
        size = power.nearest_size(rows[0].n_images if rows else 42)
        fpr, batches = power.false_positive_rate(size)
        note = "" if power.measured_for(drift) else f" (measured with {power.drift}, not this run's detector)"
        items.append(f"False alarms: the benchmark's rule flags {100 * fpr:.1f} % of batches of {size} held-out images "
                     f"of a model's own stage ({batches:,} batches){note}: at hourly runs, "
                     f"{fpr * RUNS_PER_MONTH:.0f} needless retrains in a {RUNS_PER_MONTH}-run month.")
    listed = (_table(["Time", "Test set", "Model trained on", "Drop (points)", "Drift", "Retrained",
                      "Measured power, this model and stage", f"Measured power, all {100 * HARM_POINTS:.0f}–"
                      f"{100 * ACTED_ON_POINTS:.0f}-point cells"], mild_rows(rows, power))
              if judged.mild else "<p>No run lost 5–10 points.</p>")
    bullets = "".join(f"<li>{html.escape(item)}</li>" for item in items)
    return (f"<h2>What the rule could see</h2><p>The default run's criterion: no retrain on Original while the "
            f"Original model serves, and every run {100 * ACTED_ON_POINTS:.0f} points or more below the serving "
            f"model's accuracy on its own stage is acted on. {'It holds.' if judged.holds else 'It does NOT hold.'}"
            f"</p><ul>{bullets}</ul><p>Runs {100 * HARM_POINTS:.0f}–{100 * ACTED_ON_POINTS:.0f} points below: a "
            "single test on a small batch cannot reliably see 2–4 more wrong images; the share of such batches "
            "the benchmark's rule flags (bench/results/accuracy_estimation.json):</p>" + listed)


def write_report(result: SimulationResult, objects: ObjectStore, path: Path,
                 drift: DriftConfig | None = None) -> None:
    rows = result.runs
    timeline = _table(
        ["Time", "Input test set", "Detector trained on", "Drift", "Statistic", "Threshold", "Retrained",
         "Accuracy", "Estimated (95 % interval)", "Loss", "Images (skipped)"],
        [[r.time, r.test_set, r.reference_trained_on, "TRUE" if r.drift else "false", f"{r.statistic:.3g}",
          f"{r.threshold:.3g}",
          (f"on {r.retrained_on}, " + ("promoted" if r.promoted else "champion kept")) if r.retrained else "-",
          "-" if r.accuracy is None else f"{100 * r.accuracy:.1f}%", estimate_cell(r),
          "-" if r.loss is None else f"{r.loss:.3f}", f"{r.n_images} ({r.n_skipped})"] for r in rows],
    )
    matrix = _table(
        ["Model trained on", "Metric", *STAGE_NAMES],
        [[label, metric, *(f"{100 * v[s][metric]:.1f}" if metric == "accuracy" else f"{v[s][metric]:.3f}"
                           for s in STAGE_NAMES)]
         for label, v in result.matrix.items() for metric in ("accuracy", "loss")],
    )
    shap = "".join(
        f"<figure><img src='data:image/png;base64,{data}' alt='SHAP overlays'>"
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        for caption, data in _shap_samples(rows, objects)
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>driftloop simulation</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1000px; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.85rem; margin: 1rem 0; }}
th, td {{ border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: right; }}
th {{ background: #f3f3f3; }} img {{ max-width: 100%; }} figure {{ margin: 1rem 0; }}
</style></head><body>
<h1>driftloop: seven-stage drift simulation</h1>
<p>The train pipeline ran once on the Original set, then the serve pipeline ran hourly on the test sets
Original → Stage-1 → … → Noisy → Original. Drift on stage k's test set (or, under the default rule
<code>drift_or_harm</code>, an estimated drop of the policy's X points) retrains on stage k's train and
validation sets; a retrained model replaces the current one only if it is at least as accurate on that
validation set.</p>
<h2>Timeline</h2>{timeline}
<p>"Estimated" is the serving model's accuracy on the batch as the serve run estimated it without labels
({html.escape(_methods(rows))}, calibrated on the model's validation set), with its 95 % interval for a
batch of that size. It follows the accuracy where a shift leaves the model unsure;
it over-estimates a model that is confidently wrong (docs/benchmarks.md, section 6). Where the model's mix of
predicted classes moved further from its validation set's than sampling explains, the batch is outside what
the calibration covered and the estimate reads "unreliable" (a grey cross in the figure).</p>
<img src="data:image/png;base64,{_drift_figure(rows)}" alt="drift statistic per hour">
<img src="data:image/png;base64,{_accuracy_figure(rows)}" alt="accuracy per hour">
{_criterion_section(rows, drift or DriftConfig())}
<h2>Every model on every test set</h2>
<img src="data:image/png;base64,{_matrix_figure(result.matrix)}" alt="accuracy matrix">{matrix}
<h2>Explanations (SHAP)</h2>{shap or "<p>No explanation pictures were found.</p>"}
</body></html>
"""
    path.write_text(page)
