"""TOML's true/false where a number goes is refused in every settings table, however deep
(pydantic alone reads ``consumers = true`` as one consumer)."""

from __future__ import annotations

import typing

import pytest
from pydantic import BaseModel, ValidationError

from gateway.settings import Settings, describe_error


def _tables(model: type[BaseModel], seen: set) -> list[type[BaseModel]]:
    """Every model reachable from ``model``'s fields (unions, lists and Annotated unwrapped)."""
    found = []

    def visit(annotation):
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation not in seen:
                seen.add(annotation)
                found.append(annotation)
                found.extend(_tables(annotation, seen))
            return
        for arg in typing.get_args(annotation):
            visit(arg)

    for field in model.model_fields.values():
        visit(field.annotation)
    return found


def _number_fields():
    cases = []
    for table in _tables(Settings, set()):
        for name, field in table.model_fields.items():
            kinds = set(typing.get_args(field.annotation) or (field.annotation,)) - {type(None)}
            if kinds and kinds <= {int, float}:
                cases.append(pytest.param(table, name, id=f"{table.__name__}.{name}"))
    return cases


NUMBER_FIELDS = _number_fields()


def test_the_walk_reaches_the_nested_tables():
    names = {p.values[0].__name__ for p in NUMBER_FIELDS}
    assert {"LedgerSettings", "AsyncQueueSettings", "Ec2Settings", "LocalPlatform"} <= names


@pytest.mark.parametrize("table, name", NUMBER_FIELDS)
def test_a_boolean_for_a_number_is_refused_in_every_table(table, name):
    with pytest.raises(ValidationError) as caught:
        table.model_validate({name: True})
    assert f"{name} must be a number, got true" in describe_error(caught.value, table)


@pytest.mark.parametrize(
    "text, field",
    [
        ("[ledger]\nmax_batch_rows = true\n", "max_batch_rows"),
        ("[async_queue]\nconsumers = false\n", "consumers"),
        ("[burst.platform]\nkind = 'local'\ntimeout_s = true\n", "timeout_s"),
    ],
)
def test_a_nested_boolean_in_a_config_file_is_one_line(tmp_path, monkeypatch, text, field):
    for key in [k for k in __import__("os").environ if k.upper().startswith("TIDEGATE_")]:
        monkeypatch.delenv(key)
    config = tmp_path / "tidegate.toml"
    config.write_text(text)
    with pytest.raises(ValidationError) as caught:
        Settings.load(config)
    line = describe_error(caught.value)
    assert "\n" not in line and f"{field} must be a number" in line, line
