"""Session 20: ``tidegate loadgen``'s summary read as the simulator's is: its tenants' costs sum
to ``cost_usd`` (they summed to the gateway's per-request figures, about half of it on a real
run), a run with refused requests says so, and a trace's model the gateway does not serve is
named with what to do."""

from __future__ import annotations

import json

import pytest
from aiohttp import web

from tests.support.loopback import serve_aiohttp

from ops.cli import main

METADATA = {
    "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
    "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, 4]}],
}
VM_USD, BURST_USD = 0.000001, 0.00002  # the gateway's per-request figures, by path
METRICS = (
    'tidegate_vm_replicas{state="ready"} 2\n'
    'tidegate_vm_replicas{state="booting"} 0\n'
    'tidegate_function_billed_seconds_total{model="m"} 0\n'
)


ODD = {  # metadata loadgen cannot make a request from
    "strings": {"name": "strings", "inputs": [{"name": "t", "datatype": "BYTES", "shape": [1]}]},
    "empty": {"name": "empty"},
}


def _gateway(answers: dict[str, int]):
    """Tenant a's requests go to a VM, b's to functions; a tenant named in ``answers`` gets
    that status instead; model 'gone' is not served."""

    async def metadata(request):
        if request.match_info["model"] == "gone":
            return web.json_response({"error": "unknown model 'gone'"}, status=404)
        if request.match_info["model"] in ODD:
            return web.json_response(ODD[request.match_info["model"]])
        return web.json_response({"name": request.match_info["model"], **METADATA})

    async def infer(request):
        await request.read()
        tenant = request.headers.get("authorization", "keyless").removeprefix("Bearer k")
        if tenant in answers:
            return web.json_response({"error": "refused"}, status=answers[tenant])
        vm = tenant == "a"
        headers = {
            "x-tidegate-path": "vm" if vm else "burst",
            "x-tidegate-cost-usd": f"{VM_USD if vm else BURST_USD:.10f}",
        }
        return web.json_response({"outputs": []}, headers=headers)

    async def metrics(request):
        return web.Response(text=METRICS)

    app = web.Application()
    app.router.add_get("/v2/models/{model}", metadata)
    app.router.add_post("/v2/models/{model}/infer", infer)
    app.router.add_get("/metrics", metrics)
    return serve_aiohttp(app)


def _replay(tmp_path, answers=None, model="m", tenants="abc", keyed=True):
    trace = tmp_path / "t.csv"
    trace.write_text(
        "timestamp_s,model,tenant\n"
        + "".join(f"{i * 0.02:.2f},{model},{tenants[i % len(tenants)]}\n" for i in range(30))
    )
    url, stop = _gateway(answers or {})
    out = tmp_path / "lg.json"
    keys = [arg for t in tenants for arg in ("--key", f"{t}=k{t}")] if keyed else []
    try:
        argv = ["loadgen", "--trace", str(trace), "--url", url, "--no-progress", *keys]
        rc = main([*argv, "--json", str(out)])
    finally:
        stop()
    return rc, json.loads(out.read_text()) if out.exists() else None


def test_tenants_costs_sum_to_the_runs_cost(tmp_path):
    rc, summary = _replay(tmp_path, tenants="ab")
    assert rc == 0
    tenants = summary["tenants"]
    assert sum(t["requests"] for t in tenants.values()) == summary["requests"] == 30
    assert summary["vm_usd"] > 0  # two replicas sampled over the run
    assert sum(t["cost_usd"] for t in tenants.values()) == pytest.approx(summary["cost_usd"])
    # the fleet's bill is a's (every VM request was a's), b pays its own functions
    assert tenants["a"]["cost_usd"] == pytest.approx(summary["vm_usd"])
    assert tenants["b"]["cost_usd"] == pytest.approx(15 * BURST_USD)
    assert tenants["a"]["attributed_cost_usd"] == pytest.approx(15 * VM_USD)


def test_a_fleet_that_served_nothing_is_split_by_requests(tmp_path):
    """Every request went to functions: the (idle) fleet's bill still lands on the tenants."""
    rc, summary = _replay(tmp_path, answers={"a": 429}, tenants="ab")
    tenants = summary["tenants"]
    assert sum(t["cost_usd"] for t in tenants.values()) == pytest.approx(summary["cost_usd"])
    assert tenants["a"]["vm_usd"] > 0
    assert tenants["a"]["vm_usd"] == pytest.approx(tenants["b"]["vm_usd"])


def test_requests_refused_on_the_way_are_a_note_not_silence(tmp_path, capsys):
    rc, summary = _replay(tmp_path, answers={"c": 429})
    assert rc == 0  # the gateway's answers were measured
    err = capsys.readouterr().err
    assert "10 of 30 requests were answered with an error (429 x10)" in err
    assert summary["tenants"]["c"]["slo_attainment"] == 0.0


def test_a_model_the_gateway_does_not_serve_is_named_with_what_to_do(tmp_path, capsys):
    rc, summary = _replay(tmp_path, model="gone")
    assert rc == 2 and summary is None
    err = capsys.readouterr().err.strip()
    assert "does not serve model 'gone'" in err and "30 of the trace's 30" in err
    assert "--model" in err and "\n" not in err


@pytest.mark.parametrize("model", sorted(ODD))
def test_metadata_loadgen_cannot_use_is_one_line(tmp_path, capsys, model):
    """BYTES inputs, or no inputs at all: a KeyError / TypeError traceback before."""
    rc, summary = _replay(tmp_path, model=model)
    assert rc == 2 and summary is None
    err = capsys.readouterr().err.strip()
    assert err.startswith("tidegate loadgen: error:") and "no input tensors" in err
    assert "\n" not in err


def test_tenants_sent_without_keys_are_a_note(tmp_path, capsys):
    """The summary splits the trace's tenants; the gateway saw one keyless caller: say so."""
    rc, summary = _replay(tmp_path, tenants="ab", keyed=False)
    assert rc == 0 and set(summary["tenants"]) == {"a", "b"}
    assert "the trace's tenants (a, b) reach the gateway as one keyless caller" in (
        capsys.readouterr().err
    )


def _async_gateway(polls: list[str], answer_on: int = 2):
    """Every infer call is queued (202 + Location); its answer comes on GET ``answer_on``."""
    seen: dict[str, int] = {}

    async def metadata(request):
        return web.json_response({"name": "m", **METADATA})

    async def infer(request):
        await request.read()
        job = f"j{len(seen)}"
        seen[job] = 0
        headers = {"location": f"/v2/requests/{job}", "retry-after": "0"}
        return web.json_response({"id": job, "state": "pending"}, status=202, headers=headers)

    async def answer(request):
        job = request.match_info["job"]
        polls.append(request.headers.get("authorization", ""))
        seen[job] += 1
        if seen[job] < answer_on:
            return web.json_response({"state": "running"}, status=202, headers={"retry-after": "0"})
        headers = {"x-tidegate-path": "vm", "x-tidegate-cost-usd": f"{VM_USD:.10f}"}
        return web.json_response({"outputs": []}, headers=headers)

    app = web.Application()
    app.router.add_get("/v2/models/{model}", metadata)
    app.router.add_post("/v2/models/{model}/infer", infer)
    app.router.add_get("/v2/requests/{job}", answer)

    async def metrics(request):
        return web.Response(text=METRICS)

    app.router.add_get("/metrics", metrics)
    return serve_aiohttp(app)


def test_a_queued_request_is_measured_to_its_answer_and_judged_by_its_deadline(tmp_path):
    """An async-class tenant's 202 was taken for the answer: a few ms, 'met', path and cost
    empty. Now loadgen follows Location to the answer and judges it by the tenant's deadline
    (1 ms SLO here: judged by it, nothing would meet it)."""
    trace = tmp_path / "t.csv"
    trace.write_text(
        "timestamp_s,model,tenant\n" + "".join(f"{i * 0.05:.2f},m,q\n" for i in range(6))
    )
    config = tmp_path / "gw.toml"
    config.write_text(
        '[[tenants]]\nname = "q"\napi_keys = ["kq"]\nslo_ms = 1\nslo_class = "async"\n'
        "deadline_s = 30\n"
    )
    polls: list[str] = []
    url, stop = _async_gateway(polls)
    out = tmp_path / "lg.json"
    try:
        argv = ["loadgen", "--trace", str(trace), "--url", url, "--config", str(config)]
        assert main([*argv, "--no-progress", "--json", str(out)]) == 0
    finally:
        stop()
    summary = json.loads(out.read_text())
    assert polls == ["Bearer kq"] * 12  # two GETs each, with the tenant's key
    assert summary["requests_queued"] == 6 and summary["requests_vm"] == 6
    assert summary["queued_slo_attainment"] == 1.0  # the simulator's keys, measured
    assert summary["cost_per_1k_usd"] == pytest.approx(summary["cost_usd"] / 6 * 1000)
    assert summary["slo_attainment"] == 1.0 and summary["tenants"]["q"]["slo_attainment"] == 1.0
    assert summary["tenants"]["q"]["attributed_cost_usd"] == pytest.approx(6 * VM_USD)


def test_a_queued_request_never_answered_is_a_timeout_not_a_hang(tmp_path, capsys):
    trace = tmp_path / "t.csv"
    trace.write_text("timestamp_s,model\n0,m\n0.1,m\n")
    url, stop = _async_gateway([], answer_on=10**9)
    try:
        argv = ["loadgen", "--trace", str(trace), "--url", url, "--timeout-s", "0.5"]
        assert main([*argv, "--no-progress"]) == 1
    finally:
        stop()
    assert "2 of 2 requests sent got no answer (timeout x2)" in capsys.readouterr().err


def test_the_per_request_csv_keeps_a_tenant_with_a_comma_in_one_cell(tmp_path):
    import csv

    trace = tmp_path / "t.csv"
    trace.write_text('timestamp_s,model,tenant\n0,m,"acme, inc"\n0.05,m,b\n')
    url, stop = _gateway({})
    rows = tmp_path / "rows.csv"
    try:
        argv = ["loadgen", "--trace", str(trace), "--url", url, "--no-progress"]
        assert main([*argv, "--csv", str(rows)]) == 0
    finally:
        stop()
    with open(rows, newline="") as f:
        table = list(csv.DictReader(f))
    assert sorted(r["tenant"] for r in table) == ["acme, inc", "b"]
    assert all(r["status"] == "200" and len(r) == 8 for r in table)


def test_bf16_inputs_are_random_values_the_codec_sends():
    """BF16 is served (proto24): loadgen sends random values for it, as for FP32; before it sent
    zeros (ml_dtypes' bfloat16 is numpy kind 'V', not 'f')."""
    import numpy as np

    from ops.loadgen import model_inputs
    from vmpool.codec import encode_request

    meta = {"inputs": [{"name": "x", "datatype": "BF16", "shape": [-1, 64]}]}
    x = model_inputs(meta, batch=2)["x"]
    assert x.shape == (2, 64) and str(x.dtype) == "bfloat16"
    values = x.astype(np.float32)
    assert np.count_nonzero(values) > 60 and values.std() > 0.5
    body, _ = encode_request({"x": x})
    assert len(body) > 2 * 64 * 2
