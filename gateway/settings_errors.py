"""Settings mistakes in words: a misspelt ``TIDEGATE_*`` variable, and a pydantic error as the
one line ``tidegate serve`` prints (imported by gateway.settings)."""

from __future__ import annotations

import difflib
import re
import typing

from pydantic import BaseModel

ENV_PREFIX = "TIDEGATE_"
# set by Tidegate itself on the processes it starts (functions, instances) or read by its
# benchmarks: never settings, and no misspelling of one
INTERNAL_ENV = {
    "TIDEGATE_BENCH_KEEP",
    "TIDEGATE_CONTROL_LOG",  # gateway/control_log.py: the control loop's record (debugging)
    "TIDEGATE_FUNCTION_MEMORY_MB",
    "TIDEGATE_FUNCTION_THREADS",
    "TIDEGATE_INSTANCE_FD",
    "TIDEGATE_PARENT_PID",
}


class UnknownSetting(ValueError):
    """A ``TIDEGATE_*`` environment variable that names no setting."""


def check_environment(model: type[BaseModel], environ) -> None:
    """Refuse a misspelt ``TIDEGATE_*`` variable (pydantic-settings would ignore it silently)."""
    for key in environ:
        if not key.upper().startswith(ENV_PREFIX) or key.upper() in INTERNAL_ENV:
            continue
        parts = key[len(ENV_PREFIX) :].lower().split("__")
        current: type[BaseModel] | None = model
        for depth, part in enumerate(parts):
            fields = current.model_fields if current is not None else {}
            if part not in fields:
                known = [ENV_PREFIX + "__".join([*parts[:depth], name]).upper() for name in fields]
                # one "_" where two were meant: TIDEGATE_BURST_PLATFORM for TIDEGATE_BURST__PLATFORM
                tables = [n for n, f in fields.items() if _members(f.annotation)]
                nested = [
                    k
                    for k, n in zip(known, fields)
                    if n in tables and key.upper().startswith(k + "_")
                ]
                guess = (
                    [key.upper().replace(nested[0] + "_", nested[0] + "__", 1)] if nested else []
                )
                guess = guess or difflib.get_close_matches(key.upper(), known, n=1)
                hint = f" (did you mean {guess[0]}?)" if guess else ""
                raise UnknownSetting(f"unknown environment variable {key}{hint}")
            annotation = fields[part].annotation
            current = (
                annotation
                if isinstance(annotation, type) and issubclass(annotation, BaseModel)
                else None
            )
            if current is None:
                break  # a leaf, a list or a union: pydantic validates the value itself


def describe_error(exc: Exception, model: type[BaseModel]) -> str:
    """One line a person can act on, from a pydantic ``ValidationError`` (first problem)."""
    errors = getattr(exc, "errors", None)
    if errors is None:
        return str(exc)
    first = errors()[0]
    loc = [str(part) for part in first["loc"]]
    if first["type"] == "extra_forbidden":
        where = ".".join(loc)
        known = _known_keys(model, loc[:-1])
        guess = difflib.get_close_matches(loc[-1], known, n=1)
        hint = (
            f" (did you mean {guess[0]}?)"
            if guess
            else (f" (known: {', '.join(known)})" if known else "")
        )
        return f"unknown setting {where}{hint}"
    if first["type"] == "union_tag_invalid":
        ctx = first.get("ctx", {})
        return (
            f"invalid setting {'.'.join(loc)}: "
            f"{str(ctx.get('discriminator', 'kind')).strip(chr(39))} {ctx.get('tag')!r} is not one of "
            f"{ctx.get('expected_tags')}{_nearest(ctx.get('tag'), ctx.get('expected_tags'))}"
        )
    if first["type"] == "union_tag_not_found":
        key = str(first.get("ctx", {}).get("discriminator", "kind")).strip("'")
        tags = [t for m in _members(_annotation_at(model, loc)) for t in _tags(m, key)]
        return f"invalid setting {'.'.join(loc)}: the table needs {key} = one of {', '.join(tags)}"
    message = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "literal_error":  # routing_policy = "slo-awre"
        message += _nearest(first.get("input"), first.get("ctx", {}).get("expected"))
    return f"invalid setting {'.'.join(loc)}: {message}" if loc else f"invalid settings: {message}"


def _nearest(given: object, expected: object) -> str:
    """`` (did you mean 'x'?)`` for a misspelt choice, from pydantic's quoted list of them."""
    choices = re.findall(r"'([^']*)'", str(expected or ""))
    guess = difflib.get_close_matches(str(given), choices, n=1) if isinstance(given, str) else []
    return f" (did you mean {guess[0]!r}?)" if guess else ""


def _known_keys(model: type[BaseModel], path: list[str]) -> list[str]:
    """Field names of the table at ``path`` (list indexes and union tags walked through)."""
    annotation = _annotation_at(model, path)
    return list(annotation.model_fields) if _is_model(annotation) else []


def _annotation_at(model: type[BaseModel], path: list[str]):
    """The type of the value at ``path`` (list indexes and union tags walked through)."""
    annotation: object = model
    for part in path:
        members = _members(annotation)
        if part.isdigit() and getattr(annotation, "__args__", None):
            annotation = annotation.__args__[0]  # list[X] -> X
            continue
        if members and not _is_model(annotation):  # a union: the next part is a member's tag
            annotation = next((m for m in members if _has_tag(m, part)), None)
            continue
        if not _is_model(annotation) or part not in annotation.model_fields:
            return None
        annotation = annotation.model_fields[part].annotation
    return annotation


def _members(annotation) -> list[type[BaseModel]]:
    """The models a union (plain, Optional or Annotated) may hold."""
    if _is_model(annotation):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _members(arg)]


def _tags(model: type[BaseModel], key: str) -> list[str]:
    field = model.model_fields.get(key)
    return [str(t) for t in typing.get_args(field.annotation)] if field else []


def _has_tag(model: type[BaseModel], tag: str) -> bool:
    """Whether a union member is the one a discriminator value (``kind``, ``policy``) names."""
    return any(tag in typing.get_args(field.annotation) for field in model.model_fields.values())


def _is_model(annotation) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)
