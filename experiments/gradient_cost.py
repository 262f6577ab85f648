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
the trainer's own epoch function (``nica.fitting.training.make_epoch_fn``: shuffle, gradient, the
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

    taskset -c 0 .venv/bin/python experiments/gradient_cost.py --batch 100 --depth 2 \\
        --out results/gradient_cost

Writes ``gradient_cost.json`` (rows ``{dim, method, median_s, ...}``, rewritten atomically
after every D, so a killed run keeps the finished dimensions), ``gradient_cost.md`` (times,
ratios, fitted slopes) and ``gradient_cost.png`` (log-log plot, slope per row). ``--smoke``
shrinks the run to D = 8, 16 with 3 repeats, 2 steps per call, autodiff at D = 8 only, slopes
from D = 8 (used by the tests).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file

from experiments import harness
from nica import GRADIENTS, DemixingNetwork, GradientMode, ICAModel, make_prior
from nica.core.gradients import DEFAULT_GRADIENT, resolve_gradient
from nica.fitting.training import make_epoch_fn

#: Gradient-only rows: modes of the registry ``nica.GRADIENTS``, then the plain-backprop floor.
GRADIENT_METHODS = ("relative", "ordinary", "autodiff")
#: Full-step rows: every registered mode, then the plain-backprop floor.
STEP_METHODS = (*(f"step:{name}" for name in GRADIENTS), "step:backprop")
METHODS = (*GRADIENT_METHODS, "backprop", *STEP_METHODS, "step:default")
CPU_DIMS = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
GPU_DIMS = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)
SMOKE_DIMS = (8, 16)


@dataclasses.dataclass(frozen=True)
class PlainBackprop(GradientMode):
    """Not a likelihood gradient: the plain forward pass and prior, no log-determinant term."""

    name: str = "backprop"
    bd2_step: bool = True

    def terms(self, network, x):
        zeros = jnp.zeros(x.shape[:1], x.dtype)
        return network(x), zeros, jnp.zeros((), x.dtype)


def device_name() -> str:
    """A short description of the default JAX device, e.g. ``"cpu:cpu"``."""
    device = jax.devices()[0]
    return f"{jax.default_backend()}:{device.device_kind}"


def _mode(method: str) -> GradientMode:
    """The mode of a row name (``relative``, ``step:relative``, ``backprop``, ...)."""
    name = method.removeprefix("step:")
    return PlainBackprop() if name == "backprop" else GRADIENTS[name]


def make_model(dim: int, depth: int, *, seed: int = 0):
    """``(graphdef, params, rest)`` of the benchmarked model (float32, Laplace prior)."""
    model = ICAModel(DemixingNetwork(dim, depth, rngs=nnx.Rngs(seed)), make_prior("laplace"))
    return nnx.split(model, nnx.Param, ...)


def make_gradient_fns(
    dim: int, depth: int, *, seed: int = 0
) -> tuple[dict[str, Callable], nnx.State]:
    """Builds the (un-jitted) gradient function of every gradient-only row.

    Args:
      dim: data dimension ``D``.
      depth: number of square layers ``L``.
      seed: initialisation seed.

    Returns:
      ``(fns, params)``: ``fns[method](params, x)`` returns the gradient (same tree as
      ``params``) for a minibatch ``x`` of shape ``(batch, dim)``; ``params`` is the model's
      ``nnx.Param`` state (float32).
    """
    graphdef, params, rest = make_model(dim, depth, seed=seed)

    def gradient_fn(method):
        mode = _mode(method)

        def loss(params, x):
            return nnx.merge(graphdef, params, rest).training_loss(x, gradient=mode)[0]

        return jax.grad(loss)

    return {m: gradient_fn(m) for m in (*GRADIENT_METHODS, "backprop")}, params


def make_step_fns(
    dim: int, depth: int, batch: int, *, seed: int = 0
) -> tuple[dict[str, Callable], tuple[nnx.State, optax.OptState]]:
    """Builds the (un-jitted) epoch function of every full-step row.

    Returns:
      ``(fns, (params, opt_state))``: ``fns["step:<mode>"](params, opt_state, key, x)`` runs
      ``x.shape[0] // batch`` training steps (``x`` of shape ``(steps * batch, dim)``) and
      returns ``(params, opt_state, data_nll, finite)``; ``opt_state`` is
      ``optax.adam(1e-3).init(params)``, valid for every mode (their wrappers keep it).
    """
    graphdef, params, rest = make_model(dim, depth, seed=seed)
    adam = optax.adam(1e-3)

    def step_fn(method):
        epoch = make_epoch_fn(graphdef, rest, adam, gradient=_mode(method), batch_size=batch)
        return lambda params, opt_state, key, x: epoch(params, opt_state, key, x, None)

    return {m: step_fn(m) for m in STEP_METHODS}, (params, adam.init(params))


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
    """Why the ``autodiff`` rows are skipped at ``dim``, or ``None`` to run them.

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


def default_mode(dim: int, batch: int) -> str:
    """The mode the package default (``DEFAULT_GRADIENT``) resolves to at ``(dim, batch)``."""
    return resolve_gradient(DEFAULT_GRADIENT, dim, batch).name


def slow_rows(dim: int, slow_max_dim: int | None, batch: int) -> tuple[set[str], str | None]:
    """The rows not O(B D^2) that are skipped at ``dim`` (all but the default's step), and why."""
    if slow_max_dim is None or dim <= slow_max_dim:
        return set(), None
    default = f"step:{default_mode(dim, batch)}"
    slow = {"ordinary"} | {m for m in STEP_METHODS if not _mode(m).bd2_step and m != default}
    return slow, f"not O(B D^2), skipped above --slow-max-dim={slow_max_dim}"


def time_methods(
    calls: dict[str, tuple[Callable, tuple]],
    *,
    repeats: int,
    min_seconds: float,
    max_repeats: int = 200,
) -> dict[str, dict]:
    """Times jitted functions in interleaved rounds.

    Args:
      calls: ``method -> (fn, args)``; ``fn`` is not yet jitted, ``args`` are its jit arguments.
      repeats: minimum number of timed rounds.
      min_seconds: aim for at least this much timed work per method (more rounds at small D).
      max_repeats: cap on the number of rounds.

    Returns:
      ``method -> {"median_s", "min_s", "repeats", "compile_s"}`` (seconds per call).
    """
    compiled, compile_s = {}, {}
    for method, (fn, args) in calls.items():
        start = time.perf_counter()
        compiled[method] = jax.jit(fn).lower(*args).compile()
        compile_s[method] = time.perf_counter() - start
    warm = {}
    for method, fn in compiled.items():
        args = calls[method][1]
        jax.block_until_ready(fn(*args))
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        warm[method] = time.perf_counter() - start
    slowest = max(warm.values())
    rounds = min(max_repeats, max(repeats, math.ceil(min_seconds / max(slowest, 1e-9))))
    times: dict[str, list[float]] = {m: [] for m in compiled}
    for _ in range(rounds):
        for method, fn in compiled.items():
            args = calls[method][1]
            start = time.perf_counter()
            jax.block_until_ready(fn(*args))
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


def _calls_at(dim: int, *, batch: int, depth: int, steps: int, seed: int) -> dict:
    """``method -> (fn, args)`` of every row at ``dim``."""
    grad_fns, params = make_gradient_fns(dim, depth, seed=seed)
    step_fns, (step_params, opt_state) = make_step_fns(dim, depth, batch, seed=seed)
    data_key, shuffle_key = jax.random.split(jax.random.key(seed + 1))
    x = jax.random.normal(data_key, (steps * batch, dim), jnp.float32)
    calls = {m: (fn, (params, x[:batch])) for m, fn in grad_fns.items()}
    calls.update({m: (fn, (step_params, opt_state, shuffle_key, x)) for m, fn in step_fns.items()})
    return calls


def _timing_groups(calls: dict) -> list[dict]:
    """The calls timed together: the ``autodiff`` rows apart from the others (their O(B D^2)
    memory traffic would slow whichever call follows them in a round)."""
    apart = {m: c for m, c in calls.items() if m.removeprefix("step:") == "autodiff"}
    rest = {m: c for m, c in calls.items() if m not in apart}
    return [group for group in (rest, apart) if group]


def _records_at(dim: int, timings: dict, skipped: dict[str, str], base: dict, steps: int):
    """The rows of one ``D``: timed (step rows per step), skipped, and ``step:default``."""
    records = []
    for method in METHODS[:-1]:
        if method in timings:
            t = dict(timings[method])
            if method.startswith("step:"):
                t = {**t, "median_s": t["median_s"] / steps, "min_s": t["min_s"] / steps}
                t["steps_per_call"] = steps
            records.append({**base, "method": method, **t})
        else:
            reason = skipped.get(method, "not timed")
            records.append(
                {**base, "method": method, "median_s": None, "repeats": 0, "skipped_reason": reason}
            )
    mode = default_mode(base["dim"], base["batch"])
    default = next(r for r in records if r["method"] == f"step:{mode}")
    records.append({**default, "method": "step:default", "mode": mode})
    return records


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
    slow_max_dim: int | None = None,
    steps: int = 4,
    out_json: Path | None = None,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Measures every row at every ``D``; returns the records (one per (dim, method)).

    Args:
      dims: dimensions ``D`` in increasing order.
      batch: minibatch size ``B``.
      depth: number of layers ``L``.
      repeats: minimum number of timed rounds per ``D``.
      min_seconds: target timed seconds per row (more rounds for fast rows).
      autodiff_max_dim, autodiff_max_bytes, autodiff_max_seconds: see
        :func:`autodiff_skip_reason`.
      slow_max_dim: above it, skip the rows that are not O(B D^2) (see :func:`slow_rows`).
      steps: training steps per timed call of a step row.
      out_json: if given, the records so far are written there after every ``D``.
      seed: seed of the initialisation and of the data.
      log: progress printer.

    Returns:
      Records ``{dim, method, median_s, min_s, repeats, compile_s, batch, depth, device}``
      (step rows: seconds per step, plus ``steps_per_call``; ``step:default`` also ``mode``), or
      with ``median_s = None`` and ``skipped_reason`` for a skipped row.
    """
    device = device_name()
    records: list[dict] = []
    previous_autodiff: tuple[int, float] | None = None
    autodiff_from: str | None = None
    for dim in dims:
        calls = _calls_at(dim, batch=batch, depth=depth, steps=steps, seed=seed)
        reason = autodiff_from or autodiff_skip_reason(
            dim,
            batch,
            max_dim=autodiff_max_dim,
            max_bytes=autodiff_max_bytes,
            max_seconds=autodiff_max_seconds,
            calls=repeats + 2,
            previous=previous_autodiff,
        )
        skipped: dict[str, str] = {}
        if reason is not None:
            autodiff_from = autodiff_from or f"skipped from D={dim} on: {reason}"
            skipped.update({m: autodiff_from for m in ("autodiff", "step:autodiff")})
        slow, why = slow_rows(dim, slow_max_dim, batch)
        skipped.update({m: why for m in slow if m not in skipped})
        calls = {m: c for m, c in calls.items() if m not in skipped}
        timings = {}
        for group in _timing_groups(calls):
            timings |= time_methods(group, repeats=repeats, min_seconds=min_seconds)
        base = {"dim": dim, "batch": batch, "depth": depth, "device": device}
        records += _records_at(dim, timings, skipped, base, steps)
        if "autodiff" in timings:
            previous_autodiff = (dim, timings["autodiff"]["median_s"])
        log(
            f"D={dim:6d} "
            + " ".join(f"{r['method']}={_ms(r['median_s'])}" for r in records if r["dim"] == dim)
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
        times = [_ms(v) for v in (rel, ordi, auto, bp)]
        grad_cells.append((dim, *times, _ratio(rel, bp), _ratio(ordi, rel), _ratio(auto, rel)))
    step_rows = (*STEP_METHODS, "step:default")
    step_cells = [(dim, *(_ms(t.get(m)) for m in step_rows)) for dim, t in table]
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
        f"`nica.fitting.training.make_epoch_fn` with each mode's wrapping of `optax.adam(1e-3)`, "
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
        out_json=args.out / "gradient_cost.json",
        seed=args.seed,
    )
    table = to_markdown(records, fit_from=args.fit_from)
    harness.write_report(args.out, "gradient_cost", records, table)
    plot(records, args.out / "gradient_cost.png", fit_from=args.fit_from)
    return records


if __name__ == "__main__":
    main()
