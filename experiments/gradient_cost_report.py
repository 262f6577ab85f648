"""The outputs of the cost experiment (``experiments.gradient_cost``): fitted slopes, the
Markdown tables and the log-log figure, from the records of ``experiments.gradient_cost_timing``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from experiments import harness
from experiments.gradient_cost_methods import GRADIENT_METHODS, METHODS, STEP_METHODS
from nica import GRADIENTS
from nica.core.gradients import DEFAULT_GRADIENT


def _by_dim(records: Sequence[dict]) -> dict[int, dict[str, float | None]]:
    table: dict[int, dict[str, float | None]] = {}
    for r in records:
        table.setdefault(r["dim"], {})[r["method"]] = r["median_s"]
    return table


def _ratio(num: float | None, den: float | None) -> str:
    return "-" if num is None or den is None else f"{num / den:.2f}"


def milliseconds(value: float | None) -> str:
    """``value`` seconds in milliseconds with 3 decimals; ``"skipped"`` for ``None``."""
    return "skipped" if value is None else f"{value * 1e3:.3f}"


def fitted_slopes(records: Sequence[dict], fit_from: int) -> dict[str, dict]:
    """Least-squares slope of ``log(median_s)`` on ``log(D)`` per row over ``D >= fit_from``.

    Returns:
      ``method -> {"slope", "dims": [first, last], "points"}`` for rows with >= 2 points.
    """
    slopes = {}
    for method in METHODS:
        pts = [
            (r["dim"], r["median_s"])
            for r in records
            if r["method"] == method and r["dim"] >= fit_from and r["median_s"] is not None
        ]
        if len(pts) >= 2:
            d, t = np.log(np.array(pts, float)).T
            slope = float(np.polyfit(d, t, 1)[0])
            slopes[method] = {"slope": slope, "dims": [pts[0][0], pts[-1][0]], "points": len(pts)}
    return slopes


#: Ratio columns of the step table: (header, numerator, denominator).
STEP_RATIOS = (
    ("default / backprop", "step:default", "step:backprop"),
    *(
        (f"{name} / backprop", f"step:{name}", "step:backprop")
        for name in GRADIENTS
        if name not in ("ordinary", "autodiff")
    ),
    ("ordinary / default", "step:ordinary", "step:default"),
)


def to_markdown(records: Sequence[dict], *, fit_from: int) -> str:
    """Markdown: gradient-only times and ratios, step times, step ratios, fitted slopes."""
    first, table = records[0], sorted(_by_dim(records).items())
    grad_rows = (*GRADIENT_METHODS, "backprop")
    ratios = ("relative / backprop", "ordinary / relative", "autodiff / relative")
    grad_cells = []
    for dim, t in table:
        rel, ordi, auto, bp = (t.get(m) for m in grad_rows)
        times = [milliseconds(v) for v in (rel, ordi, auto, bp)]
        grad_cells.append((dim, *times, _ratio(rel, bp), _ratio(ordi, rel), _ratio(auto, rel)))
    step_rows = (*STEP_METHODS, "step:default")
    step_cells = [(dim, *(milliseconds(t.get(m)) for m in step_rows)) for dim, t in table]
    ratio_cells = [
        (dim, *(_ratio(t.get(a), t.get(b)) for _, a, b in STEP_RATIOS)) for dim, t in table
    ]
    slopes = fitted_slopes(records, fit_from)
    slope_cells = [
        (m, f"{s['slope']:.2f}", f"{s['dims'][0]}..{s['dims'][1]}", s["points"])
        for m, s in slopes.items()
    ]
    reasons = sorted(
        {f"{r['method']}: {r['skipped_reason']}" for r in records if r.get("skipped_reason")}
    )
    steps = next((r["steps_per_call"] for r in records if "steps_per_call" in r), "-")
    return harness.markdown_document(
        "Gradient and training-step cost per minibatch (median wall time, ms)",
        f"batch {first['batch']}, depth {first['depth']}, float32, device {first['device']}; "
        "`backprop` = plain backprop of the network and prior, no log-det term at all. "
        f"Default gradient mode: `{DEFAULT_GRADIENT}` (`step:default`: `relative_coords` while "
        "D <= batch, `relative_pooled` above).",
        "## Gradient only",
        harness.markdown_table(("D", *grad_rows, *ratios), grad_cells),
        "## Full training step (gradient + Adam update + parameter update)",
        f"`nica.fitting.steps.make_epoch_fn` with each mode's wrapping of `optax.adam(1e-3)`, "
        f"{steps} steps per timed call, time per step.",
        harness.markdown_table(("D", *step_rows), step_cells),
        harness.markdown_table(("D", *(h for h, _, _ in STEP_RATIOS)), ratio_cells),
        f"## Fitted slope of log(time) on log(D), D >= {fit_from}",
        harness.markdown_table(("row", "slope", "D range", "points"), slope_cells),
        "\n".join(f"- {reason}" for reason in reasons),
    )


def plot(records: Sequence[dict], path: Path, *, fit_from: int) -> None:
    """Log-log plot of median time versus ``D``: gradient rows left, step rows right, each
    labelled with its fitted slope; saved to ``path``."""
    table = _by_dim(records)
    dims = sorted(table)
    slopes = fitted_slopes(records, fit_from)
    fig, axes = harness.pyplot().subplots(1, 2, figsize=(12.0, 4.5), sharey=True)
    panels = ((*GRADIENT_METHODS, "backprop"), (*STEP_METHODS[:-1], "step:backprop"))
    for ax, methods, title in zip(axes, panels, ("gradient only", "full step"), strict=True):
        for method in methods:
            pts = [(d, table[d][method]) for d in dims if table[d].get(method) is not None]
            if not pts:
                continue
            slope = slopes.get(method)
            label = method + (f" (slope {slope['slope']:.2f})" if slope else "")
            style = "k--" if method.endswith("backprop") else "o-"
            ax.loglog(*zip(*pts, strict=True), style, label=label, markersize=4)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("dimension D")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("median time per minibatch (s)")
    first = records[0]
    fig.suptitle(
        f"batch {first['batch']}, depth {first['depth']}, {first['device']}; "
        f"slopes fitted over D >= {fit_from}; default mode {DEFAULT_GRADIENT}"
    )
    fig.tight_layout()
    harness.save_figure(fig, path, dpi=120)
