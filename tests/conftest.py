"""Shared fixtures: float64 mode for exactness tests, and an explicit PRNG key.

The suite compiles many small programs and runs each briefly, so XLA's CPU backend is asked for
its cheapest optimisation level (about half the compile time; the same numerics up to
floating-point reassociation). Set before JAX is imported, and inherited by the subprocess
tests; benchmarks and experiments run with XLA's defaults.
"""

import os

os.environ["XLA_FLAGS"] = " ".join(
    filter(None, [os.environ.get("XLA_FLAGS", ""), "--xla_backend_optimization_level=0"])
)

import jax  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def x64():
    """Runs the test with 64-bit floats enabled (restored afterwards)."""
    with jax.enable_x64(True):
        yield


@pytest.fixture
def key():
    """A fixed PRNG key; tests split it by name."""
    return jax.random.key(0)
