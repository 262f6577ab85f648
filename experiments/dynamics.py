"""Training dynamics of the relative versus the ordinary gradient (the paper's Fig. 1, right).

Problem (``--mixing teacher``, the default): a 2-D nonlinear ICA model whose optimum is
well defined. Laplace sources ``s`` are pushed through the exact inverse of a random *teacher*
demixer with the student's own architecture (2 square layers, smooth leaky ReLU with slope 0.2
between them; both matrices from ``synthetic``'s well-conditioned ``random_matrix``), and the
observations are standardised (an affine map, absorbed by the first layer). The model class
therefore contains the truth at finite weights, and the teacher's exact NLL on the training data
is a reference the maximum-likelihood fit should reach (slightly undercut: it is fitted to the
sample).

``--mixing leaky_relu`` is the earlier problem: an exact (kinked) leaky-ReLU MLP mixing
(``random_mixing``, iVAE convention). A smooth demixer can only approach its inverse by sharpening
its kinks, i.e. by letting the first layer's weights grow without bound, so the NLL has no finite
minimiser and keeps creeping down: its "final NLL" measures how far a run has travelled along
that valley, not where it converged, and is not a fair basis for the comparison.

A 2-layer ``DemixingNetwork`` with a Laplace prior is trained full-batch (one optimizer step per
epoch on all ``N`` points) from the *same* 10 initialisations with each gradient mode, with Adam
and with plain SGD (no adaptive scaling):

* ``relative``: the relative gradient of MATH.md with biases in augmented form
  (``What What^T G``), fed to the optimizer like any gradient;
* ``relative_coords``: the optimizer runs in relative coordinates (``nica.core.relative``): it sees
  ``W^T G_W`` for each kernel and ``G_b`` for each bias, and its kernel update ``U`` is applied
  as ``W <- W (I + U)``. Under plain SGD this is exactly ``W <- W - lr W W^T G_W`` with an
  ordinary bias step;
* ``relative_pooled``: the optimizer sees ``W W^T G_W`` for each kernel and ``G_b`` for each
  bias and steps in ``W``, with Adam's second moment pooled over each kernel (one scalar per
  matrix, ``nica.core.pooling``). Under plain SGD it is the same step as ``relative_coords``;
* ``ordinary``: autodiff through ``slogdet`` (the reference).

The exact training NLL (``slogdet``) is recorded at every epoch; all runs of one setting run at
once under ``vmap``.

Learning rates: tuned *per optimizer and per gradient by the same rule*, because the relative
gradient is a different preconditioning (its step scales with ``W W^T``) and one shared rate
favours one of the two. For each pair, every rate in ``LR_GRIDS`` is run with the full epoch
budget from 5 *tuning* initialisations (seeds 100-104, disjoint from the reported seeds 0-9) and
the rate with the lowest mean final NLL on them is kept (a diverged run counts as +inf); the
reported seeds run at every rate in the same ``vmap`` call, so ``report.md`` also compares the
two gradients at each shared rate. The schedule is a
cosine decay to 5% of the peak over the budget, so runs settle at the end. Convergence is checked
by the norm of the exact NLL's gradient at the end and the NLL change over the last 10% of epochs.

How the two gradients are compared (``report.md``): the final NLLs of the 10 shared
initialisations are compared *unpaired* (gap of the means, of the medians and of the best run)
and *paired* (per initialisation); since a non-convex problem has several basins, we also count
the runs that reach the global basin (final NLL within 1% of the best NLL of any run) and give the
largest paired gap among the initialisations where both gradients reach it.

Command::

    .venv/bin/python -m experiments.dynamics --out results/dynamics

What it shows (default command; numbers in ``results/dynamics/report.md``): every run that
reaches the global basin ends at the same NLL with any gradient, just under the generating
model's. Some initialisations fall into a spurious basin. There the ordinary gradient settles at
a finite local minimum, and so do ``relative_coords`` (its final NLLs within 1% of the ordinary
gradient's for every initialisation, with Adam and with SGD, at every rate of the grid) and
``relative_pooled`` (under SGD its step is ``relative_coords``'s). The augmented ``relative``
mode does not settle there: its bias metric ``(1 + b b^T)`` and the ``W b^T`` coupling slow it
down under SGD, and Adam's elementwise scaling of ``W W^T G_W`` makes it drift and, at the
larger rates, go unstable. Treating the bias by its ordinary gradient alone fixes the SGD gap;
running Adam in relative coordinates, or pooling its second moment per matrix, fixes the Adam
one.

Writes ``results.json`` (settings, tuning results, summary, per-run NLL curves every
``--record-every`` epochs), ``report.md`` (final-NLL and gap tables) and ``dynamics.png`` (NLL
vs epoch, every run thin, the median thick). ``--smoke`` runs 2 initialisations (2 for tuning),
200 points and 20 epochs (for the tests).

Modules: the problem (``experiments.dynamics_problem``), the runs (``experiments.dynamics_runs``),
their summary (``experiments.dynamics_summary``) and the outputs
(``experiments.dynamics_report``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from experiments import harness
from experiments.dynamics_problem import MIXINGS
from experiments.dynamics_report import plot, to_markdown, to_record
from experiments.dynamics_runs import run_all
from experiments.dynamics_summary import summarise


def main(argv: Sequence[str] | None = None) -> tuple[list[dict], list[dict], list[dict]]:
    """Parses arguments, tunes and trains all runs, writes JSON, Markdown and PNG."""
    smoke = {"n": 200, "inits": 2, "tuning_inits": 2, "adam_epochs": 20, "sgd_epochs": 20}
    parser = harness.experiment_parser(
        __doc__, out=Path("results/dynamics"), smoke={**smoke, "record_every": 1}
    )
    size = harness.positive_int
    parser.add_argument("--n", type=size, default=2000, help="training points (full batch)")
    parser.add_argument("--mixing", choices=MIXINGS, default="teacher")
    parser.add_argument("--inits", type=size, default=10)
    parser.add_argument("--tuning-inits", type=size, default=5)
    parser.add_argument("--adam-epochs", type=size, default=8000)
    parser.add_argument("--sgd-epochs", type=size, default=15000)
    parser.add_argument("--record-every", type=size, default=50)
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and mixing")
    args = parser.parse_args(argv)
    args.tuning_seeds = list(range(100, 100 + args.tuning_inits))
    result = run_all(
        data_seed=args.seed,
        n=args.n,
        mixing=args.mixing,
        n_inits=args.inits,
        tuning_seeds=args.tuning_seeds,
        epochs={"adam": args.adam_epochs, "sgd": args.sgd_epochs},
        record_every=args.record_every,
    )
    rows, gaps, shared = summarise(result)
    record = to_record(rows, gaps, shared, result=result, args=args)
    table = to_markdown(rows, gaps, shared, result=result, args=args)
    harness.write_report(args.out, record, table, indent=None)
    plot(result, args.out / "dynamics.png")
    return rows, gaps, shared


if __name__ == "__main__":
    main()
