"""The auxiliary variable u through the public API: how it is read, the saved label set, and
the set-ups that cannot identify the sources (issue 24, items 1-4, 7 and 8)."""

import re
import warnings

import numpy as np
import pytest

import nica
from nica.fitting.auxiliary import (
    MIN_SEGMENT_ROWS,
    IdentifiabilityWarning,
    encode_aux,
    read_aux,
)
from nica.fitting.estimator import MIN_VALIDATION_ROWS
from nica.fitting.steps import validation_split
from synthetic import make_preset

FAST = {"epochs": 2, "depth": 2, "restarts": 1, "eval_every": 1}


@pytest.fixture(scope="module")
def data():
    return make_preset("tiny", 0)  # D = 2, 5 segments x 100


@pytest.fixture(scope="module")
def shifted(data):
    """A fit on labels 7k + 3 (k = 0..4): 5 segments whatever the values."""
    return nica.fit(data.x, 7 * data.u + 3, **FAST)


# --- items 1 and 2: labels are mapped through the saved set -----------------------------------


def test_labels_are_mapped_not_used_as_indices(shifted, data):
    assert shifted.aux == {"kind": "segments", "n_segments": 5, "labels": [3, 10, 17, 24, 31]}
    assert shifted.model.prior.n_segments == 5  # not max(u) + 1 = 32 rows
    # The same fit on the labels 0..4 gives the same model: only the label names differ.
    plain = nica.fit(data.x, data.u, **FAST)
    np.testing.assert_array_equal(plain.transform(data.x), shifted.transform(data.x))
    np.testing.assert_array_equal(
        plain.log_likelihood(data.x, data.u), shifted.log_likelihood(data.x, 7 * data.u + 3)
    )


@pytest.mark.parametrize("unseen", [0, 4, 32, 99, 5000, -1])
def test_a_label_never_seen_in_training_is_an_error_naming_it(shifted, data, unseen):
    u = np.full(3, unseen)
    with pytest.raises(ValueError, match=rf"label\(s\) {unseen} never seen in training") as err:
        shifted.log_likelihood(data.x[:3], u)
    assert len(str(err.value).splitlines()) == 1 and "3, 10, 17, 24, 31" in str(err.value)


def test_the_label_set_survives_the_checkpoint(shifted, data, tmp_path):
    loaded = nica.load(shifted.save(tmp_path / "ckpt"))
    assert loaded.aux == shifted.aux
    u = 7 * data.u[:20] + 3
    np.testing.assert_array_equal(
        loaded.log_likelihood(data.x[:20], u), shifted.log_likelihood(data.x[:20], u)
    )
    with pytest.raises(ValueError, match="never seen in training"):
        loaded.log_likelihood(data.x[:2], np.array([4, 4]))


def test_a_checkpoint_without_a_label_set_knows_labels_0_to_m_minus_1():
    aux = {"kind": "segments", "n_segments": 3}  # saved before labels were recorded
    np.testing.assert_array_equal(encode_aux(np.array([2, 0, 1]), aux), [2, 0, 1])
    with pytest.raises(ValueError, match="label\\(s\\) 3 never seen"):
        encode_aux(np.array([3]), aux)


def test_string_labels_fit_and_map(data):
    names = np.array(["rest", "task-a", "task-b", "task-c", "task-d"])[data.u]
    fitted = nica.fit(data.x, names, **FAST)
    assert fitted.aux["labels"] == ["rest", "task-a", "task-b", "task-c", "task-d"]
    ll = fitted.log_likelihood(data.x[:2], np.array(["task-d", "rest"]))
    assert ll.shape == (2,) and np.all(np.isfinite(ll))
    with pytest.raises(ValueError, match="'task-e' never seen"):
        fitted.log_likelihood(data.x[:1], np.array(["task-e"]))


# --- item 3: one rule for the shape of u ---------------------------------------------------


def _reading(u):
    reading = read_aux(u)
    return reading.aux["kind"], reading.description


READS = {
    "1-d-int": (lambda u: u, "segments", "segment labels (1-D"),
    "1-d-whole-float": (lambda u: u.astype(float), "segments", "segment labels (1-D"),
    "column-int": (lambda u: u[:, None], "segments", "segment labels (one column"),
    "one-hot-float": (lambda u: np.eye(5)[u], "segments", "one-hot segment labels"),
    "one-hot-int": (lambda u: np.eye(5, dtype=int)[u], "segments", "one-hot segment labels"),
    "column-float": (lambda u: u[:, None] / 4.0, "continuous", "a continuous covariate"),
    "two-covariates": (lambda u: np.c_[u, u**2] / 8.0, "continuous", "2 continuous covariates"),
}


@pytest.mark.parametrize("case", READS.values(), ids=READS.keys())
def test_u_is_read_by_one_rule_said_in_one_line(case, data):
    make, kind, said = case
    got_kind, description = _reading(make(data.u))
    assert got_kind == kind and said in description and "\n" not in description
    if kind == "segments":
        assert read_aux(make(data.u)).aux["labels"] == [0, 1, 2, 3, 4]
        np.testing.assert_array_equal(read_aux(make(data.u)).values, data.u)


def test_labels_in_a_column_or_one_hot_fit_the_segment_model(data):
    """(N, 1) integer and one-hot labels were fitted as continuous covariates before."""
    by_label = nica.fit(data.x, data.u, **FAST)
    for u in (data.u[:, None], np.eye(5)[data.u]):
        fitted = nica.fit(data.x, u, **FAST)
        assert fitted.aux == by_label.aux
        np.testing.assert_array_equal(fitted.transform(data.x), by_label.transform(data.x))
        # New data may come in either format.
        np.testing.assert_array_equal(
            fitted.log_likelihood(data.x[:4], np.eye(5)[data.u[:4]]),
            by_label.log_likelihood(data.x[:4], data.u[:4]),
        )


@pytest.mark.parametrize(
    "u, message",
    [
        (lambda n: np.arange(n) + 0.5, "non-integer values"),
        (lambda n: np.c_[np.arange(n), np.arange(n)] % 3, "neither segment labels"),
        (lambda n: np.zeros((n, 2, 2)), r"must have shape \(\d+,\) or \(\d+, d\)"),
    ],
)
def test_u_that_is_neither_labels_nor_covariates_is_refused(u, message, data):
    with pytest.raises(ValueError, match=message) as err:
        nica.fit(data.x, u(len(data.x)), **FAST)
    assert len(str(err.value).splitlines()) == 1


def test_new_u_of_the_wrong_kind_is_refused(shifted, data):
    with pytest.raises(ValueError, match="fitted on segment labels; u was read as"):
        shifted.log_likelihood(data.x[:3], np.ones((3, 1)) * 0.5)
    with pytest.raises(ValueError, match=r"the model is unconditional \(Eq. 3\): pass no u"):
        nica.fit(data.x, None, **FAST).log_likelihood(data.x[:3], data.u[:3])


# --- item 4: set-ups that cannot identify the sources ---------------------------------------


def _one_line_refusal(match, *args, **kwargs):
    with pytest.raises(ValueError, match=match) as err:
        nica.fit(*args, **{**FAST, **kwargs})
    assert len(str(err.value).splitlines()) == 1
    return str(err.value)


def test_one_segment_is_refused(data):
    _one_line_refusal("u holds a single segment label", data.x, np.zeros(len(data.x), int))


def test_segments_too_small_to_estimate_are_refused(data):
    n = len(data.x)
    message = _one_line_refusal(
        f"fewer than {MIN_SEGMENT_ROWS} rows", data.x, np.arange(n)
    )  # u = arange(N): N one-point segments
    assert "0 (1 row)" in message
    u = data.u.copy()
    u[: MIN_SEGMENT_ROWS - 1] = 9  # one small segment among large ones is named
    assert "9 (4 rows)" in _one_line_refusal("fewer than", data.x, u)


def test_one_column_is_refused(data):
    _one_line_refusal("x has a single column", data.x[:, :1], data.u)


def test_a_validation_split_too_small_to_choose_is_refused(data):
    x, u = data.x[:50], np.arange(50) % 5  # 5 validation rows choosing among 8 restarts
    message = _one_line_refusal(
        "the validation split has 5 rows", x, u, restarts=8, depth=2, **{"epochs": 2}
    )
    assert f"fewer than {MIN_VALIDATION_ROWS}" in message and "8 restarts" in message
    # One initialisation and one depth choose nothing: the same data fit.
    nica.fit(x, u + 0, **{**FAST, "restarts": 1})


def test_fewer_segments_than_the_theorem_needs_warns(data):
    with pytest.warns(IdentifiabilityWarning, match=r"3 segments for 2 sources.*2D\+1 = 5"):
        nica.fit(data.x, data.u % 3, **FAST)
    with warnings.catch_warnings():
        warnings.simplefilter("error", IdentifiabilityWarning)
        nica.fit(data.x, data.u, **FAST)  # 5 = 2D + 1 segments: no warning


# --- items 7 and 8: units and the names in errors -------------------------------------------


def test_validation_nll_is_in_the_units_of_x(data):
    """The recorded validation NLL is -log p(x|u) of the validation rows in x's units, the
    quantity FittedModel.log_likelihood returns (it was in standardised units before)."""
    x = data.x * np.array([100.0, 0.01])  # far from unit scale: the units matter
    fitted = nica.fit(x, data.u, **FAST)
    split_key = nica.fitting.estimator.seed_keys(0, 1)[0]
    _, val = validation_split(split_key, len(x), fitted.config.loop.validation_fraction)
    best = fitted.result.best_val_nll
    assert best == pytest.approx(-fitted.log_likelihood(x[val], data.u[val]).mean(), rel=1e-4)
    history = fitted.result.history
    assert min(history["val_nll"]) == best


def test_library_errors_name_x_and_u_not_a_seed(data):
    x = data.x.copy()
    x[:, 1] = 3.0
    message = _one_line_refusal(r"^x: column 1 is constant", x, data.u)
    assert "seed" not in message
    assert re.match(r"^u: ", _one_line_refusal("single segment", data.x, np.ones(len(x), int)))
    with pytest.raises(ValueError, match=r"^xs\[1\]: column 1 is constant"):
        nica.fit_seeds([data.x, x], [data.u, data.u], seeds=[0, 1], **FAST)
