"""The methods in one registry: nica's two models, FastICA, and the nonlinear-ICA baselines.

:data:`METHODS` (:func:`get_method`) is what ``nica run`` and ``nica fit --method`` use: every
method behind one small protocol (:class:`Method`), each seed's fit read alike
(:class:`MethodFit`). iVAE and TCL are written here in the same harness as nica: they take the
same ``(x, u)`` arrays as ``nica.fit`` (validated by ``nica.fitting.data``), train many seeds at
once in one ``vmap``-ped program, and return a fitted object with ``transform``:

```python
from nica.methods import fit_ivae, fit_tcl

ivae = fit_ivae(x, u)  # u: (N,) segment labels or (N, d) covariates
s_hat = ivae.transform(x, u)  # (N, D): posterior means
tcl = fit_tcl(x, u)  # u: (N,) segment labels
s_hat = tcl.transform(x)  # (N, D): FastICA of the features, which follow |s|
```
"""

from __future__ import annotations

from nica.methods.fastica import FastICAConfig, FittedFastICA, fit_fastica_seeds
from nica.methods.ivae import IVAE, FittedIVAE, IVAEConfig, fit_ivae, fit_ivae_seeds, ivae_loss
from nica.methods.nica_models import NicaModel
from nica.methods.protocol import Method, MethodFit
from nica.methods.registry import METHODS, Baseline, get_method
from nica.methods.settings import with_settings
from nica.methods.tcl import TCL, FittedTCL, TCLConfig, fit_tcl, fit_tcl_seeds, tcl_loss

__all__ = [
    "IVAE",
    "METHODS",
    "TCL",
    "Baseline",
    "FastICAConfig",
    "FittedFastICA",
    "FittedIVAE",
    "FittedTCL",
    "IVAEConfig",
    "Method",
    "MethodFit",
    "NicaModel",
    "TCLConfig",
    "fit_fastica_seeds",
    "fit_ivae",
    "fit_ivae_seeds",
    "fit_tcl",
    "fit_tcl_seeds",
    "get_method",
    "ivae_loss",
    "tcl_loss",
    "with_settings",
]
