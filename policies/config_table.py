"""The base of every settings table, wherever its model lives (gateway, vmpool, burst).

A table refuses what a strict config should: an unknown key (``extra="forbid"``), a NaN or
infinite number, and TOML's ``true``/``false`` where a number goes (pydantic would read
``port = true`` as port 1). Pure: pydantic only.
"""

from __future__ import annotations

import typing

from pydantic import BaseModel, ConfigDict, model_validator


def _number_only(annotation) -> bool:
    """True when the field takes numbers and nothing else (``int``, ``float | None``, ...)."""
    kinds = set(typing.get_args(annotation) or (annotation,)) - {type(None)}
    return bool(kinds) and kinds <= {int, float}


def refuse_bools(model: type[BaseModel], data):
    """``data`` unchanged, or a ValueError naming the first number field given a bool."""
    if isinstance(data, dict):
        for name, field in model.model_fields.items():
            value = data.get(name, data.get(field.alias) if field.alias else None)
            if isinstance(value, bool) and _number_only(field.annotation):
                raise ValueError(f"{name} must be a number, got {str(value).lower()}")
    return data


class ConfigTable(BaseModel):
    """A settings table: unknown keys, NaN/inf and booleans for numbers are errors."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_bool_numbers(cls, data):
        return refuse_bools(cls, data)
