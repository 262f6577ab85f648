"""What an experiment is: data settings x methods x seeds (:class:`ExperimentConfig`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

__all__ = ["DEFAULT_MODELS", "ExperimentConfig", "ModelFit", "Setting", "default_out"]

#: The methods of a config that names none.
DEFAULT_MODELS = ("conditional", "unconditional", "fastica")

#: ``(method, field, value)`` triples: settings of a method's config (``nica.methods``).
ModelFit = tuple[tuple[str, str, object], ...]


@dataclasses.dataclass(frozen=True)
class Setting:
    """One data setting: a ``synthetic`` preset with overrides, shown as ``label``;
    ``model_fit`` sets method fields for this setting only (e.g. ``(("tcl", "depth", 4),)``,
    TCL's depth matched to the mixing's as ICE-BeeM runs it)."""

    label: str
    preset: str
    overrides: tuple[tuple[str, object], ...] = ()
    model_fit: ModelFit = ()


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """An experiment: settings x models x seeds.

    Attributes:
      name: a user's run goes to ``runs/<name>`` (git-ignored); the committed report in
        ``results/<name>`` is regenerated with ``nica run <name> --out results/<name>``.
      description: one line for the report.
      settings: the data settings (the swept variable).
      sweep: name of the swept quantity (x axis of the MCC plot).
      seeds: data and fit seeds.
      models: names of ``nica.methods.METHODS``: ``conditional``, ``unconditional``,
        ``fastica`` (needs scikit-learn), ``ivae`` and ``tcl`` (TCL's final linear ICA needs
        scikit-learn).
      fit: ``FitConfig`` field overrides shared by the nica models.
      model_fit: config fields of any method for every setting (``(model, field, value)``
        triples, applied after ``fit``; a setting's own ``model_fit`` wins).
      command: the command that regenerates the committed report (default
        ``nica run <name> --out results/<name>``), quoted in the report.
    """

    name: str
    description: str
    settings: tuple[Setting, ...]
    sweep: str = "setting"
    seeds: tuple[int, ...] = (0, 1, 2)
    models: tuple[str, ...] = DEFAULT_MODELS
    fit: tuple[tuple[str, object], ...] = ()
    model_fit: ModelFit = ()
    command: str | None = None

    @property
    def reproduce(self) -> str:
        """The command line quoted in the report (``command`` or the default)."""
        return self.command or f"nica run {self.name} --out results/{self.name}"

    def smoke(self) -> ExperimentConfig:
        """A tiny version (2-D data, a 2-layer demixer, 2 restarts x 1 epoch + 2 epochs, 1 seed;
        baselines a few steps) for the tests."""
        small = (("n_sources", 2), ("n_segments", 4), ("samples_per_segment", 60))
        settings = tuple(
            dataclasses.replace(s, overrides=tuple(dict(s.overrides + small).items()))
            for s in self.settings[:2]
        )
        tiny = (("epochs", 2), ("eval_every", 1), ("restarts", 2), ("restart_epochs", 1))
        tiny += (("depth", 2),)  # one depth: ``auto``'s search is tested on its own
        fit = tuple(dict(self.fit + tiny).items())
        model_fit = self.model_fit + _SMOKE_MODEL_FIT
        return dataclasses.replace(
            self, settings=settings, seeds=(0,), fit=fit, model_fit=model_fit
        )


_SMOKE_MODEL_FIT: ModelFit = (
    ("ivae", "epochs", 2),
    ("ivae", "hidden", 8),
    ("tcl", "init_steps", 4),
    ("tcl", "steps", 8),
    ("tcl", "batch_size", 60),
)


def default_out(name: str, *, smoke: bool = False) -> Path:
    """Where ``nica run NAME`` writes without ``--out``: ``runs/NAME`` (``runs/NAME-smoke``)."""
    return Path("runs") / (f"{name}-smoke" if smoke else name)
