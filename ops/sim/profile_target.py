"""The production target for a model other than ResNet-18, when nothing was measured for it.

The target (``SimProfile()``: c6i.xlarge VMs, 2 GB Lambda functions) describes ResNet-18. Run
as it was on another zoo model it gave VGG-16 ResNet-18's 12 ms batch and 110 ms function, and
the 300 ms SLO: a model 5.6x slower on the same host simulated as a fast one. Here another zoo
model's target is ResNet-18's scaled by that model's own times relative to ResNet-18's, both
measured on one host (the bundled planner profile, ``policies/data/reference_profile.json``,
measures every zoo model on the dev host):

- VM batch curve: at each batch the dev host measured for the model, its median times the
  target's ResNet-18 time over the dev host's ResNet-18 time at that batch (how much faster the
  target's VM is at that batch), made non-decreasing in the batch.
- Function: the target's one 2,048 MB function, its compute (the warm p50 beyond the dev host's
  invocation round trip and master overhead, which do not scale with the model) times the
  model's batch-1 VM time over ResNet-18's; billed in the same proportion.
- Cold start: ResNet-18's 900 ms (no zoo model but ResNet-18 has a measured cold start).
- SLO and maximum batch: the zoo's for the model (what ``tidegate export NAME`` writes).

The ``delay`` load-test model has no host in its times: its VM batch takes ``delay_ms +
per_item_ms x batch`` (export's defaults 50 and 5, or the artifact's options) and one function
that plus the invocation round trip. Names the zoo does not have keep ResNet-18's target.
"""

from __future__ import annotations

from .profile import TARGET_MODEL, SimProfile, reference_sources

DELAY_DEFAULTS = {"delay_ms": 50.0, "per_item_ms": 5.0}  # `tidegate export delay`'s


def model_target(
    model: str, options: dict | None = None, shape: tuple[int, ...] | None = None
) -> SimProfile | None:
    """The production target for zoo model ``model`` (see the module's doc); None where it is
    ResNet-18's own (ResNet-18, names the zoo or the bundled profile does not have, an input
    ``shape`` (without the batch) other than the one the dev host measured)."""
    if model == TARGET_MODEL:
        return None
    zoo = _zoo_facts(model, options)
    if zoo is None:
        return None
    slo_ms, max_batch = zoo
    from burst.planning import load_profile

    bundled = load_profile()
    measured = bundled.models.get(model)
    if shape is not None and measured is not None and tuple(shape) != measured.input_shape[1:]:
        return None  # (an export at another image size: the dev host timed 224x224)
    base = SimProfile()
    overhead = float(
        bundled.invoke_ms(1).median_ms + bundled.master_overhead_ms.median_ms
    )  # the dev host's round trip beyond the model's compute: not scaled
    if model == "delay":
        made = _delay(base, {**DELAY_DEFAULTS, **(options or {})}, overhead)
    else:
        made = _scaled(base, model, bundled, overhead)
    if made is None:
        return None
    profile, sources, how = made
    from .lend import zoo_read_ms  # (the weights' read when an instance switches model)

    return base.with_overrides(
        model=model,
        fn_weight_read_ms=zoo_read_ms(model),
        slo_ms=slo_ms,
        vm_max_batch_size=max_batch,
        source=f"production target for {model}: {how}; SLO {slo_ms:g} ms and batch "
        f"{max_batch} from the zoo's {model}",
        **profile,
    ).with_sources(**{**reference_sources(model), **sources})


def _zoo_facts(model: str, options: dict | None) -> tuple[float, int] | None:
    """(default SLO ms, maximum batch) of a zoo model; None for other names."""
    from burst.planning import load_profile

    if model != "delay" and model not in load_profile().models:
        return None  # (checked first: the zoo's import loads torch)
    from vmpool import zoo

    if model not in zoo.MODELS:
        return None
    opts = {k: v for k, v in (options or {}).items() if k in zoo.OPTIONS.get(model, ())}
    return float(zoo.default_slo_ms(model, opts)), int(zoo.MODELS[model].max_batch_size)


def _median_at(curve: dict[int, float], batch: int) -> float:
    """``curve`` (batch -> ms) at ``batch``, linear between its points, flat past its ends."""
    points = sorted(curve.items())
    if batch <= points[0][0]:
        return points[0][1]
    for (b0, s0), (b1, s1) in zip(points, points[1:], strict=False):
        if batch <= b1:
            return s0 + (s1 - s0) * (batch - b0) / (b1 - b0)
    return points[-1][1] * batch / points[-1][0]


def _scaled(base: SimProfile, model: str, bundled, overhead: float):
    """(profile fields, sources, summary) of ``model`` as the target's ResNet-18 scaled by the
    dev host's ratio; None when the bundled profile lacks either model's VM times."""
    dev, ref = bundled.models.get(model), bundled.models.get(TARGET_MODEL)
    if dev is None or ref is None or not dev.vm_service_ms or not ref.vm_service_ms:
        return None
    ref_curve = {int(b): q.median_ms for b, q in ref.vm_service_ms.items()}
    points, top = [], 0.0
    for b, q in sorted(dev.vm_service_ms.items()):
        ms = q.median_ms * base.vm_service_ms(int(b)) / _median_at(ref_curve, int(b))
        top = max(top, ms)  # (a measured curve may dip with the batch: noise)
        points.append((int(b), round(top, 4)))
    ratio = _median_at({int(b): q.median_ms for b, q in dev.vm_service_ms.items()}, 1) / (
        _median_at(ref_curve, 1)
    )
    compute = max(base.burst_p50_ms - overhead, 0.0) * ratio
    p50 = overhead + compute
    billed = base.burst_billed_ms * p50 / base.burst_p50_ms
    shown = "/".join(str(b) for b, _ in points)
    at = "/".join(f"{ms:.3g}" for _, ms in points)
    why = f"nothing measured for {model} on the target"
    dev_src = "policies/data/reference_profile.json"
    sources = {
        "vm_curve": f"production target: resnet18's batch 1/2/4/8 at 12/18/30/55 ms on a "
        f"c6i.xlarge scaled by {model}'s VM time over resnet18's on the dev host ({dev_src}): "
        f"batch {shown} at {at} ms ({why})",
        "function_times": f"production target: resnet18's one 2048 MB function (warm p50 "
        f"{base.burst_p50_ms:g} ms), its compute x{ratio:.3g} ({model}'s batch-1 time over "
        f"resnet18's on the dev host): p50 {p50:.1f} ms, billed {billed:.1f} ms ({why})",
    }
    fields = {"vm_service_ms_by_batch": tuple(points), "burst_p50_ms": p50}
    fields["burst_billed_ms"] = billed
    return fields, sources, f"resnet18's x{ratio:.3g} ({model} over resnet18 on the dev host)"


def _delay(base: SimProfile, opts: dict, overhead: float):
    """(profile fields, sources, summary) of the delay model: its own waits, any host."""
    wait, per_row = float(opts["delay_ms"]), float(opts["per_item_ms"])
    points = tuple((b, wait + per_row * b) for b in (1, 2, 4, 8))
    p50 = overhead + wait + per_row
    what = f"delay_ms {wait:g} + per_item_ms {per_row:g} per row"
    sources = {
        "vm_curve": f"the delay model's own wait ({what}): batch 1/2/4/8 at "
        + "/".join(f"{ms:g}" for _, ms in points)
        + " ms",
        "function_times": f"the delay model's own wait ({what}) in one 2048 MB function, plus "
        f"the dev host's invocation round trip: p50 {p50:.1f} ms, billed {p50:.1f} ms",
    }
    fields = {
        "vm_service_ms_by_batch": points,
        "vm_service_cv": 0.0,
        "burst_p50_ms": p50,
        "burst_billed_ms": p50,
        "burst_sigma": 0.01,
    }
    return fields, sources, f"the delay model's own wait ({what})"
