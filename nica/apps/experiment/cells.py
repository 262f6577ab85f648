"""A cell's identity (:func:`cell_recipe`, :func:`cell_key`) and reading a finished cell.

A cell is one (setting, method, seed) of an experiment, written atomically to ``OUT/cells/``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from nica.apps.experiment.design import ExperimentConfig, Setting
from nica.methods import Method, get_method
from nica.util.files import read_json

__all__ = ["RESULT_FORMAT", "Cell", "cell_config", "cell_key", "cell_recipe", "read_cell"]

#: Version of the cell record; bump it when what a cell stores or means changes.
RESULT_FORMAT = 3  # 3: cells hold the held-out NLL gap to the true model


def cell_config(config: ExperimentConfig, setting: Setting, method: Method, seed: int):
    """The validated config of ``method``'s cell: ``config.fit`` for nica's own models, then the
    method's ``model_fit`` fields of the config and of the setting (the setting's win)."""
    fields = dict(config.fit) if method.exact_likelihood else {}
    fields.update((f, v) for m, f, v in config.model_fit + setting.model_fit if m == method.name)
    return method.config(fields, seed)


def cell_recipe(config: ExperimentConfig, setting: Setting, model: str, seed: int) -> dict:
    """Everything that determines a cell's result, as a JSON-ready dict: the method's resolved
    config, what its MCC is measured against, and the data."""
    method = get_method(model)
    return {
        "format": RESULT_FORMAT,
        "model": model,
        "fit": cell_config(config, setting, method, seed).to_dict(),  # resolved values included
        "target": method.target_name,
        "data": {"preset": setting.preset, "overrides": dict(setting.overrides), "seed": seed},
    }


def cell_key(config: ExperimentConfig, setting: Setting, model: str, seed: int) -> str:
    """Short sha256 hex of :func:`cell_recipe`: cells are reused only under the same key."""
    text = json.dumps(cell_recipe(config, setting, model, seed), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class Cell:
    """One cell of a run: where its record (``.json``) and claim (``.claim``) live."""

    setting: Setting
    model: str
    seed: int
    key: str
    folder: Path

    @property
    def name(self) -> str:
        return f"{self.setting.label}__{self.model}__seed{self.seed}"

    @property
    def path(self) -> Path:
        return self.folder / f"{self.name}.json"

    @property
    def claim_path(self) -> Path:
        return self.folder / f"{self.name}.claim"


def read_cell(cell: Cell, force: bool) -> dict | None:
    """The finished record of ``cell``, or None if it is to be (re)computed.

    Raises a one-line ValueError naming the file when it is empty/corrupt or was computed under
    another key (unless ``force``: then it is recomputed).
    """
    if force or not cell.path.exists():
        return None
    try:
        record = read_json(cell.path)
        if not isinstance(record, dict):
            raise ValueError(f"{cell.path}: not a cell record (a JSON {type(record).__name__})")
    except ValueError as err:
        raise ValueError(f"{err}; delete it or rerun with --force to recompute the cell") from None
    if record.get("key") != cell.key:
        raise ValueError(
            f"{cell.path}: cell was computed under another config, data or result format "
            f"(key {record.get('key')}, expected {cell.key}); rerun with --force to recompute "
            "it, or use another --out"
        )
    return record
