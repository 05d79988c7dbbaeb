"""Before a request is routed: its inputs checked against its model's config, the workers it
asks for checked, and its tenant's rate limits and quotas applied. No HTTP types in here."""

from __future__ import annotations

from vmpool.artifact import ModelConfig
from vmpool.codec import CodecError, InferRequest, validate_inputs

from .call import CallContext
from .errors import BadRequest
from .tenants import TenantRegistry

_MAX_VALID_SIGNATURES = 4096


class InputCheck:
    """``validate_inputs``, remembered per model config and request signature (names, dtypes,
    shapes, outputs asked for): clients send the same few shapes again and again."""

    def __init__(self) -> None:
        self._valid: dict[tuple, ModelConfig] = {}  # request signatures validate_inputs passed

    def __call__(self, req: InferRequest, cfg: ModelConfig) -> None:
        key = (
            id(cfg),
            tuple([(name, array.dtype, array.shape) for name, array in req.inputs.items()]),
            None if req.outputs is None else tuple([r.name for r in req.outputs]),
        )
        if self._valid.get(key) is cfg:
            return
        try:
            validate_inputs(req, cfg)
        except CodecError as exc:
            raise BadRequest(str(exc)) from None
        if len(self._valid) >= _MAX_VALID_SIGNATURES:
            self._valid.clear()
        self._valid[key] = cfg  # held, so its id is not reused while the entry lives


async def admit(
    ctx: CallContext, cfg: ModelConfig, tenants: TenantRegistry, max_workers: int
) -> None:
    """The workers asked for (``X-Tidegate-Workers``) in range, then the tenant's admission
    checks, unless the call was admitted already (an async job, when it was accepted)."""
    if ctx.workers is not None and not 1 <= ctx.workers <= max_workers:
        raise BadRequest(f"X-Tidegate-Workers must be between 1 and {max_workers}")
    if not ctx.admitted:
        await tenants.admit(
            ctx.tenant, model=cfg.name, route_override=bool(ctx.forced_route or ctx.workers)
        )
