"""What a warm function instance takes to serve another model than the one it last ran: the read
of that model's weights from the store (``functions.py`` lends instances between models).

Live, every model runs on the same master and worker functions (``burst/service.py``), and an
instance keeps the weights of the plans it ran in a per-process cache (``burst/runtime_cache.py``,
``burst/weight_cache.py``). A request on an instance that does not hold its model's weights
reads them (its plan's slice per instance) before it computes; nothing else differs from a warm
run. Where the figure comes from, in order:

- ``SimProfile.fn_weight_read_ms`` when set: with a profile measured for the model and its
  artifact (``profile_adapter.from_repo``), the plan's largest instance share of the weights
  (``plan.totals``: the master's or a worker's) through the profile's transfer fit of the
  deployment's store kind (the dev host's ``dir`` store: 0.74 ms + 0.94 ms per MB);
- the production target of a zoo model (Lambda reading S3): its weights (the zoo's parameter
  counts, float32) through the bundled planner profile's ``s3`` fit (20 ms + 10 ms per MB, about
  100 MB/s): ResNet-18 488 ms, MobileNetV2 160 ms;
- otherwise the model's cold start (``cold_start_ms``): nothing says how much of it is the
  weights, so a switch is priced as a start (it still starts no instance).
"""

from __future__ import annotations

# parameters of the zoo's models (vmpool/zoo.py's descriptions), millions; float32 weights
ZOO_PARAMS_M = {
    "resnet18": 11.7,
    "resnet34": 21.8,
    "resnet50": 25.6,
    "wide_resnet50_2": 68.9,
    "vgg11": 132.9,
    "vgg16": 138.4,
    "mobilenet_v2": 3.5,
    "mlp": 0.5,
    "delay": 0.0,
}


def weight_read_ms(profile) -> float:
    """The ms a warm instance of ``profile``'s plan takes to read its model's weights."""
    if profile.fn_weight_read_ms is not None:
        return float(profile.fn_weight_read_ms)
    read_ms = zoo_read_ms(profile.model)
    return float(profile.cold_start_ms) if read_ms is None else read_ms


def zoo_read_ms(model: str) -> float | None:
    """The production target's read of zoo model ``model``'s weights from S3; None for a name
    the zoo does not have."""
    params_m = ZOO_PARAMS_M.get(model)
    return None if params_m is None else store_read_ms(int(params_m * 4e6), "s3")


def store_read_ms(nbytes: int, store_kind: str, fits=None) -> float:
    """Reading ``nbytes`` from a ``store_kind`` store by ``fits`` (a profile's ``transfer``;
    default the bundled planner profile's), ``s3``'s fit for a kind it has no fit for."""
    if fits is None:
        from burst.planning import load_profile

        fits = load_profile().transfer
    fit = fits.get(store_kind) or fits.get("s3")
    return float(fit.ms(nbytes)) if fit is not None else 0.0


def plan_read_ms(plan, store_kind: str, fits) -> float:
    """Reading the weights one instance of ``plan`` holds at most (the master's or a worker's,
    ``plan.totals``) from a ``store_kind`` store by ``fits``."""
    totals = plan.totals
    nbytes = max(totals.get("master_weight_bytes", 0), totals.get("max_worker_weight_bytes", 0))
    return store_read_ms(int(nbytes), store_kind, fits)
