"""``nica stability``: which components come back across seeds (``nica.stability``) on an
``.npz`` file, written as stability.json, reliability.png and report.md.

With the true sources ``s`` in the file (synthetic data), each fit's MCC against them and the
reference fit's per-component ``|corr|`` with its true partner are reported beside the
reliability, so that the index can be read against the truth.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

import nica
from nica.apps.cli.console import abandon, status, version
from nica.apps.cli.outputs import prepare_fit_out
from nica.core.metrics import correlation_matrix, mean_correlation_coefficient
from nica.fitting.data import load_observations
from nica.fitting.estimator import check_inputs, checks_said
from nica.fitting.stability import check_arguments
from nica.util.files import write_json, write_text
from nica.util.progress import fit_progress, progress_enabled
from nica.util.provenance import environment

__all__ = ["STABILITY_OUTPUTS", "run_stability", "truth_record", "write_stability"]

#: What ``nica stability`` writes into ``--out``; ``--force`` lets it replace them.
STABILITY_OUTPUTS = ("stability.json", "reliability.png", "report.md")

#: How to read the index, said in report.md.
READING = (
    "A component's reliability is the median, over the other fits, of its matched |correlation|"
    " with the reference fit's component: near 1, the component comes back in every fit; low,"
    " it is an artefact of one optimum. Reliability is necessary, not sufficient, for a true"
    " source: a wrong optimum that every seed finds is reliable too."
)


def _prepare_out(out: Path, *, force: bool) -> bool:
    """Creates and test-writes ``out`` (``prepare_fit_out``; a fit's outputs there may stay);
    refuses an earlier stability run's outputs without ``force``. Returns whether ``out`` was
    created."""
    created = prepare_fit_out(out, force=True)
    earlier = [name for name in STABILITY_OUTPUTS if (out / name).exists()]
    if earlier and not force:
        raise ValueError(
            f"--out {out} holds an earlier stability run ({', '.join(earlier)}); "
            "pass --force to replace it, or choose another folder"
        )
    return created


def truth_record(result: nica.Stability, x: np.ndarray, s: np.ndarray) -> dict:
    """The fits against the true sources ``s (N, D)``: each seed's MCC (``None`` where it
    diverged) and, per reference component, its true partner and ``|corr|`` with it (all with
    ``result.correlation``)."""
    correlation = result.correlation
    mcc: list[float | None] = [None] * len(result.seeds)
    for i, fitted in zip(result.ran, result.fits, strict=True):
        mcc[i] = float(mean_correlation_coefficient(s, fitted.transform(x), correlation).mcc)
    reference = result.best.transform(x)
    matching = mean_correlation_coefficient(s, reference, correlation).matching
    corr = np.abs(correlation_matrix(s, reference, correlation))
    partner = np.empty(reference.shape[1], np.int64)
    partner[matching] = np.arange(matching.size)
    return {
        "correlation": correlation,
        "mcc": mcc,
        "reference_partners": [int(i) for i in partner],
        "reference_correlations": [float(corr[i, j]) for j, i in enumerate(partner)],
    }


def _report(path: str, result: nica.Stability, model: str, shape, truth: dict | None) -> str:
    """report.md: what was fitted, how to read the index, and the table of components."""
    seeds = ", ".join(map(str, result.seeds))
    how = "each on its own bootstrap resample of the rows" if result.bootstrap else "the same data"
    reference_nll = result.val_nll[result.reference]
    left_out = f"; {result.diverged} diverged and were left out" if result.diverged else ""
    lines = [
        "# Component reliability",
        "",
        f"`nica stability` of `{path}`: {len(result.seeds)} fits of the {model} model "
        f"(seeds {seeds}) on {how}, N={shape[0]}, D={shape[1]}{left_out}. Reference: the fit of"
        f" seed {result.seeds[result.reference]} (lowest validation NLL, {reference_nll:.4f}"
        f" nats per sample); components matched on {result.correlation} |correlation| of the"
        " recovered sources on x.",
        "",
        READING,
        "",
    ]
    header = "| component | reliability | min matched \\|corr\\| | max matched \\|corr\\| |"
    rule = "|---|---|---|---|"
    if truth is not None:
        header += " \\|corr\\| with its true source |"
        rule += "---|"
    lines += [header, rule]
    for j in result.order:
        column = result.matched[:, j]
        row = f"| {j} | {result.reliability[j]:.3f} | {column.min():.3f} | {column.max():.3f} |"
        if truth is not None:
            partner = truth["reference_partners"][j]
            row += f" {truth['reference_correlations'][j]:.3f} (s{partner}) |"
        lines.append(row)
    if truth is not None:
        listed = ", ".join(
            f"seed {seed}: {'diverged' if m is None else f'{m:.3f}'}"
            for seed, m in zip(result.seeds, truth["mcc"], strict=True)
        )
        lines += [
            "",
            f"Each fit's MCC ({truth['correlation']}) against the true sources: {listed}.",
        ]
    return "\n".join(lines) + "\n"


def write_stability(path, out: Path, result: nica.Stability, config, data, wall: float) -> dict:
    """Writes stability.json, reliability.png and report.md of ``result`` on the file
    ``path``; returns the JSON record."""
    from nica.apps.plots import plot_reliability

    model = "conditional" if config.model.conditional else "unconditional"
    truth = None if data.s is None else truth_record(result, data.x, data.s)
    record = {
        **result.to_dict(),
        "data": str(Path(path).resolve()),
        "n_samples": int(data.x.shape[0]),
        "dim": int(data.x.shape[1]),
        "model": model,
        "config": {k: v for k, v in config.to_dict().items() if k != "seed"},
        "depths": [f.config.model.depth for f in result.fits],
        "wall_s": wall,
        **({} if truth is None else {"truth": truth}),
        "nica_version": version(),
        "environment": environment(),
    }
    write_json(out / "stability.json", record)
    plot_reliability(result, out / "reliability.png")
    write_text(out / "report.md", _report(str(path), result, model, data.x.shape, truth))
    return record


def run_stability(args) -> int:
    """``nica stability``: checks the options and the file, fits every seed, writes the
    outputs; one line at start and one at the end."""
    defaults = nica.FitConfig().flat()  # every option named like a flat setting sets it
    fields = {k: v for k, v in vars(args).items() if k in defaults and k != "seed"}
    check_arguments(args.seeds, args.correlation)
    data = load_observations(args.data)
    conditional = data.u is not None and not args.unconditional
    config = nica.FitConfig.from_flat({**fields, "conditional": conditional})
    u = data.u if conditional else None
    reading = check_inputs(data.x, u, config=config, where=args.data, where_u=args.data)
    out = Path(args.out)
    created = _prepare_out(out, force=args.force)
    how = "" if reading is None else f", {reading.description}"
    resample = " on bootstrap resamples" if args.bootstrap else ""
    status(
        f"nica stability: {len(args.seeds)} fits{resample} of the "
        f"{'conditional' if conditional else 'unconditional'} model, "
        f"N={data.x.shape[0]}, D={data.x.shape[1]}{how}, {config.loop.epochs} epochs"
    )
    with fit_progress(progress_enabled(args.quiet)) as progress:
        start = time.perf_counter()
        try:
            with checks_said():
                result = nica.stability(
                    data.x,
                    u,
                    seeds=args.seeds,
                    bootstrap=args.bootstrap,
                    correlation=args.correlation,
                    config=config,
                    progress=progress,
                )
        except BaseException as err:
            abandon(err, out, created)
            raise
        wall = time.perf_counter() - start
        if progress is not None:
            progress.status(f"writing {', '.join(STABILITY_OUTPUTS)}")
        write_stability(args.data, out, result, config, data, wall)
    reliability = result.reliability
    status(
        f"nica stability: done in {wall:.1f} s; reliability from {reliability.min():.3f} to"
        f" {reliability.max():.3f} over {reliability.size} components (reference: seed"
        f" {result.seeds[result.reference]}); wrote {out}"
    )
    return 0
