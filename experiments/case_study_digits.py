"""Case study on real data: nonlinear ICA of scikit-learn's 8x8 digits with the class as u.

Three questions about one real data set (1797 images, 64 pixels 0..16, ten classes; offline):

1. **Held-out density.** On the test rows of ``--seeds`` random splits (70% train, 10%
   validation, 20% test; dequantisation + logit, every log-Jacobian counted, exactly as
   ``experiments/density_real.py``, whose functions fit the nica models, the Gaussians and the
   flowjax flows here with the same keys): nica conditional on the class (``log p(x | class)``
   and the class mixture ``log p(x)``), nica unconditional, linear ICA (FastICA's unmixing
   ``W`` in the preprocessed space, whitening included, with a fitted 1-D Gaussian mixture per
   source: ``log p(z) = sum_i log p_i(w_i . (z - mean)) + log|det W|``, exact; each mixture's
   size chosen on the validation rows), a full-covariance Gaussian and flowjax's MAF and
   coupling flows.
2. **Component reliability** of the conditional model without ground truth: ``nica.stability``
   with ``--fits`` seeds on one noise draw of the first split's training rows (preprocessed),
   the density settings of nica at the depth ``density_real`` chose for the conditional model
   on every seed (2), from nica's random start (``nica.stability`` has no whitened start).
3. **What the most reliable components look like**: for each, the mean image of the training
   rows with the highest 10% of that component minus that of the lowest 10% (pixel units), and
   the derivative of the exact decoder ``v = T^{-1}(g^{-1}(s))`` at the mean image along the
   component, times its standard deviation (``jax.jvp``); the least reliable for contrast.

Command::

    .venv/bin/python -m experiments.case_study_digits --out results/case_study_digits

About 8 to 10 minutes on one CPU core (an estimate from ``results/density_real``'s timings of
the same fits, which are most of it). Writes ``results.json``, ``report.md``,
``reliability.png`` and ``components.png``. Resumable: ``results.json`` is rewritten after
every piece (one model on one split, the stability run), and a rerun keeps the finished pieces
whose settings are unchanged. ``--smoke`` is a tiny run for the tests. Without flowjax
(``pip install -e ".[compare]"``) the flows are skipped.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from scipy.stats import spearmanr

import nica
from experiments import density_real, flowjax_flows, harness
from nica.apps.density import (
    DensityData,
    Preprocessing,
    bits_per_dim,
    density_batch_size,
    density_config,
    prepare_density_data,
)
from nica.apps.plots import plot_reliability
from nica.fitting.fitted import FittedModel
from nica.methods.fastica import fit_fastica_seeds
from nica.util.files import read_json

#: The models of the held-out table: density_real's names, and linear ICA's.
MODELS = ("nica-conditional", "nica", "fastica", "gaussian", "maf", "coupling")
#: Sizes of each source's 1-D Gaussian mixture tried for linear ICA (the validation rows pick).
MIXTURE_SIZES = (1, 2, 3, 5, 8)
#: Components pictured at each end of the reliability ranking.
SHOWN = 5
#: Share of the training rows at each end of a component that its contrast image averages.
EXTREME_FRACTION = 0.1
DIGITS = density_real.DIGITS
IMAGE = density_real.IMAGE


@dataclasses.dataclass(frozen=True)
class LinearICADensity:
    """Linear ICA as an exact density: ``log p(z) = sum_i log p_i(w_i . (z - mean)) +
    log|det W|``.

    Attributes:
      mean: ``(D,)`` subtracted first (FastICA's ``mean_``).
      unmixing: ``W (D, D)``, FastICA's ``components_`` (its whitening included), so the
        sources are ``(z - mean) @ W.T``.
      marginals: ``D`` fitted 1-D ``sklearn.mixture.GaussianMixture`` s, one per source.
    """

    mean: np.ndarray
    unmixing: np.ndarray
    marginals: tuple

    def sources(self, z: np.ndarray) -> np.ndarray:
        """``(N, D) -> (N, D)``."""
        return (np.asarray(z, np.float64) - self.mean) @ self.unmixing.T

    def log_likelihood(self, z: np.ndarray) -> np.ndarray:
        """``log p(z)`` per row, ``(N, D) -> (N,)``, in ``z``'s units."""
        s = self.sources(z)
        per_source = [p.score_samples(s[:, [i]]) for i, p in enumerate(self.marginals)]
        return np.sum(per_source, axis=0) + np.linalg.slogdet(self.unmixing)[1]

    @property
    def n_parameters(self) -> int:
        """``W``, the mean, and each mixture's weights (less one), means and variances."""
        dim = self.mean.size
        return dim * dim + dim + sum(3 * p.n_components - 1 for p in self.marginals)


def fit_linear_ica_density(
    z_train: np.ndarray, z_val: np.ndarray, *, seed: int, sizes: Sequence[int] = MIXTURE_SIZES
) -> tuple[LinearICADensity, dict]:
    """FastICA (``nica.methods.fastica``, ``random_state = seed``) on ``z_train (N, D)``, then
    for each source the Gaussian mixture among ``sizes`` with the highest log-likelihood of the
    validation rows ``z_val (M, D)`` (the density factorises, so choosing each source's
    separately maximises the whole). Returns the density and ``{mixture_sizes, n_iter,
    max_iter}``."""
    from sklearn.mixture import GaussianMixture

    (fitted,) = fit_fastica_seeds([z_train], seeds=[seed])
    ica = fitted.ica
    s_train = np.asarray(fitted.sources, np.float64)
    s_val = (z_val - ica.mean_) @ ica.components_.T
    marginals = []
    for i in range(s_train.shape[1]):
        fits = [
            GaussianMixture(k, init_params="k-means++", random_state=seed).fit(s_train[:, [i]])
            for k in sizes
            if k <= s_train.shape[0]
        ]
        marginals.append(max(fits, key=lambda g: g.score(s_val[:, [i]])))
    density = LinearICADensity(
        np.asarray(ica.mean_, np.float64), np.asarray(ica.components_, np.float64), tuple(marginals)
    )
    info = {
        "mixture_sizes": [int(p.n_components) for p in marginals],
        "n_iter": int(ica.n_iter_),
        "max_iter": fitted.config.max_iter,
    }
    return density, info


def fit_fastica_density(data: DensityData, seed: int) -> dict:
    """The record of linear ICA's density on one split (as ``density_real``'s records)."""
    start = time.perf_counter()
    density, info = fit_linear_ica_density(data.z_train, data.z_val, seed=seed)
    test = density.log_likelihood(data.z_test) + data.log_det_test
    return {
        "test_ll": float(test.mean()),
        "params": density.n_parameters,
        "wall_s": time.perf_counter() - start,
        **info,
    }


def split_data(seed: int, x: np.ndarray, y: np.ndarray, settings: dict):
    """``(data, fit_key)`` of one split seed, drawn exactly as ``density_real.run_seed``."""
    data_key, fit_key, _ = jax.random.split(jax.random.key(seed), 3)
    data = prepare_density_data(
        data_key, x, y, preprocessing=DIGITS, copies=settings["copies"], where="digits"
    )
    return data, fit_key


def _caught(caught: list) -> list[str]:
    """The distinct warnings caught, as ``"Category: message"``."""
    seen = dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught)
    return list(seen)


def fit_piece(name: str, data: DensityData, fit_key, seed: int, settings: dict) -> dict:
    """One model on one split: its record (test log-likelihood in nats per image, pixel units),
    with the warnings it raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if name in density_real.NICA_MODELS:
            key = jax.random.fold_in(fit_key, density_real.MODELS.index(name))
            record, _ = density_real.fit_nica_model(key, data, name, settings)
        elif name == "gaussian":
            record = density_real.fit_gaussian(data)
        elif name == "fastica":
            record = fit_fastica_density(data, seed)
        else:
            key = jax.random.fold_in(fit_key, density_real.MODELS.index(name))
            width = settings["flow_widths"][name]
            record, _ = density_real.fit_flowjax(key, data, name, width, settings)
    return {**record, "model": name, "seed": seed, "warnings": _caught(caught)}


def stability_config(settings: dict, n_rows: int, dim: int):
    """nica's conditional density settings (``density_real``'s) at
    ``settings["stability_depth"]``, for ``n_rows`` training rows of ``dim`` pixels."""
    return density_config(
        seed=0,
        conditional=True,
        depth=settings["stability_depth"],
        epochs=settings["epochs"],
        batch_size=density_batch_size(n_rows, dim),
    )


def decoder_directions(
    fitted: FittedModel, preprocessing: Preprocessing, v0: np.ndarray, scales: np.ndarray
) -> np.ndarray:
    """``d v / d s_i * scales_i`` at ``s0 = g(T(v0))`` for every component ``i``: how one
    standard deviation of each source moves the pixels through the exact decoder
    ``v = T^{-1}(g^{-1}(s))`` (``jax.jvp``; ``T^{-1}``'s derivative is diagonal). Shapes
    ``v0 (D,)``, ``scales (D,)`` -> ``(D, D)``, row ``i`` the direction of component ``i``."""
    z0, _ = preprocessing.forward_and_log_det(v0[None])
    s0 = jnp.asarray(fitted.transform(z0)[0], jnp.float32)
    graphdef, params, rest = nnx.split(fitted.model, nnx.Param, ...)

    def decode(s):  # standardised z of one source vector (D,)
        return nnx.merge(graphdef, params, rest).demixer.inverse(s[None])[0]

    tangents = jnp.eye(s0.size, dtype=jnp.float32) * jnp.asarray(scales, jnp.float32)[:, None]
    z_std, dz_std = jax.vmap(lambda t: jax.jvp(decode, (s0,), (t,)))(tangents)
    z = np.asarray(z_std[0], np.float64) * fitted.scale + fitted.mean
    p = 1.0 / (1.0 + np.exp(-z))  # T^{-1}(z) = low + width (sigmoid(z) - alpha) / (1 - 2 alpha)
    dv_dz = preprocessing.width * p * (1.0 - p) / (1.0 - 2.0 * preprocessing.alpha)
    return np.asarray(dz_std, np.float64) * fitted.scale * dv_dz


def describe_components(s: np.ndarray, labels: np.ndarray, pixels: np.ndarray) -> dict:
    """What each component of sources ``s (N, D)`` of labelled images ``pixels (N, 64)`` does:
    ``contrast (D, 64)``, the mean image of its top :data:`EXTREME_FRACTION` of rows minus that
    of its bottom; ``class_share (D,)``, the share of its variance between classes (eta^2);
    ``log_scale_spread (D,)``, the standard deviation over classes of its log within-class
    standard deviation; ``class_means (D, C)`` in units of its standard deviation."""
    n = max(1, int(round(EXTREME_FRACTION * s.shape[0])))
    order = np.argsort(s, axis=0)
    low, high = pixels[order[:n]].mean(axis=0), pixels[order[-n:]].mean(axis=0)
    classes = np.unique(labels)
    centred = (s - s.mean(axis=0)) / s.std(axis=0)
    means = np.stack([centred[labels == c].mean(axis=0) for c in classes], axis=1)
    counts = np.array([(labels == c).sum() for c in classes])
    stds = np.stack([centred[labels == c].std(axis=0) for c in classes], axis=1)
    return {
        "contrast": high - low,
        "class_share": (means**2 * counts).sum(axis=1) / s.shape[0],
        "log_scale_spread": np.log(np.maximum(stds, 1e-12)).std(axis=1),
        "class_means": means,
        "classes": classes,
    }


def run_stability(x: np.ndarray, y: np.ndarray, settings: dict) -> dict:
    """``nica.stability`` of the conditional model on one noise draw of the first split's
    training rows, and what its reference fit's components look like; a JSON-ready record
    (pictures of the components :func:`shown_components` picks only)."""
    seed = settings["seeds"][0]
    data, _ = split_data(seed, x, y, settings)
    n_train = data.split.train.size
    z, labels = data.z_train[:n_train], data.u_train[:n_train]  # the first noise draw
    config = stability_config(settings, n_train, z.shape[1])
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = nica.stability(z, labels, seeds=range(settings["fits"]), config=config)
    wall = time.perf_counter() - start
    best = result.best
    s = best.transform(z)
    described = describe_components(s, labels, x[data.split.train])
    directions = decoder_directions(best, DIGITS, data.v[data.split.train].mean(axis=0), s.std(0))
    share, spread = described["class_share"], described["log_scale_spread"]
    record = {
        **result.to_dict(),
        "split_seed": seed,
        "rows": int(n_train),
        "depth": settings["stability_depth"],
        "validation_fraction": config.loop.validation_fraction,
        "config": config.to_dict(),
        "epochs_run": [int(f.result.epochs_run) for f in result.fits],
        "best_epoch": [int(f.result.best_epoch) for f in result.fits],
        "wall_s": wall,
        "warnings": _caught(caught),
        "class_share": share.tolist(),
        "log_scale_spread": spread.tolist(),
        "class_means": described["class_means"].tolist(),
        "classes": described["classes"].tolist(),
        "spearman_reliability_class_share": float(spearmanr(result.reliability, share)[0]),
        "spearman_reliability_scale_spread": float(spearmanr(result.reliability, spread)[0]),
    }
    most, least = shown_components(record)
    record["pictures"] = {
        str(i): {
            "contrast": described["contrast"][i].tolist(),
            "decoder": directions[i].tolist(),
        }
        for i in (*most, *least)
    }
    return record


def shown_components(record: dict) -> tuple[list[int], list[int]]:
    """The :data:`SHOWN` most reliable components and the :data:`SHOWN` least (no overlap),
    each most reliable first."""
    order = [int(i) for i in record["order"]]
    k = min(SHOWN, len(order) // 2)
    return order[:k], order[len(order) - k :]


def plot_components(record: dict, path: Path) -> None:
    """Rows: contrast and decoder direction of the most reliable components, then of the least
    reliable ones (one symmetric colour scale per row, pixel units)."""
    most, least = shown_components(record)
    pictures, reliability = record["pictures"], record["reliability"]
    top = f"top {EXTREME_FRACTION:.0%} - bottom {EXTREME_FRACTION:.0%}"
    rows = [
        (f"most reliable:\n{top}", "contrast", most),
        ("most reliable:\ndecoder dv/ds x sd", "decoder", most),
        (f"least reliable:\n{top}", "contrast", least),
        ("least reliable:\ndecoder dv/ds x sd", "decoder", least),
    ]
    plt = harness.pyplot()
    cols = len(most)
    fig, axes = plt.subplots(
        len(rows),
        cols,
        figsize=(1.45 * cols + 2.8, 1.6 * len(rows) + 0.7),
        squeeze=False,
        layout="constrained",
    )
    for ax_row, (label, kind, components) in zip(axes, rows, strict=True):
        images = np.array([pictures[str(i)][kind] for i in components])
        limit = max(float(np.abs(images).max()), 1e-9)
        for ax, i, image in zip(ax_row, components, images, strict=True):
            shown = ax.imshow(image.reshape(IMAGE), cmap="RdBu_r", vmin=-limit, vmax=limit)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"ŝ{i}  rel {reliability[i]:.2f}", fontsize=8)
        ax_row[0].set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
        fig.colorbar(shown, ax=list(ax_row), shrink=0.85, label="pixels (0..16 scale)")
    fig.suptitle(
        "Conditional nica on the digits: components of the reference fit, most and least"
        " reliable\n(red: pixels brighter where the component is high)",
        fontsize=9,
    )
    harness.save_figure(fig, path, dpi=100)


#: The rows of the held-out table: (model, record key, description, quantity).
TABLE_ROWS = (
    ("nica-conditional", "test_ll_given_class", "nica conditional on the class", "log p(x|c)"),
    (
        "nica-conditional",
        "class_gaussian_test_ll_given_class",
        "Gaussian, class means, pooled covariance",
        "log p(x|c)",
    ),
    ("nica-conditional", "test_ll", "nica conditional on the class", "log sum_c p(c) p(x|c)"),
    ("nica", "test_ll", "nica unconditional", "log p(x)"),
    ("fastica", "test_ll", "linear ICA: FastICA W + 1-D Gaussian mixtures", "log p(x)"),
    ("gaussian", "test_ll", "full-covariance Gaussian", "log p(x)"),
    ("maf", "test_ll", "flowjax masked autoregressive flow", "log p(x)"),
    ("coupling", "test_ll", "flowjax coupling flow (Real NVP)", "log p(x)"),
)


def summarise(records: list[dict], models: Sequence[str], dim: int, n_classes: int) -> list[dict]:
    """One row per :data:`TABLE_ROWS` entry whose model ran: mean and 2 std over split seeds
    of the test log-likelihood (nats per image), bits per pixel, parameters (the class
    Gaussian's: ``n_classes`` means and a covariance), mean wall time."""
    rows = []
    for model, key, description, quantity in TABLE_ROWS:
        mine = [r for r in records if r["model"] == model and key in r]
        if model not in models or not mine:
            continue
        ll = np.array([r[key] for r in mine])
        class_gaussian = key.startswith("class_gaussian")
        rows.append(
            {
                "model": model,
                "key": key,
                "description": description,
                "quantity": quantity,
                "seeds": [r["seed"] for r in mine],
                "test_ll": ll.tolist(),
                "test_ll_mean": float(ll.mean()),
                "test_ll_2std": float(2 * ll.std(ddof=1)) if ll.size > 1 else 0.0,
                "bits_per_dim": bits_per_dim(float(ll.mean()), dim),
                "params": (
                    dim * n_classes + dim * (dim + 1) // 2 if class_gaussian else mine[0]["params"]
                ),
                "wall_s": None if class_gaussian else float(np.mean([r["wall_s"] for r in mine])),
            }
        )
    return rows


def _held_out_notes(rows: list[dict], records: list[dict]) -> list[str]:
    """What the held-out table says, from its numbers."""
    by = {(r["model"], r["key"]): r for r in rows}
    marginal = sorted((r for r in rows if r["key"] == "test_ll"), key=lambda r: -r["test_ll_mean"])
    notes = [
        "Ranked by the test log p(x) (the rows comparable with one another): "
        + " > ".join(f"`{r['model']}` {r['test_ll_mean']:.2f}" for r in marginal)
        + " nats per image."
    ]
    conditional = by.get(("nica-conditional", "test_ll"))
    if conditional is not None:
        given = by[("nica-conditional", "test_ll_given_class")]
        gaussian = by[("nica-conditional", "class_gaussian_test_ll_given_class")]
        accuracy = [r["accuracy"] for r in records if r["model"] == "nica-conditional"]
        notes.append(
            "`nica-conditional` gives two numbers: log p(x|c) at the true class, which uses the "
            "test label and is comparable only with the Gaussian with class means and a pooled "
            f"covariance ({given['test_ll_mean']:.2f} against {gaussian['test_ll_mean']:.2f}), "
            "and the class mixture log p(x) = log sum_c p(c) p(x|c) with the training class "
            "frequencies, which uses no label and is comparable with every log p(x) row. Its "
            f"Bayes classifier argmax_c p(c) p(x|c) labels {np.mean(accuracy):.3f} of the test "
            "images correctly (mean over splits)."
        )
    if ("nica", "test_ll") in by and conditional is not None:
        unconditional = by[("nica", "test_ll")]
        diff = np.subtract(conditional["test_ll"], unconditional["test_ll"])
        notes.append(
            f"Class mixture minus unconditional nica, paired by split: {diff.mean():+.2f} nats "
            f"per image (per split: {', '.join(f'{d:+.2f}' for d in diff)})."
        )
    fastica = [r for r in records if r["model"] == "fastica"]
    if fastica:
        sizes = np.concatenate([r["mixture_sizes"] for r in fastica])
        iters = ", ".join(f"{r['n_iter']}" for r in fastica)
        stopped = sum(r["n_iter"] >= r["max_iter"] for r in fastica)
        converged = (
            f"{stopped} of {len(fastica)} splits stopped at the limit without converging"
            if stopped
            else "all converged"
        )
        notes.append(
            "`fastica`: scikit-learn's FastICA (unit-variance whitening) on the preprocessed "
            "training rows; W is its `components_`, the whitening included, so log|det W| is "
            "that of the whole unmixing in the preprocessed space. Each source's density is a "
            "1-D Gaussian mixture (an exact, normalised density) whose size, among "
            f"{', '.join(map(str, MIXTURE_SIZES))}, its validation rows chose: median "
            f"{np.median(sizes):g}, range {sizes.min()} to {sizes.max()} over the sources and "
            f"splits. FastICA iterations per split: {iters} of at most "
            f"{fastica[0]['max_iter']} ({converged}). With one Gaussian per source this "
            "density is the full-covariance Gaussian (W whitens the training rows; up to the "
            "mixtures' variance floor of 1e-6), "
            "so the difference between the two rows is what linear ICA's non-Gaussian "
            "marginals add."
        )
    for name in ("nica", "nica-conditional"):
        depths = [r["depth"] for r in records if r["model"] == name]
        if depths:
            notes.append(f"`{name}` depth per split: {', '.join(depths)}.")
    said = sorted({w for r in records for w in r.get("warnings", [])})
    notes.append("Warnings raised by these fits: " + ("; ".join(said) or "none") + ".")
    if conditional is not None and not any("IdentifiabilityWarning" in w for w in said):
        notes.append(
            "The density fits (`nica.apps.density`) do not run `nica.fit`'s checks of u, so "
            "they say nothing about the number of classes; `nica.stability` below does."
        )
    return notes


def _reliability_section(stab: dict, settings: dict) -> list[str]:
    """The reliability paragraphs and table, from the stability record."""
    reliability = np.asarray(stab["reliability"])
    share, spread = np.asarray(stab["class_share"]), np.asarray(stab["log_scale_spread"])
    means, classes = np.asarray(stab["class_means"]), stab["classes"]
    ran = len(stab["seeds"]) - stab["diverged"]
    val = ", ".join("diverged" if v is None else f"{v:.2f}" for v in stab["val_nll"])
    counts = ", ".join(
        f"{int((reliability >= t).sum())} at or above {t}" for t in (0.95, 0.9, 0.8, 0.5)
    )
    ranked = ", ".join(f"ŝ{i} {reliability[i]:.2f}" for i in stab["order"])
    intro = (
        f"`nica.stability`: {len(stab['seeds'])} fits (seeds {stab['seeds']}) of the conditional "
        f"model (depth {stab['depth']}, nica's random start, per-class "
        f"{stab['config']['prior_family']} prior, {settings['epochs']} epochs at most, "
        f"early stopping on nica's own {stab['validation_fraction']:.0%} validation rows; "
        "the rest as the density fits) on the "
        f"{stab['rows']} training rows of split seed {stab['split_seed']} (one noise draw, "
        "preprocessed), all on the same rows (no bootstrap); "
        f"{ran} ran, {stab['diverged']} diverged. Validation NLL per fit (nats per image, "
        f"preprocessed units): {val}; reference: seed {stab['reference_seed']} (the lowest). "
        f"Epochs run per fit: {stab['epochs_run']}. A component's reliability is the median, "
        f"over the other {ran - 1} fits, of |{stab['correlation']} correlation| with its "
        f"Hungarian-matched partner on these rows. Fitting took {stab['wall_s']:.0f} s."
    )
    summary = (
        f"Of {reliability.size} components: {counts}; median {np.median(reliability):.2f}. "
        "Is a component reliable because the class moves it? Spearman correlation over the "
        "components between reliability and the share of the component's variance between "
        f"classes (eta^2): {stab['spearman_reliability_class_share']:+.2f}; between "
        "reliability and the spread over classes of its log within-class scale: "
        f"{stab['spearman_reliability_scale_spread']:+.2f}."
    )
    most, least = shown_components(stab)
    header = (
        "rank",
        "component",
        "reliability",
        "eta^2 (between classes)",
        "log-scale spread",
        "class: highest mean",
        "class: lowest mean",
    )
    cells = []
    for i in (*most, *least):
        rank = list(stab["order"]).index(i) + 1
        high, low = classes[int(np.argmax(means[i]))], classes[int(np.argmin(means[i]))]
        cells.append(
            (
                rank,
                f"ŝ{i}",
                f"{reliability[i]:.3f}",
                f"{share[i]:.2f}",
                f"{spread[i]:.2f}",
                f"{high} ({means[i].max():+.2f} sd)",
                f"{low} ({means[i].min():+.2f} sd)",
            )
        )
    said = "; ".join(stab["warnings"]) or "none"
    return [
        "## Component reliability of the conditional model",
        intro,
        summary,
        f"Every component by decreasing reliability: {ranked}.",
        "The components pictured in `components.png` (the most and the least reliable):",
        harness.markdown_table(header, cells),
        "![reliability](reliability.png)\n\n![components](components.png)",
        "`components.png`: per component, the mean of the training images (pixels 0..16) "
        f"with the highest {EXTREME_FRACTION:.0%} of its values minus that of the lowest "
        f"{EXTREME_FRACTION:.0%}; and the derivative of the exact decoder "
        "v = T^-1(g^-1(s)) at the mean training image along the component, times the "
        "component's standard deviation (`jax.jvp`; pixels per standard deviation). The sign of "
        "a component is arbitrary, so a picture and its negative mean the same.",
        f"What nica said when given these data (`nica.stability` warnings): {said}.",
    ]


def _findings(rows: list[dict], stab: dict | None) -> list[str]:
    """What the numbers of this run show, one sentence each (compared, not judged)."""
    by = {(r["model"], r["key"]): r["test_ll_mean"] for r in rows}

    def compare(a, b, what):
        if a in by and b in by:
            gap = by[a] - by[b]
            word = "above" if gap > 0 else "below"
            return [f"- {what}: {abs(gap):.2f} nats per image {word} (test means over splits)."]
        return []

    lines = compare(
        ("nica-conditional", "test_ll_given_class"),
        ("nica-conditional", "class_gaussian_test_ll_given_class"),
        "Conditional nica's log p(x|c) against the Gaussian with class means",
    )
    lines += compare(
        ("nica-conditional", "test_ll"),
        ("nica", "test_ll"),
        "Its class mixture log p(x) against nica without u (what the class adds to the density)",
    )
    lines += compare(
        ("nica", "test_ll"),
        ("fastica", "test_ll"),
        "nica without u (nonlinear demixer, Gaussian base) against linear ICA (linear "
        "unmixing, fitted mixture marginals)",
    )
    lines += compare(
        ("fastica", "test_ll"),
        ("gaussian", "test_ll"),
        "Linear ICA against the full-covariance Gaussian (what non-Gaussian marginals add)",
    )
    best = max(
        (r for r in rows if r["key"] == "test_ll"), key=lambda r: r["test_ll_mean"], default=None
    )
    if best is not None:
        lines.append(f"- The highest test log p(x): `{best['model']}`.")
    if stab is not None:
        reliability = np.asarray(stab["reliability"])
        rho = stab["spearman_reliability_class_share"]
        lines.append(
            f"- {int((reliability >= 0.9).sum())} of {reliability.size} components of the "
            f"conditional model come back with |correlation| of at least 0.9 in the median "
            f"over {len(stab['seeds']) - stab['diverged'] - 1} other fits, "
            f"{int((reliability < 0.5).sum())} below 0.5; Spearman correlation of reliability "
            f"with the between-class share of variance {rho:+.2f}."
        )
    return lines


def _limits(stab: dict | None, n_classes: int, dim: int) -> list[str]:
    """What the study cannot show."""
    warned = stab is not None and any("IdentifiabilityWarning" in w for w in stab["warnings"])
    said = (
        "nica says so when given u: it warned `IdentifiabilityWarning` (quoted above)"
        if warned
        else "nica's check (`IdentifiabilityWarning`, fewer than 2D+1 segments) did not fire in "
        "this run"
    )
    return [
        "- It cannot show that any component is a true source: real data have no ground "
        "truth, the digits were not generated by a nonlinear ICA model, and no MCC can be "
        "computed.",
        "- Reliability across seeds is necessary, not sufficient, for identifiability: a "
        "wrong optimum that every seed finds is reliable too. The fits here share the data "
        "(no bootstrap), so reliability measures what initialisation, shuffling and nica's "
        "internal validation split change, not what another sample of digits would.",
        f"- The class is a coarse auxiliary variable: {n_classes} values for {dim} "
        f"components, far fewer than the 2D+1 = {2 * dim + 1} segments the iVAE theorem "
        f"(Khemakhem et al. 2020) asks for; {said}. So the theory does not promise that "
        "the conditional model's components are identifiable here, and the reliabilities "
        "are an empirical statement about this optimiser on these data.",
        "- The held-out numbers are densities of dequantised pixels (a lower bound on "
        "log P(digit)); log p(x|c) uses the test label and compares only with other "
        "conditional densities.",
        "- The pictures describe what a component does to the images; they do not say that "
        "it is a meaningful factor of handwriting.",
    ]


def _conclusions(rows: list[dict], stab: dict | None, n_classes: int, dim: int) -> str:
    """The closing section: what the run shows, then what it cannot."""
    return "\n".join(
        [
            "## What this study shows, and what it cannot",
            "",
            "Shows (held-out test rows no model trained or selected on; one preprocessing, "
            "every Jacobian counted):",
            "",
            *_findings(rows, stab),
            "",
            "Cannot show:",
            "",
            *_limits(stab, n_classes, dim),
        ]
    )


def to_markdown(
    rows: list[dict],
    records: list[dict],
    stab: dict | None,
    settings: dict,
    skipped: list[str],
    n_classes: int,
) -> str:
    """The report."""
    dim = IMAGE[0] * IMAGE[1]
    header = (
        "model",
        "quantity",
        "test nats per image ± 2 std (higher is better)",
        "bits/pixel (lower is better)",
        "params",
        "train wall (s)",
    )
    cells = [
        (
            r["description"]
            + ("" if r["key"].startswith("class_gaussian") else f" (`{r['model']}`)"),
            r["quantity"].replace("|", "\\|"),  # a bare | would end the cell
            f"{r['test_ll_mean']:.2f} ± {r['test_ll_2std']:.2f}",
            f"{r['bits_per_dim']:.3f}",
            r["params"],
            "—" if r["wall_s"] is None else f"{r['wall_s']:.1f}",
        )
        for r in rows
    ]
    shown = {k: v for k, v in settings.items() if k != "flow_widths"}
    depth = (
        "nica's depth (held-out table) chosen per split on the validation rows among "
        "`nica.apps.density.DENSITY_CANDIDATES`, as `density_real` does by default."
        if settings["depth"] is None
        else f"nica's depth (held-out table) fixed at {settings['depth']} (random start)."
    )
    notes = _held_out_notes(rows, records)
    if skipped:
        notes.append(f"Skipped: {', '.join(skipped)} ({flowjax_flows.INSTALL_HINT}).")
    blocks = [
        "Command: `.venv/bin/python -m experiments.case_study_digits --out "
        "results/case_study_digits`.",
        "scikit-learn's 8x8 digits (1797 images of 64 pixels 0..16, ten classes), the class "
        "as u. Settings: "
        + ", ".join(f"{k} {v}" for k, v in shown.items())
        + f". {depth} `experiments/density_real.py`'s functions fit the nica, Gaussian and "
        "flow rows here, with its keys and preprocessing (uniform dequantisation, logit with "
        "alpha 1e-6, every log-Jacobian counted, training rows repeated `copies` times with "
        "fresh noise).",
        "## Held-out log-likelihood",
        f"Test rows of {len(settings['seeds'])} random split(s) (70% train, 10% validation, "
        "20% test, one per seed); mean over splits ± 2 standard deviations; bits/pixel = "
        "-log p / (64 log 2); wall time of training one model on one split (every depth "
        "candidate, compilation included) on a shared CPU.",
        harness.markdown_table(header, cells),
        "\n\n".join(notes),
    ]
    if stab is not None:
        blocks += _reliability_section(stab, settings)
    blocks.append(_conclusions(rows, stab, n_classes, dim))
    return harness.markdown_document(
        "Case study: nonlinear ICA of the 8x8 digits with the class as u", *blocks
    )


#: The settings each kind of piece depends on (a held-out fit also on its split seed and model,
#: the stability run on the first split seed).
HELD_OUT_SETTINGS = (
    "epochs",
    "depth",
    "copies",
    "rows",
    "flow_layers",
    "flow_lr",
    "batch_size",
    "eval_every",
    "patience",
    "clip_norm",
    "nica_lr",
)
STABILITY_SETTINGS = ("epochs", "stability_depth", "fits", "copies", "rows")


def _read_previous(path: Path, settings: dict) -> tuple[list[dict], dict | None]:
    """``(records, stability)``: the finished pieces of an earlier run in ``path`` whose
    settings they depend on are this run's (none where they differ, or without ``path``)."""
    if not path.exists():
        return [], None
    previous = read_json(path)
    theirs = previous.get("settings", {})

    def same(names):
        return all(theirs.get(name) == settings[name] for name in names)

    records = previous.get("records", []) if same(HELD_OUT_SETTINGS) else []
    stab = previous.get("stability")
    if stab is not None and not (
        same(STABILITY_SETTINGS) and stab["split_seed"] == settings["seeds"][0]
    ):
        stab = None
    kept = f"{len(records)} held-out fit(s){' and the stability run' if stab else ''}"
    print(f"{path}: resuming with {kept}", flush=True)
    return records, stab


def main(argv: Sequence[str] | None = None) -> dict:
    """Parses arguments, runs (or resumes) every piece, writes the report; returns the record."""
    base = density_config(seed=0)
    smoke = {
        "seeds": [0],
        "epochs": 2,
        "copies": 1,
        "rows": 200,
        "flow_layers": 1,
        "depth": 2,
        "fits": 2,
    }
    parser = harness.experiment_parser(__doc__, out=Path("results/case_study_digits"), smoke=smoke)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="split seeds")
    parser.add_argument("--epochs", type=harness.positive_int, default=base.loop.epochs)
    parser.add_argument(
        "--depth",
        type=harness.positive_int,
        default=None,
        help="nica's demixer layers in the held-out table (default: chosen on the validation "
        "rows, as density_real does)",
    )
    parser.add_argument("--stability-depth", type=harness.positive_int, default=2)
    parser.add_argument("--fits", type=int, default=5, help="seeds of nica.stability (>= 2)")
    parser.add_argument("--copies", type=harness.positive_int, default=4)
    parser.add_argument("--rows", type=harness.positive_int, default=None, help="first rows only")
    parser.add_argument("--flow-layers", type=harness.positive_int, default=5)
    parser.add_argument("--flow-lr", type=float, default=1e-3, help="flows' peak learning rate")
    args = parser.parse_args(argv)
    if args.fits < 2:
        parser.error(f"--fits must be >= 2 (fits to compare), got {args.fits}")
    models = [m for m in MODELS if m in args.models]
    skipped = [m for m in models if m in flowjax_flows.FLOWS and not flowjax_flows.available()]
    models = [m for m in models if m not in skipped]
    settings = {
        **density_real.run_settings(args, base),
        "models": models,
        "stability_depth": args.stability_depth,
        "fits": args.fits,
        "rows": args.rows,
    }
    target = density_real._nica_target(settings)
    settings["flow_widths"] = density_real.flow_widths(models, target, settings)
    x, y = density_real.load_digits_data(args.rows)
    path = args.out / harness.RECORD_FILE
    previous, stab = _read_previous(path, settings)
    done = {(r["seed"], r["model"]): r for r in previous}

    def save():
        records = [done[s, m] for s in args.seeds for m in models if (s, m) in done]
        harness.write_record(path, {"settings": settings, "records": records, "stability": stab})
        return records

    for seed in args.seeds:
        data = None
        for name in models:
            if (seed, name) in done:
                continue
            if data is None:
                data, fit_key = split_data(seed, x, y, settings)
            record = fit_piece(name, data, fit_key, seed, settings)
            done[seed, name] = record
            print(
                f"seed {seed} {name}: test log-lik {record['test_ll']:.2f} nats per image, "
                f"{record['wall_s']:.0f} s",
                flush=True,
            )
            save()
    if stab is None:
        stab = run_stability(x, y, settings)
        print(f"stability: {args.fits} fits, {stab['wall_s']:.0f} s", flush=True)
    records = save()
    n_classes = int(np.unique(y).size)
    rows = summarise(records, models, x.shape[1], n_classes)
    text = to_markdown(rows, records, stab, settings, skipped, n_classes)
    record = {
        "settings": settings,
        "skipped": skipped,
        "rows": rows,
        "records": records,
        "stability": stab,
    }
    harness.write_report(args.out, record, text)
    plot_reliability(nica.Stability.from_dict(stab), args.out / "reliability.png")
    plot_components(stab, args.out / "components.png")
    return record


if __name__ == "__main__":
    main()
