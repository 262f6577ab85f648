"""Shared fixtures: float64 mode for exactness tests, and an explicit PRNG key.

The suite compiles many small programs and runs each briefly, so XLA's CPU backend is asked for
its cheapest optimisation level (about half the compile time; the same numerics up to
floating-point reassociation). Set before JAX is imported, and inherited by the subprocess
tests; benchmarks and experiments run with XLA's defaults.

Compiled programs are cached in the git-ignored ``.pytest_cache/nica-jax`` of the checkout, never
in the user's folder (``NICA_CACHE_DIR``, inherited by the subprocess tests; a
``JAX_COMPILATION_CACHE_DIR`` of the user's is dropped): the xdist workers and subprocesses share
it, and a second run of the suite finds its programs compiled. ``NICA_CACHE_DIR=off pytest``
runs without it; ``pytest --cache-clear`` empties it.
"""

import os
from pathlib import Path

os.environ["XLA_FLAGS"] = " ".join(
    filter(None, [os.environ.get("XLA_FLAGS", ""), "--xla_backend_optimization_level=0"])
)
os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)
if os.environ.get("NICA_CACHE_DIR", "").strip().lower() != "off":
    os.environ["NICA_CACHE_DIR"] = str(
        Path(__file__).resolve().parents[1] / ".pytest_cache" / "nica-jax"
    )

import jax  # noqa: E402
import pytest  # noqa: E402

# pytest-xdist's controller imports a warning's module when a worker reports one, from one
# thread per worker; two workers reporting nica's warnings at once could deadlock on the import
# lock (seen with IdentifiabilityWarning). Importing the warnings' modules here, once, first,
# removes the race.
import nica.fitting.auxiliary  # noqa: E402, F401
import nica.fitting.data  # noqa: E402, F401


@pytest.fixture
def x64():
    """Runs the test with 64-bit floats enabled (restored afterwards)."""
    with jax.enable_x64(True):
        yield


@pytest.fixture
def key():
    """A fixed PRNG key; tests split it by name."""
    return jax.random.key(0)
