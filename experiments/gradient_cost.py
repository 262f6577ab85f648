"""Wall time of one gradient evaluation versus dimension D (the paper's Fig. 1, left).

For each D the script builds one ``DemixingNetwork(D, depth)`` with a Laplace prior, one float32
minibatch ``x`` of shape ``(batch, D)``, and times a jitted ``jax.grad`` with respect to the
model's ``nnx.Param`` state (parameters and data are jit *arguments*, so nothing is
constant-folded). Methods:

* ``relative``: gradient of ``ICAModel.training_loss(x, gradient="relative")`` (relative
  gradient of every layer, weight log-determinant through its O(D^2) carrier).
* ``ordinary``: the same loss with ``gradient="ordinary"`` (``slogdet`` of every layer and its
  autodiff gradient, O(L D^3)).
* ``autodiff``: the same loss with ``gradient="autodiff"`` (per-sample ``jacfwd`` Jacobian and
  its ``slogdet``, O(B L D^3) time, O(B D^2) memory); skipped, with the reason recorded, above
  ``--autodiff-max-dim`` or once the memory estimate ``batch * D * D * 8`` bytes or the time
  estimate (previous D's median scaled by D^3) exceeds its budget.
* ``backprop``: the floor, plain backpropagation through the same network and prior: the loss
  is ``-mean_b sum_i log p(s_bi)`` with ``s`` from the plain forward pass (``z @ W + b`` and the
  activation value). It has *no* log-determinant term at all: neither ``log|det W_k|`` nor the
  activations' log-derivatives.

Each method is compiled ahead of time and run twice to warm up; then the methods are timed in
interleaved rounds (one call of each method per round, ``block_until_ready`` after each) so that
machine noise hits them alike. The median over rounds is reported; there are at least
``--repeats`` rounds, more at small D so each method gets about ``--min-seconds`` of timing.

Command (default CPU sweep D = 16 .. 4096; on a GPU the default sweep goes to 32768)::

    .venv/bin/python experiments/gradient_cost.py --batch 100 --depth 2 --out results/gradient_cost

Writes ``gradient_cost.json`` (rewritten atomically after every D, so a killed run keeps the
finished dimensions), ``gradient_cost.md`` (table with ratios) and ``gradient_cost.png``
(log-log plot). ``--smoke`` shrinks the run to D = 8, 16 with 3 repeats (used by the tests).
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
from flax import nnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file

from experiments import harness
from nica import DemixingNetwork, ICAModel, get_gradient, make_prior

#: Gradient modes of the registry ``nica.GRADIENTS`` that are timed, then the plain-backprop floor.
GRADIENT_METHODS = ("relative", "ordinary", "autodiff")
METHODS = (*GRADIENT_METHODS, "backprop")
CPU_DIMS = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
GPU_DIMS = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)
SMOKE_DIMS = (8, 16)


def device_name() -> str:
    """A short description of the default JAX device, e.g. ``"cpu:cpu"``."""
    device = jax.devices()[0]
    return f"{jax.default_backend()}:{device.device_kind}"


def make_gradient_fns(
    dim: int, depth: int, *, seed: int = 0
) -> tuple[dict[str, Callable], nnx.State]:
    """Builds the (un-jitted) gradient function of every method and the initial parameters.

    Args:
      dim: data dimension ``D``.
      depth: number of square layers ``L``.
      seed: initialisation seed.

    Returns:
      ``(fns, params)``: ``fns[method](params, x)`` returns the gradient (same tree as
      ``params``) for a minibatch ``x`` of shape ``(batch, dim)``; ``params`` is the model's
      ``nnx.Param`` state (float32).
    """
    model = ICAModel(DemixingNetwork(dim, depth, rngs=nnx.Rngs(seed)), make_prior("laplace"))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def model_loss(name):
        mode = get_gradient(name)

        def loss(params, x):
            return nnx.merge(graphdef, params, rest).training_loss(x, gradient=mode)[0]

        return loss

    def backprop_loss(params, x):
        model = nnx.merge(graphdef, params, rest)
        demixer = model.demixer
        z = x
        for k, layer in enumerate(demixer.layers):
            z = layer(z)
            if k < demixer.depth - 1:
                z = demixer.activation.value(z)
        return -model.prior.log_prob(z).sum(axis=-1).mean()

    losses = {m: model_loss(m) for m in GRADIENT_METHODS}
    losses["backprop"] = backprop_loss
    return {m: jax.grad(loss) for m, loss in losses.items()}, params


def autodiff_skip_reason(
    dim: int,
    batch: int,
    *,
    max_dim: int,
    max_bytes: float,
    max_seconds: float,
    calls: int,
    previous: tuple[int, float] | None,
) -> str | None:
    """Why the ``autodiff`` method is skipped at ``dim``, or ``None`` to run it.

    Args:
      dim: data dimension ``D``.
      batch: minibatch size ``B``.
      max_dim: largest ``D`` to attempt.
      max_bytes: budget for the per-sample Jacobians, estimated as ``B * D * D * 8`` bytes.
      max_seconds: budget for all ``calls`` timed calls at this ``D``.
      calls: number of calls the measurement would make (warm-up included).
      previous: ``(D_prev, median_s)`` of the last measured ``autodiff`` run, scaled by
        ``(D / D_prev)^3`` to predict this one.
    """
    if dim > max_dim:
        return f"D={dim} > --autodiff-max-dim={max_dim}"
    need = batch * dim * dim * 8
    if need > max_bytes:
        return f"Jacobians need ~{need / 2**30:.1f} GiB > budget {max_bytes / 2**30:.1f} GiB"
    if previous is not None:
        prev_dim, prev_s = previous
        estimate = prev_s * (dim / prev_dim) ** 3 * calls
        if estimate > max_seconds:
            return f"predicted {estimate:.0f} s for {calls} calls > budget {max_seconds:.0f} s"
    return None


def time_methods(
    fns: dict[str, Callable],
    params: nnx.State,
    x: jax.Array,
    *,
    repeats: int,
    min_seconds: float,
    max_repeats: int = 200,
) -> dict[str, dict]:
    """Times jitted gradient functions in interleaved rounds.

    Args:
      fns: ``method -> fn(params, x)`` (not yet jitted).
      params: parameter state, passed as a jit argument.
      x: minibatch, shape ``(batch, dim)``, passed as a jit argument.
      repeats: minimum number of timed rounds.
      min_seconds: aim for at least this much timed work per method (more rounds at small D).
      max_repeats: cap on the number of rounds.

    Returns:
      ``method -> {"median_s", "min_s", "repeats", "compile_s"}``.
    """
    compiled, compile_s = {}, {}
    for method, fn in fns.items():
        start = time.perf_counter()
        compiled[method] = jax.jit(fn).lower(params, x).compile()
        compile_s[method] = time.perf_counter() - start
    warm = {}
    for method, fn in compiled.items():
        jax.block_until_ready(fn(params, x))
        start = time.perf_counter()
        jax.block_until_ready(fn(params, x))
        warm[method] = time.perf_counter() - start
    slowest = max(warm.values())
    rounds = min(max_repeats, max(repeats, math.ceil(min_seconds / max(slowest, 1e-9))))
    times: dict[str, list[float]] = {m: [] for m in compiled}
    for _ in range(rounds):
        for method, fn in compiled.items():
            start = time.perf_counter()
            jax.block_until_ready(fn(params, x))
            times[method].append(time.perf_counter() - start)
    return {
        m: {
            "median_s": statistics.median(t),
            "min_s": min(t),
            "repeats": len(t),
            "compile_s": compile_s[m],
        }
        for m, t in times.items()
    }


def run_sweep(
    dims: Sequence[int],
    *,
    batch: int,
    depth: int,
    repeats: int,
    min_seconds: float,
    autodiff_max_dim: int,
    autodiff_max_bytes: float,
    autodiff_max_seconds: float,
    out_json: Path | None = None,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Measures every method at every ``D``; returns the records (one per (dim, method)).

    Args:
      dims: dimensions ``D`` in increasing order.
      batch: minibatch size ``B``.
      depth: number of layers ``L``.
      repeats: minimum number of timed rounds per ``D``.
      min_seconds: target timed seconds per method (more rounds for fast methods).
      autodiff_max_dim, autodiff_max_bytes, autodiff_max_seconds: see
        :func:`autodiff_skip_reason`.
      out_json: if given, the records so far are written there after every ``D``.
      seed: seed of the initialisation and of the data.
      log: progress printer.

    Returns:
      Records ``{dim, method, median_s, min_s, repeats, compile_s, batch, depth, device}``, or
      with ``median_s = None`` and ``skipped_reason`` for a skipped method.
    """
    device = device_name()
    records: list[dict] = []
    previous_autodiff: tuple[int, float] | None = None
    skip_from: str | None = None
    for dim in dims:
        fns, params = make_gradient_fns(dim, depth, seed=seed)
        x = jax.random.normal(jax.random.key(seed + 1), (batch, dim), jnp.float32)
        reason = skip_from or autodiff_skip_reason(
            dim,
            batch,
            max_dim=autodiff_max_dim,
            max_bytes=autodiff_max_bytes,
            max_seconds=autodiff_max_seconds,
            calls=repeats + 2,
            previous=previous_autodiff,
        )
        if reason is not None:
            del fns["autodiff"]
            skip_from = skip_from or f"skipped from D={dim} on: {reason}"
        timings = time_methods(fns, params, x, repeats=repeats, min_seconds=min_seconds)
        base = {"dim": dim, "batch": batch, "depth": depth, "device": device}
        for method in METHODS:
            if method in timings:
                records.append({**base, "method": method, **timings[method]})
            else:
                skipped = {"median_s": None, "repeats": 0, "skipped_reason": skip_from}
                records.append({**base, "method": method, **skipped})
        if "autodiff" in timings:
            previous_autodiff = (dim, timings["autodiff"]["median_s"])
        log(
            f"D={dim:6d} "
            + " ".join(
                f"{m}={timings[m]['median_s'] * 1e3:9.3f}ms" if m in timings else f"{m}=skipped"
                for m in METHODS
            )
        )
        if out_json is not None:
            harness.write_record(out_json, records)
    return records


def _by_dim(records: Sequence[dict]) -> dict[int, dict[str, float | None]]:
    table: dict[int, dict[str, float | None]] = {}
    for r in records:
        table.setdefault(r["dim"], {})[r["method"]] = r["median_s"]
    return table


def _ratio(num: float | None, den: float | None) -> str:
    return "-" if num is None or den is None else f"{num / den:.2f}"


def _ms(value: float | None) -> str:
    return "skipped" if value is None else f"{value * 1e3:.3f}"


def to_markdown(records: Sequence[dict]) -> str:
    """Formats the records as a Markdown table of median times (ms) and ratios."""
    first = records[0]
    ratios = ("relative / backprop", "ordinary / relative", "autodiff / relative")
    cells = []
    for dim, t in sorted(_by_dim(records).items()):
        rel, ordi, auto, bp = (t.get(m) for m in METHODS)
        times = [_ms(v) for v in (rel, ordi, auto, bp)]
        cells.append((dim, *times, _ratio(rel, bp), _ratio(ordi, rel), _ratio(auto, rel)))
    reasons = sorted({r["skipped_reason"] for r in records if r.get("skipped_reason")})
    return harness.markdown_document(
        "Gradient cost per minibatch (median wall time, ms)",
        f"batch {first['batch']}, depth {first['depth']}, float32, device {first['device']}; "
        "`backprop` = plain backprop of the network and prior, no log-det term at all.",
        harness.markdown_table(("D", *METHODS, *ratios), cells),
        "\n".join(f"autodiff {reason}" for reason in reasons),
    )


def plot(records: Sequence[dict], path: Path) -> None:
    """Log-log plot of median time versus ``D``, one line per method, saved to ``path``."""
    table = _by_dim(records)
    dims = sorted(table)
    fig, ax = harness.pyplot().subplots(figsize=(6.0, 4.5))
    styles = {"relative": "o-", "ordinary": "s-", "autodiff": "^-", "backprop": "k--"}
    for method in METHODS:
        pts = [(d, table[d][method]) for d in dims if table[d].get(method) is not None]
        if pts:
            ax.loglog(*zip(*pts, strict=True), styles[method], label=method, markersize=4)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("dimension D")
    ax.set_ylabel("median time per gradient evaluation (s)")
    first = records[0]
    ax.set_title(f"batch {first['batch']}, depth {first['depth']}, {first['device']}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    harness.save_figure(fig, path, dpi=120)


def main(argv: Sequence[str] | None = None) -> list[dict]:
    """Parses arguments, runs the sweep, writes JSON, Markdown and PNG; returns the records."""
    smoke = {"dims": list(SMOKE_DIMS), "repeats": 3, "min_seconds": 0.0}
    parser = harness.experiment_parser(__doc__, out=Path("results/gradient_cost"), smoke=smoke)
    parser.add_argument("--dims", type=harness.positive_int, nargs="+", default=None)
    parser.add_argument("--batch", type=harness.positive_int, default=100)
    parser.add_argument("--depth", type=harness.positive_int, default=2)
    parser.add_argument("--repeats", type=harness.positive_int, default=10)
    parser.add_argument("--min-seconds", type=float, default=1.0)
    parser.add_argument("--autodiff-max-dim", type=int, default=None)
    parser.add_argument("--autodiff-max-gib", type=float, default=4.0)
    parser.add_argument("--autodiff-max-seconds", type=float, default=120.0)
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
        out_json=args.out / "gradient_cost.json",
        seed=args.seed,
    )
    harness.write_report(args.out, "gradient_cost", records, to_markdown(records))
    plot(records, args.out / "gradient_cost.png")
    return records


if __name__ == "__main__":
    main()
