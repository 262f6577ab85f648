"""What every layer uses: atomic files, claim files, setting checks, warnings, progress display,
provenance.

The bottom layer: imports no other part of nica (docs/architecture.md).
"""
