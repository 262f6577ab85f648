"""Density estimation on real data: scikit-learn's 8x8 digits against flowjax (the paper's Table 1).

The paper's Table 1 data sets (POWER, GAS, HEPMASS, MINIBOONE, BSDS300, MNIST) are downloads;
the 8x8 digits ship with scikit-learn (1797 images, 64 pixels with values 0..16, ten classes)
and stand in. Every model sees the same split (70% train, 10% validation for early stopping,
20% test, drawn per seed) and the same preprocessing: uniform dequantisation, then the logit
with MAF's alpha = 1e-6, with every log-Jacobian counted, so the test log-likelihood is the
density of the dequantised pixels in pixel units (a lower bound on log P(digit); nats per
image, and bits per pixel). The training rows appear 4 times with fresh noise (the library
default is 8; 4 keeps the run within a shared 2-core CPU budget).

Models: nica as ``nica density`` fits it by default (square 64x64 layers, Gaussian base,
relative gradient in relative coordinates, the depth chosen per seed on the validation rows
among ``nica.apps.density.DENSITY_CANDIDATES``; ``--depth L`` fixes it; also the ordinary
gradient), a full-covariance Gaussian, and flowjax's masked autoregressive flow and coupling
flow (5 layers, affine, one hidden layer whose width is chosen so the parameter count is a
3-layer nica's within 20%). Conditional variant: nica with the class as u (Eq. 4: a per-class
mean and scale for every component); the table gives its log p(x), the mixture over classes
with the training class frequencies, and the notes its log p(x | class) next to a Gaussian's
with class means and a pooled covariance, and its Bayes classifier's test accuracy.

Command::

    .venv/bin/python -m experiments.density_real --out results/density_real

Writes ``results.json``, ``report.md``, ``samples.png`` and ``components.png``.
``--smoke`` is a tiny run for the tests. Without flowjax (``pip install -e ".[compare]"``) the
flows are skipped and the report says so.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from experiments import flowjax_flows, harness
from nica.apps.density import (
    DensityData,
    DensityModel,
    Preprocessing,
    bits_per_dim,
    class_gaussian_log_likelihood,
    density_batch_size,
    density_config,
    fit_nica,
    gaussian_log_likelihood,
    prepare_density_data,
    select_nica,
    training_class_log_prior,
)
from nica.fitting.data import standardise

#: Model name -> (description, FitConfig overrides) for the nica variants.
NICA_MODELS = {
    "nica": ("nica, relative gradient (default)", {"conditional": False}),
    "nica-ordinary": ("nica, ordinary gradient", {"conditional": False, "gradient": "ordinary"}),
    "nica-conditional": ("nica, conditional on the class (Eq. 4)", {"conditional": True}),
}
OTHER_MODELS = {
    "gaussian": "full-covariance Gaussian",
    "maf": "flowjax masked autoregressive flow",
    "coupling": "flowjax coupling flow (Real NVP)",
}
MODELS = (*NICA_MODELS, *OTHER_MODELS)
DIGITS = Preprocessing(logit=True, low=0, high=16, dequantise=True)
IMAGE = (8, 8)


def load_digits_data(n_rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits: pixels ``(N, 64)`` (integers 0..16) and labels ``(N,)``."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.data[:n_rows], digits.target[:n_rows].astype(np.int32)


def count_nica_parameters(model) -> int:
    """Entries of every ``nnx.Param`` of a module."""
    return sum(int(np.size(a)) for a in jax.tree.leaves(nnx.state(model, nnx.Param)))


def gaussian_parameters(dim: int) -> int:
    """A mean and a symmetric covariance: ``D + D (D + 1) / 2``."""
    return dim + dim * (dim + 1) // 2


def fit_nica_model(key, data: DensityData, name: str, settings: dict) -> tuple[dict, DensityModel]:
    """Fits one nica variant (the depth chosen on the validation rows unless
    ``settings["depth"]``); returns its record and the model."""
    batch = density_batch_size(*data.z_train.shape)
    config = density_config(
        seed=0, epochs=settings["epochs"], batch_size=batch, **NICA_MODELS[name][1]
    )
    start = time.perf_counter()
    if settings["depth"] is None:
        fitted, selection = select_nica(key, data, config)
        depth = selection.candidates[selection.chosen].name
    else:
        fitted = fit_nica(key, data, config.replace(depth=settings["depth"]))
        depth = f"depth {settings['depth']}"
    model = DensityModel(fitted, DIGITS)
    u_test = data.u_test if fitted.aux else None
    test = fitted.log_likelihood(data.z_test, u_test) + data.log_det_test
    record = {
        "test_ll": float(test.mean()),
        "params": count_nica_parameters(fitted.model),
        "wall_s": time.perf_counter() - start,
        "depth": depth,
        "best_epoch": fitted.result.best_epoch,
        "epochs_run": fitted.result.epochs_run,
    }
    if fitted.aux:
        n_classes = fitted.aux["n_segments"]
        v_test = data.v[data.split.test]
        per_class = model.class_log_likelihoods(v_test)
        log_prior = training_class_log_prior(data, n_classes)
        record["test_ll_given_class"] = record["test_ll"]
        record["test_ll"] = float(model.marginal_log_likelihood(v_test, log_prior).mean())
        predicted = model.labels[np.argmax(per_class + log_prior, 1)]
        record["accuracy"] = float(np.mean(predicted == data.u_test))
        gaussian = class_gaussian_log_likelihood(
            data.z_train, data.codes(data.u_train), data.z_test, data.codes(u_test)
        )
        record["class_gaussian_test_ll_given_class"] = float((gaussian + data.log_det_test).mean())
    return record, model


def fit_gaussian(data: DensityData) -> dict:
    """The full-covariance Gaussian of the preprocessed training rows."""
    start = time.perf_counter()
    test = gaussian_log_likelihood(data.z_train, data.z_test) + data.log_det_test
    return {
        "test_ll": float(test.mean()),
        "params": gaussian_parameters(data.z_test.shape[1]),
        "wall_s": time.perf_counter() - start,
    }


def fit_flowjax(key, data: DensityData, kind: str, width: int, settings: dict) -> tuple:
    """Fits a flowjax flow on the standardised training rows; returns ``(record, sampler)``,
    ``sampler(key, n)`` giving pixels ``(n, D)``."""
    z_train, standard = standardise(data.z_train, where="training split")
    build_key, fit_key = jax.random.split(key)
    flow = flowjax_flows.build_flow(
        build_key, kind, z_train.shape[1], width=width, layers=settings["flow_layers"]
    )
    flow, info = flowjax_flows.fit_flow(
        fit_key,
        flow,
        z_train,
        standard.apply(data.z_val),
        epochs=settings["epochs"],
        batch_size=settings["batch_size"],
        learning_rate=settings["flow_lr"],
        clip_norm=settings["clip_norm"],
        eval_every=settings["eval_every"],
        patience=settings["patience"],
    )
    log_q = flowjax_flows.log_prob(flow, standard.apply(data.z_test))
    test = log_q - np.log(standard.scale).sum() + data.log_det_test
    record = {
        "test_ll": float(test.mean()),
        "params": flowjax_flows.count_parameters(flow),
        "width": width,
        **info,
    }

    def sampler(sample_key, n):
        z = flowjax_flows.sample(sample_key, flow, n) * standard.scale + standard.mean
        return DIGITS.inverse(z)

    return record, sampler


def run_seed(seed: int, models: Sequence[str], widths: dict, settings: dict, x, y) -> tuple:
    """Every model on one seed's split; returns ``(records, samples)`` (pixels per model)."""
    data_key, fit_key, sample_key = jax.random.split(jax.random.key(seed), 3)
    data = prepare_density_data(
        data_key, x, y, preprocessing=DIGITS, copies=settings["copies"], where="digits"
    )
    records, samples = {}, {"data": data.v[data.split.test][:10]}
    n = 10
    for name in models:
        key = jax.random.fold_in(fit_key, MODELS.index(name))
        if name in NICA_MODELS:
            record, model = fit_nica_model(key, data, name, settings)
            labels = np.arange(n, dtype=np.int32) % 10 if model.fitted.aux else None
            samples[name] = model.sample(sample_key, n, labels)
            if name == "nica-conditional":
                samples["_conditional_model"] = model
                samples["_test_v"] = data.v[data.split.test]
        elif name == "gaussian":
            record = fit_gaussian(data)
        else:
            record, sampler = fit_flowjax(key, data, name, widths[name], settings)
            samples[name] = sampler(sample_key, n)
        record.update(model=name, seed=seed)
        records[name] = record
        print(
            f"seed {seed} {name}: test log-lik {record['test_ll']:.2f}, {record['wall_s']:.0f} s",
            flush=True,
        )
    return records, samples


def summarise_rows(records: list[dict], models: Sequence[str], dim: int) -> list[dict]:
    """Per model: mean and 2 std over seeds of the test log-likelihood, bits per pixel,
    parameters, mean wall time."""
    rows = []
    for name in models:
        mine = [r for r in records if r["model"] == name]
        ll = np.array([r["test_ll"] for r in mine])
        row = {
            "model": name,
            "seeds": len(mine),
            "test_ll_mean": float(ll.mean()),
            "test_ll_2std": float(2 * ll.std(ddof=1)) if ll.size > 1 else 0.0,
            "bits_per_dim": bits_per_dim(float(ll.mean()), dim),
            "params": mine[0]["params"],
            "wall_s": float(np.mean([r["wall_s"] for r in mine])),
        }
        for extra in ("test_ll_given_class", "class_gaussian_test_ll_given_class", "accuracy"):
            if extra in mine[0]:
                row[extra] = float(np.mean([r[extra] for r in mine]))
        if "depth" in mine[0]:
            row["depths"] = [r["depth"] for r in mine]
        rows.append(row)
    return rows


def _description(name: str) -> str:
    return NICA_MODELS[name][0] if name in NICA_MODELS else OTHER_MODELS[name]


def to_markdown(rows: list[dict], settings: dict, skipped: list[str]) -> str:
    """The table (and notes) of the report."""
    header = (
        "model",
        "test log p(x), nats per image ± 2 std (higher is better)",
        "bits/pixel (lower is better)",
        "params",
        "train wall (s)",
    )
    cells = [
        (
            f"{_description(r['model'])} (`{r['model']}`)",
            f"{r['test_ll_mean']:.2f} ± {r['test_ll_2std']:.2f}",
            f"{r['bits_per_dim']:.3f}",
            r["params"],
            f"{r['wall_s']:.1f}",
        )
        for r in rows
    ]
    notes = []
    for r in rows:
        if "accuracy" in r:
            notes.append(
                f"`{r['model']}`: the table gives log p(x) = log sum_c p(c) p(x|c) (class "
                f"frequencies of the training rows), comparable with the other rows; its "
                f"conditional log p(x|class) = {r['test_ll_given_class']:.2f} nats per image "
                f"(higher is better), against {r['class_gaussian_test_ll_given_class']:.2f} for "
                f"a Gaussian with class means and a pooled full covariance; Bayes-classifier "
                f"test accuracy {r['accuracy']:.3f}."
            )
        if "depths" in r:
            notes.append(f"`{r['model']}` depth per seed: {', '.join(r['depths'])}.")
    if skipped:
        notes.append(f"Skipped: {', '.join(skipped)} ({flowjax_flows.INSTALL_HINT}).")
    return harness.markdown_document(
        "Density estimation on the 8x8 digits (test log-likelihood, higher is better)",
        "Command: `.venv/bin/python -m experiments.density_real --out results/density_real`.",
        ", ".join(f"{k} {v}" for k, v in settings.items())
        + " (depth None: chosen per seed on the validation rows); mean over seeds ± 2 "
        "standard deviations; wall time of training one model (every depth candidate, "
        "compilation included) on a shared 2-core CPU.",
        harness.markdown_table(header, cells),
        "\n\n".join(notes),
    )


def plot_samples(samples: dict, path: Path) -> None:
    """One row of 10 images per model (the data's test images first)."""
    plt = harness.pyplot()
    rows = [k for k in samples if not k.startswith("_")]
    fig, axes = plt.subplots(len(rows), 10, figsize=(8.5, 0.95 * len(rows) + 0.3), squeeze=False)
    for ax_row, name in zip(axes, rows, strict=True):
        for ax, image in zip(ax_row, samples[name], strict=True):
            ax.imshow(np.clip(image, 0, 17).reshape(IMAGE), cmap="gray_r", vmin=0, vmax=17)
            ax.set_xticks([])
            ax.set_yticks([])
        ax_row[0].set_ylabel(name, fontsize=8, rotation=0, ha="right", va="center")
    fig.suptitle("Test images and samples through the exact inverse (conditional: classes 0-9)")
    fig.tight_layout()
    harness.save_figure(fig, path, dpi=100)


def component_sweeps(model: DensityModel, v0: np.ndarray, n_components: int, steps: int):
    """Images from moving one component of ``s0 = g(T(v0))`` at a time through the exact inverse.

    The components shown are those whose class means differ most (between-class standard
    deviation of the prior's means over the pooled scale); each moves over
    ``s0_i + scale_i * [-3, 3]``. Returns ``(components (K,), images (K, steps, D),
    prototypes (C, D))``, the prototypes being ``T^{-1}(g^{-1}(mean of class c))``.
    """
    prior = model.fitted.model.prior
    loc, scale = np.asarray(prior.loc[...]), np.exp(np.asarray(prior.log_scale[...]))
    spread = loc.std(axis=0) / scale.mean(axis=0)
    components = np.argsort(-spread)[:n_components]
    z0, _ = model.preprocessing.forward_and_log_det(v0[None])
    s0 = model.fitted.transform(z0)[0]
    offsets = np.linspace(-3.0, 3.0, steps)
    images = []
    for i in components:
        s = np.repeat(s0[None], steps, axis=0)
        s[:, i] += offsets * scale[:, i].mean()
        images.append(model.preprocessing.inverse(model.fitted.inverse(s)))
    prototypes = model.preprocessing.inverse(model.fitted.inverse(loc))
    return components, np.stack(images), prototypes


def plot_components(model: DensityModel, v0: np.ndarray, path: Path, steps: int = 9) -> None:
    """The class prototypes, then one row per component swept (:func:`component_sweeps`)."""
    components, images, prototypes = component_sweeps(model, v0, 8, steps)
    plt = harness.pyplot()
    cols = max(steps, prototypes.shape[0])
    rows = 1 + len(components)
    fig, axes = plt.subplots(rows, cols, figsize=(0.85 * cols + 1.2, 0.9 * rows + 0.6))
    for ax in axes.ravel():
        ax.axis("off")
    grid = [(0, prototypes, "class means")]
    grid += [(k + 1, images[k], f"s{components[k]}") for k in range(len(components))]
    for r, pictures, label in grid:
        for c, image in enumerate(pictures):
            ax = axes[r, c]
            ax.imshow(np.clip(image, 0, 17).reshape(IMAGE), cmap="gray_r", vmin=0, vmax=17)
        first = axes[r, 0]
        first.text(-0.15, 0.5, label, transform=first.transAxes, ha="right", va="center")
    fig.suptitle(
        "Conditional nica: g^-1 of each class's prior mean (top); one component of a test "
        "image's sources moved from -3 to +3 prior scales (rows)",
        fontsize=9,
    )
    fig.tight_layout()
    harness.save_figure(fig, path, dpi=100)


def flow_widths(models: Sequence[str], target: int, settings: dict) -> dict:
    """The conditioner width of each flow whose parameter count matches ``target``."""
    return {
        name: flowjax_flows.match_width(name, 64, target, layers=settings["flow_layers"])[0]
        for name in models
        if name in flowjax_flows.FLOWS
    }


def _nica_target(settings: dict) -> int:
    depth = settings["depth"] or 3  # the deepest default candidate
    return depth * (64 * 64 + 64)  # square layers: kernel and bias


def run_settings(args, base) -> dict:
    """The recorded settings of a run: the command line's ``seeds``, ``epochs``, ``depth``,
    ``copies``, ``flow_layers``, ``flow_lr`` and the nica training settings of ``base`` (a
    ``FitConfig``)."""
    return {
        "seeds": list(args.seeds),
        "epochs": args.epochs,
        "depth": args.depth,
        "copies": args.copies,
        "flow_layers": args.flow_layers,
        "flow_lr": args.flow_lr,
        "batch_size": base.loop.batch_size,
        "eval_every": base.loop.eval_every,
        "patience": base.loop.patience,
        "clip_norm": base.optimizer.clip_norm,
        "nica_lr": base.optimizer.learning_rate,
    }


def main(argv: Sequence[str] | None = None) -> list[dict]:
    """Parses arguments, fits every model on every seed, writes the report; returns rows."""
    base = density_config(seed=0)
    smoke = {"seeds": [0], "epochs": 2, "copies": 1, "rows": 200, "flow_layers": 1, "depth": 2}
    parser = harness.experiment_parser(__doc__, out=Path("results/density_real"), smoke=smoke)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=harness.positive_int, default=base.loop.epochs)
    parser.add_argument(
        "--depth",
        type=harness.positive_int,
        default=None,
        help="demixer layers (default: chosen on the validation rows, as nica density does)",
    )
    parser.add_argument("--copies", type=harness.positive_int, default=4)
    parser.add_argument("--rows", type=harness.positive_int, default=None, help="first rows only")
    parser.add_argument("--flow-layers", type=harness.positive_int, default=5)
    parser.add_argument("--flow-lr", type=float, default=1e-3, help="flows' peak learning rate")
    args = parser.parse_args(argv)
    settings = run_settings(args, base)
    models = list(args.models)
    skipped = [m for m in models if m in flowjax_flows.FLOWS and not flowjax_flows.available()]
    models = [m for m in models if m not in skipped]
    widths = flow_widths(models, _nica_target(settings), settings)
    settings["flow_widths"] = widths
    x, y = load_digits_data(args.rows)
    records, first = [], None
    for seed in args.seeds:
        seed_records, samples = run_seed(seed, models, widths, settings, x, y)
        records += seed_records.values()
        first = first or samples
    rows = summarise_rows(records, models, x.shape[1])
    shown = {k: v for k, v in settings.items() if k != "flow_widths"}
    text = to_markdown(rows, shown, skipped)
    record = {"settings": settings, "skipped": skipped, "rows": rows, "records": records}
    harness.write_report(args.out, record, text)
    plot_samples(first, args.out / "samples.png")
    if "_conditional_model" in first:
        model, image = first["_conditional_model"], first["_test_v"][0]
        plot_components(model, image, args.out / "components.png")
    return rows


if __name__ == "__main__":
    main()
