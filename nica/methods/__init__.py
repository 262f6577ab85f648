"""Classic nonlinear-ICA baselines in the same harness as nica: iVAE and TCL.

Both take the same ``(x, u)`` arrays as ``nica.fit`` (validated by ``nica.fitting.data``), train
many seeds at once in one ``vmap``-ped program, and return a fitted object with ``transform``:

```python
from nica.methods import fit_ivae, fit_tcl

ivae = fit_ivae(x, u)  # u: (N,) segment labels or (N, d) covariates
s_hat = ivae.transform(x, u)  # (N, D): posterior means
tcl = fit_tcl(x, u)  # u: (N,) segment labels
s_hat = tcl.transform(x)  # (N, D): FastICA of the features, which follow |s|
```

:data:`BASELINES` is the registry ``nica run`` and ``nica fit --method`` use. Each entry says
what its ``transform`` recovers from the true sources ``s``: iVAE the sources themselves, TCL
their absolute values (its features are the sufficient statistics of scale-modulated sources,
which carry no sign), so experiments score TCL against ``|s|``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from nica.methods.ivae import IVAE, FittedIVAE, IVAEConfig, fit_ivae, fit_ivae_seeds, ivae_loss
from nica.methods.tcl import TCL, FittedTCL, TCLConfig, fit_tcl, fit_tcl_seeds, tcl_loss

__all__ = [
    "BASELINES",
    "IVAE",
    "TCL",
    "Baseline",
    "FittedIVAE",
    "FittedTCL",
    "IVAEConfig",
    "TCLConfig",
    "fit_ivae",
    "fit_ivae_seeds",
    "fit_tcl",
    "fit_tcl_seeds",
    "get_baseline",
    "ivae_loss",
    "tcl_loss",
]


class Baseline(NamedTuple):
    """A registered baseline.

    Attributes:
      name: registry key (``nica run`` model name, ``nica fit --method``).
      config: its config dataclass (``IVAEConfig`` / ``TCLConfig``), with ``to_dict``.
      fit_seeds: ``fit_seeds(xs, us, *, seeds, config=None, progress=None, **overrides)``.
      target_name: what ``transform`` recovers, in words (``"s"`` or ``"|s|"``).
      target: that quantity as a function of the true sources ``s (N, D)``.
      labels_only: whether ``u`` must be integer segment labels.
    """

    name: str
    config: type
    fit_seeds: Callable
    target_name: str
    target: Callable[[np.ndarray], np.ndarray]
    labels_only: bool


def _identity(s: np.ndarray) -> np.ndarray:
    return s


#: The baselines by name.
BASELINES: dict[str, Baseline] = {
    "ivae": Baseline("ivae", IVAEConfig, fit_ivae_seeds, "s", _identity, False),
    "tcl": Baseline("tcl", TCLConfig, fit_tcl_seeds, "|s|", np.abs, True),
}


def get_baseline(name: str) -> Baseline:
    """The baseline ``name``; a one-line ValueError naming the known ones otherwise."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}")
    return BASELINES[name]
