"""The "no unmixing" floor: MCC of the raw observations x against the true sources s.

Any method should beat this number on a preset; it measures how much of each source is already
visible in some observed coordinate.

Command (writes ``results/mcc_floor/report.md`` and ``results.json``, prints the table)::

    .venv/bin/python -m experiments.mcc_floor --seed 0 --out results/mcc_floor

Smoke size (used by the tests): ``--smoke`` (the ``tiny`` preset) or ``--presets tiny``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from experiments.harness import experiment_parser, markdown_document, markdown_table, write_report
from nica.core.metrics import mean_correlation_coefficient
from synthetic.presets import PRESETS, make_preset


def floor_rows(presets: Sequence[str], seed: int) -> list[dict[str, object]]:
    """Pearson and Spearman MCC of ``x`` against ``s`` for each preset at ``seed``."""
    rows = []
    for name in presets:
        ds = make_preset(name, seed)
        rows.append(
            {
                "preset": name,
                "shape": f"{ds.x.shape[0]}x{ds.x.shape[1]}",
                "pearson": mean_correlation_coefficient(ds.s, ds.x, "pearson").mcc,
                "spearman": mean_correlation_coefficient(ds.s, ds.x, "spearman").mcc,
            }
        )
    return rows


def to_markdown(rows: Sequence[dict[str, object]], seed: int) -> str:
    """Formats :func:`floor_rows` output as a markdown table."""
    table = markdown_table(
        ("preset", "N x D", "Pearson MCC", "Spearman MCC"),
        [(r["preset"], r["shape"], f"{r['pearson']:.4f}", f"{r['spearman']:.4f}") for r in rows],
    )
    return markdown_document(f"MCC floor: raw observations x vs sources s (seed {seed})", table)


def main(argv: Sequence[str] | None = None) -> str:
    """Parses arguments, computes the table, writes the rows and the report; returns the table
    (the report without its closing provenance line)."""
    parser = experiment_parser(__doc__, out=Path("results/mcc_floor"), smoke={"presets": ["tiny"]})
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    args = parser.parse_args(argv)
    rows = floor_rows(args.presets, args.seed)
    table = to_markdown(rows, args.seed)
    write_report(args.out, {"seed": args.seed, "rows": rows}, table)
    return table


if __name__ == "__main__":
    main()
