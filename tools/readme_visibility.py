"""The figures on what the default drift rule can and cannot see, rendered from the benchmark's result file.

``python -m tools.readme_visibility`` rewrites the section between the visibility markers of docs/drift.md
(``--doc`` names another file); a test keeps the committed text equal to what this renders.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from driftloop.config import DecisionPolicy, DriftConfig
from driftloop.local.measured import DETECTION_SHARE, RESULTS_FILE, RUNS_PER_MONTH, SEED_BATCH_SIZE, DriftPower
from driftloop.ml.accuracy_estimate import DEFAULT_METHOD, DOMAIN_ALPHA, MODELS_METHODS
from tools.sections import replace_section

DOC: Final = Path(__file__).resolve().parents[1] / "docs" / "drift.md"
BEGIN: Final = "<!-- visibility:begin -->"
END: Final = "<!-- visibility:end -->"


def _pct(value: float) -> str:
    return f"{100 * value:.0f} %"


def band_table(power: DriftPower, edges: Sequence[float] = (-100, 5, 10, 15, 20, 101)) -> list[str]:
    """Markdown rows: per band of the true accuracy drop, the shifted cells and their mean flag rate per batch size."""
    head = "| accuracy drop (points) | cells | " + " | ".join(f"flagged, batch {b}" for b in power.batch_sizes) + " |"
    lines = [head, "|---|---|" + "---|" * len(power.batch_sizes)]
    for low, high in zip(edges, edges[1:], strict=False):
        bands = [power.band(low, high, b) for b in power.batch_sizes]
        label = f"< {high:g} (harmless)" if low <= -100 else f"{low:g}–{high:g}" if high <= 100 else f"≥ {low:g}"
        shares = " | ".join("-" if b.power is None else _pct(b.power) for b in bands)
        lines.append(f"| {label} | {len(bands[0].cells)} | {shares} |")
    return lines


def render_readme_section(power: DriftPower, config: DriftConfig, batch_size: int) -> str:
    """docs/drift.md's numbers on what the default rule can see, from the benchmark's result file."""
    size = power.nearest_size(batch_size)
    fpr, batches = power.false_positive_rate(size)
    caught = power.smallest_drop_caught(size)
    mild = power.band(5, 10, size)
    source = "bench/results/accuracy_estimation.json"
    for_config = ("" if power.measured_for(config) else
                  f" **These figures were measured with {power.drift}, not the configured detector.**")
    caught_text = ("no drop is caught that often" if caught is None else
                   f"**{caught.drop_points:.1f} points**: every model × stage cell that loses at least that much "
                   f"(the smallest: the {caught.model} model on {caught.test_set}) is flagged in ≥ "
                   f"{_pct(DETECTION_SHARE)} of its {size}-image batches")
    mild_text = ("no cell" if mild.power is None else
                 f"{len(mild.cells)} cells, flagged in {_pct(mild.power)} of their batches on average "
                 f"(from {_pct(min(c.flagged[size] for c in mild.cells))} to "
                 f"{_pct(max(c.flagged[size] for c in mild.cells))})")
    return "\n".join([
        BEGIN,
        f"Rendered from `{source}` (measured {power.date}; data seeds {', '.join(map(str, power.seeds))}; "
        f"7 models × 7 stages) by `python -m tools.readme_visibility`, for the configured detector "
        f"(`{config.features}` features, {config.correction}, α = {config.p_val:g}), batches of {batch_size} "
        f"and hourly runs.{for_config}",
        "",
        f"- **False alarms**: on held-out images of the model's own stage the rule flags "
        f"{100 * fpr:.1f} % of {size}-image batches ({batches:,} batches). At one run an hour "
        f"({RUNS_PER_MONTH} a month) that is **{fpr * RUNS_PER_MONTH:.0f} needless retrains a month** on "
        "data that did not change (in simulation mode; on a batch that is not a stage's test set the same "
        "flag is an alarm without a retrain). A cool-down (`cooldown_runs`) spaces the retrains out, not the alarms.",
        f"- **The smallest drop caught in ≥ {_pct(DETECTION_SHARE)} of batches**: {caught_text}. Drops of "
        f"5–10 points: {mild_text}.",
        "",
        *band_table(power),
        "",
        *_estimate_lines(power, size),
        END,
    ])


POLICIES_SHOWN: Final = ("drift", "harm(atc_ne, 5)", "harm(atc_ne, 10)", "drift_and_harm(atc_ne, 5)",
                         "drift_and_harm(agreement, 5)", "drift_or_harm(atc_ne, 5)", "drift_or_harm(atc_ne, 10)")


def default_policy_name(policy: DecisionPolicy) -> str:
    """The benchmark's name of the configured rule: ``drift``, or e.g. ``drift_or_harm(atc_ne, 10)``."""
    if policy.rule == "drift":
        return policy.rule
    return f"{policy.rule}({DEFAULT_METHOD}, {policy.harm_threshold_points:g})"


def _domain_line(power: DriftPower, size: int) -> str:
    found = power.domain_at(size, DOMAIN_ALPHA)

    def rate(side: str, far: int) -> str:
        return f"{_pct(found[f'{side}_off_{far}_rate'])}"

    return (f"- **Its validity domain** (the predicted class mix against validation's, α = {DOMAIN_ALPHA:g}): "
            f"{_pct(found['marked_share'])} of the {size}-image estimates are marked unreliable. A marked one is "
            f"more than 10 points off in {rate('marked', 10)} of batches (more than 20 in {rate('marked', 20)}), "
            f"an unmarked one in {rate('unmarked', 10)} ({rate('unmarked', 20)}): "
            f"{found['unmarked']['off_20']:,} of {found['marked']['off_20'] + found['unmarked']['off_20']:,} "
            "estimates more than 20 points off are left unmarked.")


def _models_lines(power: DriftPower, size: int) -> list[str]:
    """The estimate from the loop's own models (issue 24, item 3), when the file has it."""
    if not power.marks:
        return []
    best = power.best_of(MODELS_METHODS, 200)
    others = ", ".join(f"`{m}` {100 * power.estimation_error(m)['mae_200']:.1f}" for m in MODELS_METHODS
                       if m != best["method"])
    lines = [
        f"- **From the loop's own models** (the serving model's agreement with the {power.earlier_champions} champions "
        f"before it, on the batch and on its validation set): the best, `{best['method']}`, errs by "
        f"**{100 * best['mae_200']:.1f} points** at 200 images ({100 * best['mae_shifted_200']:.1f} on the shifted "
        f"cells, goal ≤ 5; `{DEFAULT_METHOD}` {100 * power.estimation_error(DEFAULT_METHOD)['mae_shifted_200']:.1f}), "
        f"{100 * best[f'mae_{size}']:.1f} at {size}; the others at 200: {others}."]
    if power.switched_method:
        switched = power.estimation_error(power.switched_method)
        lines.append(
            f"  - `{power.switched_method}` (the default estimate inside its domain, `{best['method']}` outside): "
            f"**{100 * switched['mae_200']:.1f} points** at 200 images ({100 * switched['mae_shifted_200']:.1f} "
            f"shifted, {100 * switched['mae_own_200']:.1f} on the own stage), {100 * switched[f'mae_{size}']:.1f} "
            f"at {size}.")
        mark = power.fewest_unmarked(power.switched_method, size)
        if mark is not None:
            lines.append(
                f"  - Marked when *{mark['mark'].split(': ', 1)[1]}*: {_pct(mark['marked_share'])} of the {size}-image "
                f"estimates marked; {mark['unmarked']['off_20']:,} of "
                f"{mark['marked']['off_20'] + mark['unmarked']['off_20']:,} more than 20 points off left unmarked "
                f"(an unmarked one is more than 10 points off in {_pct(mark['unmarked_off_10_rate'])}).")
    return lines


def _estimate_lines(power: DriftPower, size: int) -> list[str]:
    error = power.estimation_error(DEFAULT_METHOD)
    agreement = power.estimation_error("agreement")
    lines = [
        f"- **The estimate** (`{DEFAULT_METHOD}`, calibrated on the model's {power.validation_images} validation "
        "images): mean absolute error "
        f"**{100 * error[f'mae_{size}']:.1f} points** at {size} images ({100 * error['mae_200']:.1f} at 200); "
        f"{100 * error[f'mae_own_{size}']:.1f} on the model's own stage, {100 * error[f'mae_shifted_{size}']:.1f} "
        f"under shift; on average it is {100 * error[f'bias_{size}']:.1f} points too high. Its 95 % interval "
        f"is {100 * error[f'width_{size}']:.0f} points wide at {size} images and covers the batch's accuracy in "
        f"{_pct(error[f'coverage_{size}'])} of batches ({_pct(error[f'coverage_own_{size}'])} on the own stage). "
        f"Two copies of the model agreeing (`agreement`, needs a second training) err by "
        f"{100 * agreement[f'mae_{size}']:.1f} points.",
        _domain_line(power, size),
        *_models_lines(power, size),
        "",
        f"| rule, batches of {size} (the default in bold) | harmful batches (≥ 10 points) missed | harmless batches "
        "(< 5 points) retrained on | retrains per 7 batches | Original model on Original: retrained |",
        "|---|---|---|---|---|",
    ]
    default = default_policy_name(DecisionPolicy())
    rules = POLICIES_SHOWN + ((f"drift_or_harm({power.switched_method}, 10)",) if power.switched_method else ())
    for name in rules:
        row = power.policy(name, size)
        shown = f"**`{name}`**" if name == default else f"`{name}`"
        lines.append(f"| {shown} | {_pct(row['missed_rate'])} | {_pct(row['needless_rate'])} | "
                     f"{row['retrains_per_cycle']:.2f} | {row['original_flagged']} of {row['original_batches']} |")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.readme_visibility", description=__doc__)
    parser.add_argument("--doc", type=Path, default=DOC)
    args = parser.parse_args(argv)
    power = DriftPower.load()
    if power is None:
        parser.error(f"{RESULTS_FILE} is missing: run `python -m bench accuracy_estimation` first")
    section = render_readme_section(power, DriftConfig(), SEED_BATCH_SIZE)
    args.doc.write_text(replace_section(args.doc.read_text(), section, BEGIN, END))
    print(f"wrote the figures of {RESULTS_FILE.name} into {args.doc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
