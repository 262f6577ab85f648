"""Two-dimensional toy densities for density-estimation demos.

Each sampler takes a numpy Generator and a sample count and returns an ``(n, 2)`` float64 array
roughly inside ``[-4, 4]^2``. :data:`TOY2D` maps names to samplers; :func:`sample_toy2d` is the
seeded entry point.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Sampler = Callable[[np.random.Generator, int], np.ndarray]


def _moons(rng: np.random.Generator, n: int) -> np.ndarray:
    """Two interleaved half circles with Gaussian jitter."""
    upper = rng.random(n) < 0.5
    t = rng.uniform(0.0, np.pi, n)
    x = np.where(upper, np.cos(t), 1.0 - np.cos(t))
    y = np.where(upper, np.sin(t), 0.5 - np.sin(t))
    pts = np.stack([x - 0.5, y - 0.25], axis=1) * 2.0
    return pts + 0.1 * rng.standard_normal((n, 2))


def _rings(rng: np.random.Generator, n: int) -> np.ndarray:
    """Four concentric rings, mass proportional to circumference."""
    radii = np.array([0.75, 1.5, 2.25, 3.0])
    ring = rng.choice(radii.size, size=n, p=radii / radii.sum())
    angle = rng.uniform(0.0, 2.0 * np.pi, n)
    r = radii[ring] + 0.08 * rng.standard_normal(n)
    return np.stack([r * np.cos(angle), r * np.sin(angle)], axis=1)


def _two_spirals(rng: np.random.Generator, n: int) -> np.ndarray:
    """Two interleaved Archimedean spirals."""
    t = np.sqrt(rng.random(n)) * 3.0 * np.pi  # sqrt: uniform-ish density along the arc
    arm = np.where(rng.random(n) < 0.5, 1.0, -1.0)
    pts = arm[:, None] * np.stack([t * np.cos(t), t * np.sin(t)], axis=1) / 3.0
    return pts + 0.1 * rng.standard_normal((n, 2))


def _checkerboard(rng: np.random.Generator, n: int) -> np.ndarray:
    """Uniform on the 'black' cells of a 4 x 4 checkerboard on [-2, 2]^2 (scaled by 1.5)."""
    col = rng.integers(0, 4, n)
    row = 2 * rng.integers(0, 2, n) + (col % 2)  # row + col even
    cell = np.stack([col, row], axis=1).astype(np.float64)
    return (cell + rng.random((n, 2)) - 2.0) * 1.5


def _sine(rng: np.random.Generator, n: int) -> np.ndarray:
    """A noisy sine wave ``y = 2 sin(x)``, x uniform on [-pi, pi]."""
    x = rng.uniform(-np.pi, np.pi, n)
    y = 2.0 * np.sin(x) + 0.2 * rng.standard_normal(n)
    return np.stack([x, y], axis=1)


def _trimodal(rng: np.random.Generator, n: int) -> np.ndarray:
    """A three-component Gaussian mixture with unequal weights and anisotropic covariances."""
    means = np.array([[0.0, 2.0], [-1.8, -1.2], [1.8, -1.2]])
    chol = np.array(
        [
            [[0.5, 0.0], [0.0, 0.3]],
            [[0.4, 0.0], [0.25, 0.3]],
            [[0.3, 0.0], [-0.2, 0.45]],
        ]
    )
    comp = rng.choice(3, size=n, p=[0.5, 0.3, 0.2])
    z = rng.standard_normal((n, 2))
    return means[comp] + np.einsum("nij,nj->ni", chol[comp], z)


def _eight_gaussians(rng: np.random.Generator, n: int) -> np.ndarray:
    """Eight small Gaussians evenly spaced on a circle of radius 2.5."""
    angle = rng.integers(0, 8, n) * (np.pi / 4.0)
    centres = 2.5 * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return centres + 0.2 * rng.standard_normal((n, 2))


TOY2D: dict[str, Sampler] = {
    "moons": _moons,
    "rings": _rings,
    "two_spirals": _two_spirals,
    "checkerboard": _checkerboard,
    "sine": _sine,
    "trimodal": _trimodal,
    "eight_gaussians": _eight_gaussians,
}


def sample_toy2d(seed: int | np.random.Generator, name: str, n: int) -> np.ndarray:
    """Draws ``n`` points from the named 2-D toy density.

    Args:
        seed: integer seed or numpy Generator.
        name: a key of :data:`TOY2D`.
        n: number of points (positive).

    Returns:
        ``(n, 2)`` float64 array.

    Raises:
        ValueError: unknown name or non-positive ``n``.
    """
    if name not in TOY2D:
        raise ValueError(f"unknown toy density {name!r}; known: {', '.join(sorted(TOY2D))}")
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    return TOY2D[name](np.random.default_rng(seed), int(n)).astype(np.float64)
