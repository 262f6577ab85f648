"""``nica transform``: demix new data with the checkpoint of a ``nica fit``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import nica
from nica.apps.cli.console import status
from nica.fitting.data import load_observations
from nica.util.files import save_npz

__all__ = ["run_transform"]


def run_transform(args) -> int:
    """Writes ``s_hat`` of ``args.data`` under ``args.checkpoint``'s model to ``args.out``."""
    out = Path(args.out)
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; give the path of the .npz file to write")
    if not out.parent.is_dir():
        raise ValueError(f"--out {out}: folder {out.parent} does not exist")
    fitted = nica.load(args.checkpoint)
    data = load_observations(args.data)
    save_npz(out, s_hat=fitted.transform(data.x).astype(np.float32))
    status(f"nica transform: wrote {out}")
    return 0
