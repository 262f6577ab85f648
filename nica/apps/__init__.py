"""The applications: the `nica` command, the experiment runner, density estimation, plots.

The top layer (docs/architecture.md): it may import every layer below it and `synthetic`.
"""
