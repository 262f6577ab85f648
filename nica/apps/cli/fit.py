"""``nica fit``: one method of ``nica.methods`` fitted to an ``.npz`` file, its outputs written.

``--method`` takes every registry name; ``nica`` (the default) is nica's model: conditional
when the file has ``u`` (and ``--unconditional`` is not given), else unconditional.
"""

from __future__ import annotations

import time
from pathlib import Path

import nica
from nica.apps.cli.console import abandon, status
from nica.apps.cli.outputs import prepare_fit_out, write_outputs
from nica.fitting.auxiliary import read_aux
from nica.fitting.data import load_observations, standardise
from nica.fitting.estimator import check_inputs, checks_said
from nica.fitting.warm import PROGRESSIVE, start_depth
from nica.methods import METHODS, Method, get_method
from nica.util.progress import fit_progress, progress_enabled

__all__ = ["NICA", "run_fit"]

#: The ``--method`` name of nica's model, whichever of the two the file and options choose.
NICA = "nica"
#: ``nica fit`` options of nica's models only, refused by the other methods (which run with
#: their own defaults and ``--seed``).
NICA_ONLY = (
    "epochs",
    "depth",
    "prior",
    "gradient",
    "restarts",
    "restart_epochs",
    "warm_start",
    "batch_size",
    "learning_rate",
)


def _nica_model(has_u: bool, unconditional: bool) -> Method:
    return METHODS["conditional" if has_u and not unconditional else "unconditional"]


def _refuse_options(args, method: Method, defaults: dict) -> None:
    """One-line ValueErrors for options that ``method`` does not take."""
    if args.unconditional and method.uses_u:
        raise ValueError(f"--unconditional sets the nica model; {method.name} needs u")
    if method.exact_likelihood:
        return
    for name in NICA_ONLY:
        if getattr(args, name) != defaults[name]:
            raise ValueError(
                f"--{name.replace('_', '-')} sets the nica model; --method {method.name} runs "
                f"with the defaults of nica.methods.{method.config_type.__name__} and --seed"
            )


def _plan(config, dim: int) -> str:
    """The fit's plan in words: restarts, epochs, depths."""
    resolved = config.resolve(dim)
    plan = f"{config.loop.epochs} epochs"
    if config.restarts.count > 1:
        plan = (
            f"best of {config.restarts.count} initialisations after {resolved.restart_epochs}"
            f" epochs each, then {plan}"
        )
    first = start_depth(resolved.warm_start, resolved.depths)
    if first is not None and resolved.warm_start in PROGRESSIVE:
        plan = (
            f"a depth-{first} fit first ({plan}), then each depth up to"
            f" {max(resolved.depths)} grown from the one below ({config.loop.epochs} epochs each)"
        )
    elif first is not None:
        plan = (
            f"a {resolved.warm_start} fit first ({plan}), then {config.loop.epochs} epochs from it"
        )
    depths = resolved.depths
    if len(depths) > 1:
        listed = ", ".join(map(str, depths))
        return f"{plan}; at depths {listed} in turn, keeping the lowest validation NLL"
    return f"{plan}; depth {depths[0]}"


def _check_nica(args, method: Method, data, fields: dict) -> tuple:
    """The config of a nica model and the fit's first line; checks the data (one-line
    ValueErrors naming the file, warnings said once)."""
    config = method.config(fields, args.seed)
    u = data.u if method.uses_u else None
    reading = check_inputs(data.x, u, config=config, where=args.data, where_u=args.data)
    n, d = data.x.shape
    how = "" if reading is None else f", {reading.description}"
    equation = 4 if method.uses_u else 3
    line = f"{method.name} model (Eq. {equation}), N={n}, D={d}{how}, {_plan(config, d)}"
    return config, line


def _check_method(args, method: Method, data, fields: dict) -> tuple:
    """The config (defaults and ``--seed``) of another method and the fit's first line; checks
    the data under the file's name."""
    how = ""
    if method.uses_u:
        how = f", {read_aux(data.u, where=args.data).description}"
    standardise(data.x, where=args.data)
    config = method.config({}, args.seed)
    return config, f"{method.name} baseline, N={data.x.shape[0]}, D={data.x.shape[1]}{how}"


def _summary(method: Method, fit, metrics: dict) -> str:
    """The end line's numbers: validation NLL (nica's models), depth search, NLL gap, MCC."""
    if not method.exact_likelihood:
        return f", MCC {metrics['mcc_pearson']:.4f}" if "mcc_pearson" in metrics else ""
    summary = f", val NLL {metrics['val_nll']:.4f} nats/sample (units of x)"
    search = fit.depth_search
    if search is not None:
        tried = zip(search["depths"], search["val_nll"], strict=True)
        listed = ", ".join(f"depth {depth}: {nll:.4f}" for depth, nll in tried)
        summary += f" at depth {fit.depth} ({listed})"
    if "nll_gap" in metrics:
        summary += f", NLL gap to the true model {metrics['nll_gap']:.3f} nats"
        summary += f" (on the training data {metrics['train_gap']:.3f})"
    if "mcc_pearson" in metrics:
        summary += f", MCC {metrics['mcc_pearson']:.4f} (Spearman {metrics['mcc_spearman']:.4f})"
    return summary


def run_fit(args) -> int:
    """``nica fit``: checks the options and the file, fits, writes the outputs
    (``nica.apps.cli.outputs``); one line at start and one at the end."""
    defaults = nica.FitConfig().flat()  # every option named like a flat setting sets it
    fields = {k: v for k, v in vars(args).items() if k in defaults and k != "seed"}
    method = None if args.method == NICA else get_method(args.method)
    if method is not None:
        _refuse_options(args, method, defaults)
    data = load_observations(args.data)
    method = method or _nica_model(data.u is not None, args.unconditional)
    if method.uses_u and data.u is None:
        raise ValueError(
            f"{args.data}: {method.name} needs the auxiliary variable u; the file has none"
        )
    check = _check_nica if method.exact_likelihood else _check_method
    config, line = check(args, method, data, fields)
    out = Path(args.out)
    created = prepare_fit_out(out, force=args.force)
    status(f"nica fit: {line}")
    with fit_progress(progress_enabled(args.quiet)) as progress:
        start = time.perf_counter()
        try:
            with checks_said():
                fit = method.fit(data.x, data.u, config=config, progress=progress, where=args.data)
        except BaseException as err:
            abandon(err, out, created)
            raise
        wall = time.perf_counter() - start
        if progress is not None:
            kept = "checkpoint and " if method.exact_likelihood else ""
            progress.status(f"writing metrics, {kept}figures")
        metrics = write_outputs(args.data, out, method, config, fit, data, wall)
    status(f"nica fit: done in {wall:.1f} s{_summary(method, fit, metrics)}; wrote {out}")
    return 0
