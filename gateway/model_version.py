"""A requested model version, read as Triton reads it (server ``src/common.cc``,
GetModelVersionFromString: ``std::stol``, then > 0).

The served version is always found as it is written. Another text is read as an integer, so
``/versions/01`` finds version ``1`` as in Triton; past int64 it is a 400 (Triton's
INVALID_ARG). Over HTTP, a version that is not digits stays a 404: Triton's URL pattern takes
``[0-9]+`` only, so ``/versions/abc/infer`` matches no route there ("Not Found"). Over gRPC the
version is a plain field Triton hands to ``stol``: one that is not digits ("abc", "-1") is
INVALID_ARGUMENT.
"""

from __future__ import annotations

from vmpool.artifact import ModelConfig

from .errors import BadRequest, NotFound

_INT64_MAX = 2**63 - 1


def find_model(dispatcher, name: str, version: str | None, *, grpc: bool = False) -> ModelConfig:
    """``dispatcher.model(name, version)``, with ``version`` read as Triton reads it."""
    try:
        return dispatcher.model(name, version)
    except NotFound:
        if not version:
            raise
        number = _number(version, grpc)
        if number is None or str(number) == version:
            raise
        return dispatcher.model(name, str(number))


def _number(version: str, grpc: bool) -> int | None:
    if not (version.isascii() and version.isdigit()):  # (stol's leading blanks, sign and
        if grpc:  # trailing text are not taken: "1abc" is not version 1)
            raise BadRequest(
                f"failed to get model version from specified version string {version!r}: "
                "version should be an integral value > 0"
            )
        return None
    number = int(version)
    if number > _INT64_MAX:
        raise BadRequest(
            f"failed to get model version from specified version string {version[:40]!r} "
            "(out of range): version should be an integral value > 0"
        )
    return number
