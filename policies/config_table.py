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


# the largest integer a number field takes: JSON readers (and the gateway's own JSON answers,
# which echo a policy back) hold integers to 53 bits; a PUT /admin/policy with
# activation_depth = 11139550521187226353664 was applied, then failed to echo as a 500
MAX_INT = 2**53 - 1


def refuse_bools(model: type[BaseModel], data):
    """``data`` unchanged, or a ValueError naming the first number field given a bool, or an
    integer past ``MAX_INT``."""
    if isinstance(data, dict):
        for name, field in model.model_fields.items():
            value = data.get(name, data.get(field.alias) if field.alias else None)
            if not _number_only(field.annotation):
                continue
            if isinstance(value, bool):
                raise ValueError(f"{name} must be a number, got {str(value).lower()}")
            if isinstance(value, int) and abs(value) > MAX_INT:
                raise ValueError(f"{name} must be within +-{MAX_INT}, got {value}")
    return data


class ConfigTable(BaseModel):
    """A settings table: unknown keys, NaN/inf and booleans for numbers are errors."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_bool_numbers(cls, data):
        return refuse_bools(cls, data)
