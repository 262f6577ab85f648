"""The timing of the cost experiment (``experiments.gradient_cost``): every row of
``experiments.gradient_cost_methods`` compiled ahead of time and timed in interleaved rounds,
one ``D`` after the other.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp

from experiments import harness
from experiments.gradient_cost_methods import (
    METHODS,
    autodiff_skip_reason,
    default_mode,
    make_gradient_fns,
    make_step_fns,
    slow_rows,
)
from experiments.gradient_cost_report import milliseconds


def device_name() -> str:
    """A short description of the default JAX device, e.g. ``"cpu:cpu"``."""
    device = jax.devices()[0]
    return f"{jax.default_backend()}:{device.device_kind}"


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
            + " ".join(
                f"{r['method']}={milliseconds(r['median_s'])}" for r in records if r["dim"] == dim
            )
        )
        if out_json is not None:
            harness.write_record(out_json, records)
    return records
