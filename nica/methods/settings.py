"""A method config with some fields replaced, checked: one helper for every config dataclass."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TypeVar

from nica.fitting.config import check_setting_names

__all__ = ["with_settings"]

Config = TypeVar("Config")


def with_settings(config: Config, settings: Mapping[str, object]) -> Config:
    """``config`` (a frozen dataclass with ``validate()``) with ``settings`` replaced, validated.

    Raises:
      ValueError: one line naming the unknown setting(s) and the known ones, or ``validate``'s
        own line for a bad value.
    """
    names = {f.name for f in dataclasses.fields(config)}
    check_setting_names(settings, names, type(config).__name__)  # FitConfig.replace's check
    return dataclasses.replace(config, **settings).validate()
