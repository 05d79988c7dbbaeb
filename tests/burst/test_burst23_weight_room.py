"""A warm function switching plans never reads the next plan's weights while it still holds the
last plan's, where the two do not fit its memory together (a warm 1152 MB VGG-16 master, after
a split plan, was OOM-killed at 1153 MB reading the one-function plan's 527 MB blob: its cache
made room only once the blob was read)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import special_models as sm  # noqa: E402

import burst.runtime_cache as rc  # noqa: E402
from burst.faas.base import Billing, InvokeError, InvokeErrorKind, InvokeResult  # noqa: E402
from burst.faas.lambda_wire import retry_invoke_on  # noqa: E402
from burst.graph import build_graph  # noqa: E402
from burst.packed_conv import set_room  # noqa: E402
from burst.plan import make_plan  # noqa: E402
from burst.runtime import run_master, run_worker  # noqa: E402
from burst.store.local_dir import LocalDirStore  # noqa: E402
from burst.tensors import encode_inline, receive  # noqa: E402
from burst.weight_cache import EXIT_NO_ROOM, LruCache  # noqa: E402
from burst.weights import BLOB_BYTES, prepare_plan, weight_ids_key  # noqa: E402

torch.set_num_threads(1)
RUNTIME = 10 << 20  # what the process holds besides its cached weights


class Function:
    """One function instance's memory: the runtime, the cache's weights, and a blob being read.
    Records, at every weight read, what the process would hold once the blob is in."""

    def __init__(self):
        self.cache = LruCache(1 << 40, memory_bytes=1 << 40, resident=self.resident)
        self.reads: list[tuple[str, int]] = []  # (key, bytes held with the blob read)

    def resident(self) -> int:
        return RUNTIME + self.cache.used_bytes


class WatchedStore(LocalDirStore):
    def __init__(self, root, function: Function):
        super().__init__(root)
        self.function = function

    async def get(self, key: str) -> bytes:
        data = await super().get(key)
        if key.endswith(".pt"):  # a weight blob (burst.weights.master_key, worker_key)
            self.function.reads.append((key, self.function.resident() + len(data)))
        return data


class InProcess:
    def __init__(self, store):
        self.store = store

    async def invoke(self, function: str, payload: bytes) -> InvokeResult:
        body = await run_worker(orjson.loads(payload), self.store)
        return InvokeResult(orjson.dumps(body), Billing(duration_ms=1.0, billed_ms=1))

    async def close(self) -> None:
        return None


async def _infer(plan, store, x) -> torch.Tensor:
    event = {"plan_id": plan.plan_id, "request_id": f"r-{plan.plan_id}", "inputs": []}
    event["inputs"] = [encode_inline(x)]
    out = await run_master(event, InProcess(store), store)
    return await receive(out["outputs"][0], store)


@pytest.mark.parametrize("sizes", ["recorded", "estimated"])
async def test_switching_plans_makes_room_before_the_next_blob_is_read(
    tmp_path, monkeypatch, sizes
):
    """``estimated``: plans prepared before blob sizes were recorded size them from the plan."""
    model = sm.build("grouped")
    x = torch.randn(2, *sm.input_shape("grouped"), generator=torch.Generator().manual_seed(2))
    program = sm.export(model, x)
    graph = build_graph(program, "grouped")
    with torch.no_grad():
        want = model(x)
    fn = Function()
    monkeypatch.setattr(rc, "_CACHE", fn.cache)
    set_room(fn.cache.grow_newest)
    store = WatchedStore(tmp_path, fn)
    split = make_plan(graph, workers=2, split="output", batch=2)
    whole = make_plan(graph, workers=1, batch=2)
    for plan in (split, whole):
        await prepare_plan(program, plan, store, graph=graph)
    ids = json.loads(await store.get(weight_ids_key(whole.plan_id)))
    whole_bytes = ids[BLOB_BYTES]["master"]  # the plan records each blob's size
    if sizes == "estimated":
        for plan in (split, whole):
            key = weight_ids_key(plan.plan_id)
            old = json.loads(await store.get(key))
            del old[BLOB_BYTES]
            await store.put(key, json.dumps(old).encode())

    try:
        torch.testing.assert_close(await _infer(split, store, x), want, rtol=1e-5, atol=1e-6)
        # a function that holds the runtime and either plan's weights, not both at once
        held = fn.resident()
        fn.cache.memory_bytes = held + whole_bytes - 1
        fn.reads.clear()
        torch.testing.assert_close(await _infer(whole, store, x), want, rtol=1e-5, atol=1e-6)
    finally:
        set_room(None)
    assert fn.reads, "the one-function plan read its weights"
    over = [(key, peak) for key, peak in fn.reads if peak > fn.cache.memory_bytes]
    assert not over, f"read with the last plan's weights still held: {over}"
    assert any(evicted.startswith(f"plan {split.plan_id}") for evicted, _ in fn.cache.evictions)


class Held:
    """A process that holds ``base`` bytes whatever its cache holds (heap kept from earlier
    plans), besides the cache's entries."""

    def __init__(self, base: int):
        self.base, self.cache = base, None
        self.gave_up: list[str] = []

    def resident(self) -> int:
        return self.base + self.cache.used_bytes


def test_an_instance_with_no_room_even_empty_gives_itself_up_instead_of_loading():
    mb = 1 << 20
    proc = Held(base=300 * mb)
    proc.cache = LruCache(
        1 << 40,
        memory_bytes=1152 * mb,
        resident=proc.resident,
        release=lambda: None,
        no_room=proc.gave_up.append,
    )
    proc.cache.make_room(200 * mb, "old plan")  # fresh: 300 MB besides its weights
    proc.cache.put("old plan", {}, 200 * mb)
    proc.base = 700 * mb  # heap kept from earlier plans
    proc.cache.make_room(527 * mb, "plan x1 master")  # 700 + 527 > 1152 with nothing cached
    assert "old plan" not in proc.cache
    assert len(proc.gave_up) == 1 and "plan x1 master (527 MB)" in proc.gave_up[0]
    assert "holds 700 MB with its weight cache empty, of 1152 MB" in proc.gave_up[0]
    proc.cache.make_room(400 * mb, "plan x2 master")  # 700 + 400 fits: loads
    assert len(proc.gave_up) == 1


def test_where_not_even_a_fresh_instance_has_room_the_load_goes_ahead():
    """A plan too big for the function (forced unsplit): a fresh instance would fail the same
    way, so the instance does not give itself up (the runtime's out-of-memory error says so)."""
    mb = 1 << 20
    proc = Held(base=300 * mb)
    proc.cache = LruCache(
        1 << 40,
        memory_bytes=512 * mb,
        resident=proc.resident,
        release=lambda: None,
        no_room=proc.gave_up.append,
    )
    proc.cache.make_room(527 * mb, "plan whole master")
    assert proc.gave_up == []


def test_in_a_function_giving_up_exits_with_a_reason_the_invoker_retries():
    """The instance exits (status 75, a line on its stderr): the runtime reports
    Runtime.ExitError, which the invoker retries once on a fresh instance."""
    code = (
        "from burst.weight_cache import LruCache\n"
        "held = [300 << 20]\n"
        "c = LruCache(1 << 40, resident=lambda: held[0])\n"
        "c.make_room(100 << 20, 'plan q master')\n"
        "held[0] = 900 << 20\n"
        "c.make_room(300 << 20, 'plan p master')\n"
        "print('loaded anyway')\n"
    )
    env = {**os.environ, "TIDEGATE_FUNCTION_MEMORY_MB": "1024"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == EXIT_NO_ROOM and "loaded anyway" not in done.stdout
    assert "no room for plan p master (300 MB)" in done.stderr
    assert retry_invoke_on(InvokeError("exit", kind=InvokeErrorKind.CRASHED), 1)
