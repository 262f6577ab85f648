"""Fitting arrays: data checks, the auxiliary variable, typed configuration, the trainer and
the estimator (`nica.fit`).

Imports `nica.core` and `nica.util` (docs/architecture.md).
"""
