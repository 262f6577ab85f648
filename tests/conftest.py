"""Shared fixtures: float64 mode for exactness tests, and an explicit PRNG key."""

import jax
import pytest


@pytest.fixture
def x64():
    """Runs the test with 64-bit floats enabled (restored afterwards)."""
    with jax.enable_x64(True):
        yield


@pytest.fixture
def key():
    """A fixed PRNG key; tests split it by name."""
    return jax.random.key(0)
