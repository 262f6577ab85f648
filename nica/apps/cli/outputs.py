"""What ``nica fit`` writes into ``--out``: checks on the folder, config.json, metrics.json,
recovered.npz, the checkpoint of nica's models, and the figures."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from nica.apps.cli.console import Interrupted, version
from nica.core.metrics import mean_correlation_coefficient
from nica.methods import Method, MethodFit
from nica.util.files import save_npz, write_json
from nica.util.provenance import environment

__all__ = [
    "FIT_OUTPUTS",
    "NLL_UNITS",
    "prepare_fit_out",
    "remove_fit_outputs",
    "source_metrics",
    "write_fit_outputs",
    "write_method_fit",
    "write_nica_fit",
    "write_outputs",
]

#: What ``nica fit`` writes into ``--out``; ``--force`` removes these (and nothing else) first.
FIT_OUTPUTS = (
    "config.json",
    "metrics.json",
    "recovered.npz",
    "checkpoint",
    "scatter.png",
    "training_curve.png",
)

#: The unit of every NLL that ``nica fit`` prints, saves and plots.
NLL_UNITS = "nats per sample, in the units of x (-log p(x|u), or -log p(x) without u)"


def source_metrics(s: np.ndarray, s_hat: np.ndarray) -> dict:
    """Pearson and Spearman MCC (with matching and per-component correlations) as a dict."""
    out = {}
    for method in ("pearson", "spearman"):
        result = mean_correlation_coefficient(s, s_hat, method=method)
        out[f"mcc_{method}"] = float(result.mcc)
        out[f"matching_{method}"] = [int(i) for i in result.matching]
        out[f"correlations_{method}"] = [float(c) for c in result.correlations]
    return out


def _scatter(out: Path, s: np.ndarray, s_hat: np.ndarray, metrics: dict, **labels) -> None:
    """scatter.png: every true source against its matched recovered one, signed to rise."""
    from nica.apps.plots import plot_matched_scatter

    plot_matched_scatter(
        s,
        s_hat,
        np.asarray(metrics["matching_pearson"]),
        np.asarray(metrics["correlations_pearson"]),
        out / "scatter.png",
        **labels,
    )


def write_fit_outputs(out: Path, fitted, data, s_hat, extra: dict) -> dict:
    """Writes metrics.json, recovered.npz, the checkpoint and figures (scatter.png with true
    sources; training_curve.png, the restarts and each candidate depth's main fit) of a nica
    model's fit (``nica.FittedModel``); returns the metrics."""
    from nica.apps.plots import plot_fit_phases

    history = fitted.result.history
    metrics = {
        "nll_units": NLL_UNITS,
        "train_nll": history["train_nll"][-1],
        "val_nll": history["val_nll"][-1],
        "best_val_nll": fitted.result.best_val_nll,
        "best_epoch": fitted.result.best_epoch,
        "epochs_run": fitted.result.epochs_run,
        "stop_reason": fitted.result.stop_reason,
        "restarts": fitted.restarts,
        "depth_search": fitted.depth_search,
        "prior_shape": fitted.prior_shape,
        **extra,
        "environment": environment(),
    }
    if data.s is not None:
        metrics.update(source_metrics(data.s, s_hat))
        _scatter(out, data.s, s_hat, metrics, title=f"Pearson MCC {metrics['mcc_pearson']:.3f}")
    save_npz(out / "recovered.npz", s_hat=s_hat.astype(np.float32))
    fitted.save(out / "checkpoint")
    plot_fit_phases(fitted, out / "training_curve.png")
    write_json(out / "metrics.json", metrics)
    return metrics


def _earlier_fit(out: Path) -> list[str]:
    return [name for name in FIT_OUTPUTS if (out / name).exists() or (out / name).is_symlink()]


def prepare_fit_out(out: Path, *, force: bool) -> bool:
    """Creates ``out`` and test-writes a file there, before any training.

    Returns:
      Whether ``out`` was created (so a failed fit can remove it again).

    Raises:
      ValueError: one line, when ``out`` cannot be created or written, or when it holds the
        outputs of an earlier fit and ``force`` is not set.
    """
    created = not out.is_dir()
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".nica-write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"--out {out}: cannot write there ({err.strerror or err})") from None
    earlier = _earlier_fit(out)
    if earlier and not force:
        raise ValueError(
            f"--out {out} holds an earlier fit ({', '.join(earlier)}); "
            "pass --force to replace it, or choose another folder"
        )
    return created


def remove_fit_outputs(out: Path) -> None:
    """Removes an earlier fit's :data:`FIT_OUTPUTS` from ``out`` (other files stay)."""
    for name in _earlier_fit(out):
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def _truth_gap(path, fitted, conditional: bool) -> dict:
    """``test_nll``, ``true_nll``, ``nll_gap`` and their counterparts on the file's own rows
    ``train_nll``, ``true_train_nll``, ``train_gap`` (``synthetic.truth.nll_gap``) when the file
    is a synthetic dataset that carries its mixing and source parameters; else nothing."""
    from synthetic.dataset import load_dataset
    from synthetic.truth import nll_gap

    dataset = load_dataset(path)
    if dataset.mixing is None or dataset.u is None or dataset.u.ndim != 1:
        return {}
    seed = 10_000 + int((dataset.config or {}).get("seed", 0))
    try:
        return nll_gap(fitted, dataset, seed=seed, conditional=conditional)
    except ValueError:  # no recorded source parameters: the truth's density is unknown
        return {}


def write_nica_fit(path, out: Path, method: Method, config, fit: MethodFit, data, wall) -> dict:
    """Writes config.json (every setting, resolved) and :func:`write_fit_outputs` of a nica
    model's fit of the file ``path``; returns the metrics."""
    fitted = fit.model
    n, d = data.x.shape
    settings, resolved = config.to_dict(), config.resolve(d, n)
    record = {
        **settings,
        "prior": resolved.prior_family,
        "gradient": resolved.gradient.name,
        "gradient_rule": settings["gradient"],
        "depth": fit.depth,
        "depth_rule": settings["depth"],
        "depth_search": fitted.depth_search,
        "restart_epochs": resolved.restart_epochs,
        "warm_start": resolved.warm_start,
        "warm_start_rule": settings["warm_start"],
        "data": str(Path(path).resolve()),
        "n_samples": n,
        "dim": d,
        "aux": fitted.aux,
        "model": method.name,
        "nica_version": version(),
        "environment": environment(),
    }
    remove_fit_outputs(out)
    write_json(out / "config.json", record)
    extra = {"wall_s": wall, **_truth_gap(path, fitted, method.uses_u)}
    return write_fit_outputs(out, fitted, data, fit.sources, extra)


def write_method_fit(path, out: Path, method: Method, config, fit: MethodFit, data, wall) -> dict:
    """Writes config.json, metrics.json, recovered.npz and, with true sources, scatter.png of
    another method's fit of the file ``path`` (scored against its target); the metrics."""
    remove_fit_outputs(out)
    env = environment()
    resolved = {"method": method.name, **config.to_dict(), "data": str(Path(path).resolve())}
    write_json(out / "config.json", {**resolved, "nica_version": version(), "environment": env})
    metrics = {"method": method.name, "wall_s": wall, **fit.metrics, "environment": env}
    if data.s is not None:
        target = method.target(data.s)
        metrics["mcc_target"] = method.target_name
        metrics.update(source_metrics(target, fit.sources))
        title = f"Pearson MCC {metrics['mcc_pearson']:.3f} against {method.target_name}"
        _scatter(out, target, fit.sources, metrics, title=title, label=method.name)
    save_npz(out / "recovered.npz", s_hat=fit.sources.astype(np.float32))
    write_json(out / "metrics.json", metrics)
    return metrics


def write_outputs(path, out: Path, method: Method, config, fit: MethodFit, data, wall) -> dict:
    """The outputs of ``method``'s fit: :func:`write_nica_fit` for nica's models (exact
    likelihood, checkpoint), :func:`write_method_fit` for the others; a Ctrl-C meanwhile is
    the one line saying the outputs are incomplete."""
    write = write_nica_fit if method.exact_likelihood else write_method_fit
    try:
        return write(path, out, method, config, fit, data, wall)
    except KeyboardInterrupt:
        raise Interrupted(
            f"the outputs in {out} are incomplete; run again with --force to replace them"
        ) from None
