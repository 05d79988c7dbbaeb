"""Function platforms: the Invoker seam, its implementations and the embedded runtime.

Kept import-light on purpose: every function instance imports this package on its cold start.
Import implementations from their modules (``burst.faas.local``, ``burst.faas.aws_lambda``,
``burst.faas.local_runtime``) or build one with ``burst.faas.factory.make_invoker``.
"""

from burst.faas.base import Billing, InvokeError, InvokeResult, Invoker

__all__ = ["Billing", "InvokeError", "InvokeResult", "Invoker"]
