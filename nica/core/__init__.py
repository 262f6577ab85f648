"""The method: relative gradient, gradient modes, invertible network, activations, priors,
the ICA model and the recovery metrics.

Imports only `nica.util` (docs/architecture.md).
"""
