"""Wall time of one gradient and of one full training step versus D (the paper's Fig. 1, left).

For each D the script builds one ``DemixingNetwork(D, depth)`` with a Laplace prior and float32
minibatches of shape ``(batch, D)``; parameters, optimizer state and data are jit *arguments*,
so nothing is constant-folded. Two families of rows:

Gradient only (a jitted ``jax.grad`` of the loss with respect to the ``nnx.Param`` state):

* ``relative``: ``ICAModel.training_loss(x, gradient="relative")`` (relative gradient of every
  layer, weight log-determinant through its O(D^2) carrier);
* ``ordinary``: the same loss with ``gradient="ordinary"`` (``slogdet`` of every layer and its
  autodiff gradient, O(L D^3));
* ``autodiff``: ``gradient="autodiff"`` (per-sample ``jacfwd`` Jacobian and its ``slogdet``,
  O(B L D^3) time, O(B D^2) memory);
* ``backprop``: the floor, plain backpropagation through the same network and prior: the loss is
  ``-mean_b sum_i log p(s_bi)`` with ``s`` from the plain forward pass, *no* log-determinant
  term at all (neither ``log|det W_k|`` nor the activations' log-derivatives).

Full training step, what a user pays (``step:<mode>`` for every mode of ``nica.GRADIENTS``):
the trainer's own epoch function (``nica.fitting.steps.make_epoch_fn``: shuffle, gradient, the
mode's wrapping of ``optax.adam(1e-3)``, parameter update, finite check) over ``--steps``
minibatches, divided by ``--steps``. ``step:default`` is the step of the package default
(``nica.core.gradients.DEFAULT_GRADIENT``, ``auto``: ``relative_coords`` while ``D <= batch``,
``relative_pooled`` above; a copy of the resolved mode's timing whose ``mode`` field names
it), ``step:backprop`` the same epoch function with the plain-backprop loss and the same Adam.

Skipped, with the reason recorded: ``autodiff`` rows above ``--autodiff-max-dim`` or once the
memory estimate ``batch * D * D * 8`` bytes or the time estimate (previous D's median scaled by
D^3) exceeds its budget; above ``--slow-max-dim`` (CPU default 2048) every row whose cost is
not O(B D^2) (``ordinary``, steps of modes without ``bd2_step``) except the default's step.

Each function is compiled ahead of time and run twice to warm up; then all of one D are timed
in interleaved rounds (one call of each per round, ``block_until_ready`` after each) so that
machine noise hits them alike; the ``autodiff`` rows are timed in rounds of their own, since
their per-sample Jacobians (O(B D^2) memory) slow down whichever call follows them. The
median over rounds is reported; there are at least ``--repeats`` rounds, more at small D so
each gets about ``--min-seconds`` of timing. The slope of ``log(median)`` against ``log(D)`` is
fitted per row over ``D >= --fit-from``.

Command (default CPU sweep D = 16 .. 4096; on a GPU the default sweep goes to 32768)::

    taskset -c 0 .venv/bin/python -m experiments.gradient_cost --batch 100 --depth 2 \\
        --out results/gradient_cost

Writes ``results.json`` (rows ``{dim, method, median_s, ...}``, rewritten atomically
after every D, so a killed run keeps the finished dimensions), ``report.md`` (times,
ratios, fitted slopes) and ``gradient_cost.png`` (log-log plot, slope per row). ``--smoke``
shrinks the run to D = 8, 16 with 3 repeats, 2 steps per call, autodiff at D = 8 only, slopes
from D = 8 (used by the tests).

Modules: the rows (``experiments.gradient_cost_methods``), their timing
(``experiments.gradient_cost_timing``) and the outputs (``experiments.gradient_cost_report``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import jax

from experiments import harness
from experiments.gradient_cost_report import plot, to_markdown
from experiments.gradient_cost_timing import run_sweep

#: The default sweeps on a CPU and on a GPU, and the smoke sweep.
CPU_DIMS = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
GPU_DIMS = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)
SMOKE_DIMS = (8, 16)


def main(argv: Sequence[str] | None = None) -> list[dict]:
    """Parses arguments, runs the sweep, writes JSON, Markdown and PNG; returns the records."""
    smoke = {
        "dims": list(SMOKE_DIMS),
        "repeats": 3,
        "min_seconds": 0.0,
        "steps": 2,
        "fit_from": 8,
        "autodiff_max_dim": 8,
    }
    parser = harness.experiment_parser(__doc__, out=Path("results/gradient_cost"), smoke=smoke)
    parser.add_argument("--dims", type=harness.positive_int, nargs="+", default=None)
    parser.add_argument("--batch", type=harness.positive_int, default=100)
    parser.add_argument("--depth", type=harness.positive_int, default=2)
    parser.add_argument("--repeats", type=harness.positive_int, default=10)
    parser.add_argument("--min-seconds", type=float, default=1.0)
    parser.add_argument("--steps", type=harness.positive_int, default=4)
    parser.add_argument("--autodiff-max-dim", type=int, default=None)
    parser.add_argument("--autodiff-max-gib", type=float, default=4.0)
    parser.add_argument("--autodiff-max-seconds", type=float, default=120.0)
    parser.add_argument("--slow-max-dim", type=int, default=None)
    parser.add_argument("--fit-from", type=harness.positive_int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    gpu = jax.default_backend() == "gpu"
    dims = args.dims or list(GPU_DIMS if gpu else CPU_DIMS)
    if sorted(dims) != dims:
        parser.error("--dims must be increasing")
    records = run_sweep(
        dims,
        batch=args.batch,
        depth=args.depth,
        repeats=args.repeats,
        min_seconds=args.min_seconds,
        autodiff_max_dim=args.autodiff_max_dim or (4096 if gpu else 512),
        autodiff_max_bytes=args.autodiff_max_gib * 2**30,
        autodiff_max_seconds=args.autodiff_max_seconds,
        slow_max_dim=args.slow_max_dim or (None if gpu else 2048),
        steps=args.steps,
        out_json=args.out / harness.RECORD_FILE,
        seed=args.seed,
    )
    table = to_markdown(records, fit_from=args.fit_from)
    harness.write_report(args.out, records, table)
    plot(records, args.out / "gradient_cost.png", fit_from=args.fit_from)
    return records


if __name__ == "__main__":
    main()
