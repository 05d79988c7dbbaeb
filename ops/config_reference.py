"""Render the configuration reference (docs/configuration.md) from the settings' own fields.

    python -m ops.config_reference > docs/configuration.md

A test checks that the committed file equals this rendering, so the reference cannot drift from
the code: every field's description is the documentation.
"""

from __future__ import annotations

import sys
import typing

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

HEADER = """# Configuration reference

Generated from `gateway/settings.py` by `python -m ops.config_reference`; do not edit by hand.

Settings come from defaults, then a TOML file (`tidegate serve --config FILE`), then environment
variables (`TIDEGATE_` prefix, `__` between nested names: `TIDEGATE_VM__REPLICAS=2`), then command
line flags. An unknown key in any table, or a misspelt `TIDEGATE_*` variable, is refused at start
with one line naming it (exit status 2). So are: a number that is nan or inf, or out of its range;
a provisioner, store or platform without the keys it needs (`vm.provisioner = "static"` without
`urls`); settings that contradict each other (`burst.default_workers` above `max_workers`, two
tenants with one name or one API key, nothing left to serve); a list or table given in the
environment as anything but JSON (`TIDEGATE_CORS_ORIGINS='["*"]'`). In the model repository, a
`config.toml` with a misspelt key or a bad value, and a `model.pt2` that is truncated or not a
`torch.export` archive, stop `tidegate serve` the same way before any replica starts; a start-up
that fails later (the ledger's database refuses, a model server cannot load its model) is one
line too, and nothing it started is left running.
"""


def _models_in(annotation) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        found += _models_in(arg)
    return found


def _type_name(annotation) -> str:
    members = _models_in(annotation)
    if len(members) > 1:
        return f"table, by `{(_kind(members[0]) or ('kind', ''))[0]}`"
    if isinstance(annotation, type):
        text = "table" if issubclass(annotation, BaseModel) else annotation.__name__
    else:
        text = str(annotation)
    for noise in ("typing.", "pathlib.", "gateway.settings.", "Literal"):
        text = text.replace(noise, "")
    text = text.replace("NoneType", "None").replace("Path", "path")
    return text.replace("|", "or")


def _default_value(field: FieldInfo) -> object:
    if field.default is not PydanticUndefined:
        return field.default
    try:
        return field.default_factory() if field.default_factory else None  # type: ignore[call-arg]
    except TypeError:
        return None


def _default(field: FieldInfo) -> str:
    if field.default is not PydanticUndefined:
        value = field.default
    elif field.default_factory is not None:
        try:
            value = field.default_factory()  # type: ignore[call-arg]
        except TypeError:
            return "(computed)"
    else:
        return "(required)"
    if isinstance(value, BaseModel):
        return "(table)"
    if hasattr(value, "__fspath__"):
        return f"`{value}`"
    return (
        f"`{value!r}`"
        if value not in (None, [], {})
        else ("none" if value is None else f"`{value!r}`")
    )


def render_table(
    model: type[BaseModel],
    path: str,
    out: list[str],
    seen: set,
    array: bool = False,
    stands_for_none: bool = False,
) -> None:
    """Append the table at ``path`` and its nested ones; ``stands_for_none``: the member of a
    union its parent's default builds (what leaving the table out means)."""
    key = (model, path)
    if key in seen:
        return
    seen.add(key)
    title = (f"`[[{path}]]`" if array else f"`[{path}]`") if path else "Top level"
    doc = (model.__doc__ or "").strip().splitlines()
    kind = _kind(model)
    out += ["", f"## {title}" + (f" — {kind[0]} `{kind[1]}`" if kind else ""), ""]
    if doc and not path == "":
        out += [doc[0], ""]
    out += ["| key | type | default | meaning |", "|---|---|---|---|"]
    nested: list[tuple[type[BaseModel], str]] = []
    for name, field in model.model_fields.items():
        members = _models_in(field.annotation)
        description = (field.description or "").replace("|", "\\|").replace("\n", " ")
        default = _default(field)
        if kind and name == kind[0]:  # the union's tag: a table without it is refused
            default = "(required)"
            if stands_for_none:
                description += " Without the table, this one."
        out.append(f"| `{name}` | {_type_name(field.annotation)} | {default} | {description} |")
        sub = f"{path}.{name}" if path else name
        array = typing.get_origin(field.annotation) is list  # [[tenants]]: an array of tables
        default_type = type(_default_value(field))
        nested += [(member, sub, array, member is default_type) for member in members]
    for member, sub, array, is_default in nested:
        render_table(member, sub, out, seen, array, is_default)


def _kind(model: type[BaseModel]) -> tuple[str, str] | None:
    """(discriminator, value) of a table that is one of several: `kind`, or `policy`
    ([autoscaling])."""
    for name in ("kind", "policy"):
        field = model.model_fields.get(name)
        args = typing.get_args(field.annotation) if field is not None else ()
        if len(args) == 1 and isinstance(args[0], str):
            return name, args[0]
    return None


def render() -> str:
    from gateway.settings import Settings

    out = [HEADER.rstrip()]
    render_table(Settings, "", out, set())
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
