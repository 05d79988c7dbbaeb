"""Build an Invoker from plain config: ``make_invoker({"kind": "local", ...})``."""

from __future__ import annotations

from burst.faas.base import Invoker

KINDS = ("local", "aws_lambda", "alibaba_fc")


def make_invoker(cfg: dict) -> Invoker:
    """An invoker for ``cfg["kind"]``; the rest of ``cfg`` goes to its ``from_config``."""
    if not isinstance(cfg, dict):
        raise ValueError(f"invoker config must be a dict, got {type(cfg).__name__}")
    kind = cfg.get("kind")
    # imported lazily: each platform pulls its own client library
    if kind == "local":
        from burst.faas.local import LocalInvoker

        return LocalInvoker.from_config(cfg)
    if kind == "aws_lambda":
        from burst.faas.aws_lambda import LambdaInvoker

        return LambdaInvoker.from_config(cfg)
    if kind == "alibaba_fc":
        from burst.faas.alibaba_fc import AlibabaFCInvoker

        return AlibabaFCInvoker.from_config(cfg)
    raise ValueError(f"unknown invoker kind {kind!r}; known kinds: {', '.join(KINDS)}")
