"""The planner is exact on the candidates real graphs give (tests/policies/test_planner.py checks
random candidates): a squeeze-excitation block, a transformer block, two inputs and two outputs,
and a classifier whose memory limits bind. Brute force over every plan of the candidates
``burst.planning.search_inputs`` builds (packed and plain stages, per-stage transports, leaning
legs) finds no faster plan than ``latency_optimal`` and no cheaper one meeting the SLO than
``cheapest_meeting_slo``, under memory limits that bind and that do not."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from burst.graph import build_graph
from burst.planning import PlanRequest, load_profile, search_inputs
from policies.planner import (
    Limits,
    PlanningError,
    _resources,
    cheapest_meeting_slo,
    latency_optimal,
    with_transports,
)

torch.set_num_threads(1)
MAX_PLANS = 20_000


class SqueezeExcite(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(3, 16, 3, padding=1)
        self.f1, self.f2 = nn.Conv2d(16, 4, 1), nn.Conv2d(4, 16, 1)
        self.c2 = nn.Conv2d(16, 8, 3, stride=2, padding=1)

    def forward(self, x):
        y = F.relu(self.c(x))
        w = torch.sigmoid(self.f2(F.relu(self.f1(y.mean(dim=(2, 3), keepdim=True)))))
        return self.c2(y * w)


class Block(nn.Module):
    """LayerNorm, attention (matmul, softmax), GELU MLP, residuals."""

    def __init__(self, d: int = 32, heads: int = 4):
        super().__init__()
        self.h = heads
        self.ln1, self.qkv, self.proj = nn.LayerNorm(d), nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.ln2, self.fc1, self.fc2 = nn.LayerNorm(d), nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = (
            z.reshape(b, t, self.h, d // self.h).transpose(1, 2)
            for z in self.qkv(self.ln1(x)).chunk(3, dim=-1)
        )
        a = torch.softmax(q @ k.transpose(-1, -2) / (d // self.h) ** 0.5, dim=-1) @ v
        x = x + self.proj(a.transpose(1, 2).reshape(b, t, d))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class TwoInTwoOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.c, self.lin, self.out = (
            nn.Conv2d(3, 8, 3, padding=1),
            nn.Linear(10, 8),
            nn.Linear(16, 4),
        )

    def forward(self, img, vec):
        a = F.relu(self.c(img)).mean(dim=(2, 3))
        return self.out(torch.cat([a, F.relu(self.lin(vec))], 1)), a


class Classifier(nn.Module):
    """Mostly fully-connected weights (~10 MB): splitting them is what makes a plan fit."""

    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(3, 8, 3, padding=1)
        self.fc1, self.fc2, self.fc3 = (
            nn.Linear(8 * 8 * 8, 2048),
            nn.Linear(2048, 512),
            nn.Linear(512, 10),
        )

    def forward(self, x):
        x = F.relu(self.c(x)).flatten(1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


MODELS = {
    "se": (SqueezeExcite, [(3, 23, 19)]),
    "block": (Block, [(9, 32)]),
    "two_in_two_out": (TwoInTwoOut, [(3, 13, 11), (10,)]),
    "classifier": (Classifier, [(3, 8, 8)]),
}


def _graph(name: str):
    cls, shapes = MODELS[name]
    torch.manual_seed(0)
    module = cls().eval()
    xs = tuple(torch.randn(2, *s) for s in shapes)
    batch = torch.export.Dim("batch", min=1, max=8)
    program = torch.export.export(module, xs, dynamic_shapes=tuple({0: batch} for _ in xs))
    return build_graph(program, name)


def _all_plans(cands) -> list[list]:
    by_start: dict[int, list] = {}
    for c in cands:
        by_start.setdefault(c.start, []).append(c)
    end = max(c.end for c in cands)
    out: list[list] = []

    def walk(p, acc):
        assert len(out) <= MAX_PLANS, "too many plans to brute-force"
        if p == end:
            out.append(list(acc))
            return
        for c in by_start.get(p, []):
            acc.append(c)
            walk(c.end, acc)
            acc.pop()

    walk(0, [])
    return out


def _fits(plan, limits: Limits) -> bool:
    """The master holds its serial weights and leg-0 slices, worker 1 its slice of every split
    stage, and no split stage's slice is more than a worker holds (whole MiB per stage)."""
    master = sum(_resources(c)[0] for c in plan)
    worker = sum(_resources(c)[1] for c in plan)
    return (
        master <= limits.master_weight_bytes
        and worker <= limits.worker_weight_bytes
        and all(c.weight_bytes <= limits.worker_weight_bytes for c in plan if c.split != "serial")
    )


def _limits(graph) -> list[Limits]:
    """Roomy; then tight enough that the whole model no longer fits one function, on the
    master, the workers, or both (what makes splitting the classifier a must)."""
    mib = 1 << 20
    total = sum(w["bytes"] for w in graph.weights.values())
    tight = max(1, round(total * 0.45 / mib)) * mib
    return [
        Limits(1 << 40, 1 << 40),
        Limits(worker_weight_bytes=tight, master_weight_bytes=2 * tight),
        Limits(worker_weight_bytes=2 * tight, master_weight_bytes=tight),
    ]


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("workers,transport", [(2, "auto"), (3, "per-stage")])
def test_the_planner_is_exact_on_real_graphs(name, workers, transport):
    graph = _graph(name)
    request = PlanRequest(workers=workers, transport=transport)
    model, cands, _ = search_inputs(graph, request, load_profile())
    plans = _all_plans(with_transports(model, cands))
    assert len(plans) >= 20  # a search space worth searching
    every = [
        (p, model.predict(p)) for p in plans
    ]  # a plan's prediction is the same under any limits
    binding = 0
    for limits in _limits(graph):
        preds = [(p, pr) for p, pr in every if _fits(p, limits)]
        binding += len(preds) < len(plans)
        if not preds:
            with pytest.raises(PlanningError):
                latency_optimal(model, cands, limits)
            continue
        got = latency_optimal(model, cands, limits)
        assert _fits(list(got.stages), limits)
        best = min(pr.mean_ms for _, pr in preds)
        assert got.prediction.mean_ms == pytest.approx(best, rel=1e-9)
        p99s = sorted(pr.p99_ms for _, pr in preds)
        for slo in (p99s[len(p99s) // 10], p99s[len(p99s) // 2], p99s[-1]):
            meeting = [pr.cost_usd for _, pr in preds if pr.p99_ms <= slo]
            cheapest = cheapest_meeting_slo(model, cands, limits, slo, 0.99)
            assert cheapest.prediction.p99_ms <= slo + 1e-9
            assert _fits(list(cheapest.stages), limits)
            assert cheapest.prediction.cost_usd == pytest.approx(min(meeting), rel=1e-9)
    if name == "classifier":
        assert binding, "the tight limits bind"
