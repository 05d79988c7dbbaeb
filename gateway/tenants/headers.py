"""The headers (or gRPC metadata keys) that carry an API key, given once each.

Two ``Authorization`` (or two ``x-api-key``) headers are ambiguous: the infer endpoint read the
last, FastAPI's routes the first, so which key a request ran under depended on the route (and
on what a proxy in front added). Every transport refuses them alike, with a 400.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import BadRequest

KEY_HEADERS = ("authorization", "x-api-key")


def repeated_key_header(names: Iterable[str]) -> str | None:
    """The first key header (lowercase ``names``: HTTP header names, gRPC metadata keys) that
    comes more than once, or None."""
    seen: set[str] = set()
    for name in names:
        if name in KEY_HEADERS:
            if name in seen:
                return name
            seen.add(name)
    return None


def refuse_repeated_keys(names: Iterable[str]) -> None:
    """400 when a key header comes more than once (see the module docstring)."""
    name = repeated_key_header(names)
    if name is not None:
        raise BadRequest(repeated_message(name))


def repeated_message(name: str) -> str:
    return f"the {name} header is given more than once: send one API key, once"
