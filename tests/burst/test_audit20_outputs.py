"""Programs users bring whose outputs are not one tensor or a flat tuple, and damaged programs
(session 20's audit, ``audit20_models``).

A model returning a dict (``{"mask": m, "logits": y}``) was imported with outputs named
``output__0``/``output__1``, and every VM-path request failed ("model dictout failed:
AttributeError: 'str' object has no attribute 'detach'": the server iterated the dict's keys); a
nested tuple ``(f, (y, id))`` failed there too ("model returned 2 outputs, config names 3"),
while the burst path answered both. A .pt2 with a damaged zip directory ended ``tidegate export``
in a traceback, and one with a flipped weight byte was imported and served wrong answers.
"""

from __future__ import annotations

import contextlib
import io
import sys
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import audit20_models as am  # noqa: E402

from ops.cli import main as cli  # noqa: E402
from tests.vmpool.test_server import ServerProcess  # noqa: E402
from vmpool.artifact import list_models, load_artifact  # noqa: E402

torch.set_num_threads(1)
DT = {torch.float32: "FP32", torch.float16: "FP16", torch.int64: "INT64"}


def _cli(*args) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli(list(args))
    return code, out.getvalue(), err.getvalue()


def _save(tmp: Path, name: str) -> Path:
    path = tmp / f"{name}.pt2"
    torch.export.save(am.export(am.build(name), am.example(name)), str(path))
    return path


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("audit20_outputs")
    for name in ("dictout", "nested", "half"):
        code, _, err = _cli(
            "export", str(_save(tmp, name)), "--name", name, "--out", str(tmp / "m")
        )
        assert code == 0, err
    return tmp / "m"


def test_a_dict_outputs_keys_name_its_outputs(repo):
    cfg = load_artifact(repo, "dictout").config
    assert [(t.name, t.datatype, t.shape) for t in cfg.outputs] == [
        ("mask", "FP32", (-1, 3, 20, 18)),
        ("logits", "FP32", (-1, 4)),
    ]
    nested = load_artifact(repo, "nested").config
    assert [(t.name, t.datatype) for t in nested.outputs] == [
        ("output__0", "FP32"),
        ("output__1", "FP32"),
        ("output__2", "INT64"),
    ]


def test_dict_nested_and_fp16_models_answer_on_the_model_server(repo):
    server = ServerProcess(repo, "--max-queue-delay-ms", "1")
    try:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            for name in ("dictout", "nested", "half"):
                xs = am.example(name, batch=3, seed=21)
                with torch.no_grad():
                    want = torch.utils._pytree.tree_leaves(am.build(name)(*xs))
                cfg = load_artifact(repo, name).config
                body = {
                    "inputs": [
                        {
                            "name": spec.name,
                            "shape": list(x.shape),
                            "datatype": DT[x.dtype],
                            "data": x.flatten().tolist(),
                        }
                        for spec, x in zip(cfg.inputs, xs)
                    ]
                }
                r = client.post(f"/v2/models/{name}/infer", json=body)
                assert r.status_code == 200, (name, r.text)
                outs = r.json()["outputs"]
                assert [o["name"] for o in outs] == [t.name for t in cfg.outputs]
                for o, w in zip(outs, want, strict=True):
                    assert o["datatype"] == DT[w.dtype] and o["shape"] == list(w.shape), name
                    got = np.array(o["data"]).reshape(o["shape"])
                    assert np.allclose(got, w.numpy(), rtol=1e-4, atol=1e-5), name
    finally:
        server.stop()


def _flip_a_weight_bit(src: Path, dst: Path) -> None:
    """``src`` with one bit of its first weight flipped and the recorded CRC kept (as a flip on
    disk or in transit leaves it)."""
    data = bytearray(src.read_bytes())
    with zipfile.ZipFile(src) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith("weights/weight_0"))
    assert info.compress_type == zipfile.ZIP_STORED
    head = info.header_offset
    name_len = int.from_bytes(data[head + 26 : head + 28], "little")
    extra_len = int.from_bytes(data[head + 28 : head + 30], "little")
    data[head + 30 + name_len + extra_len + 5] ^= 0x40
    dst.write_bytes(bytes(data))


def _tear_a_name(src: Path, dst: Path) -> None:
    """``src`` with its central directory's first file name no longer UTF-8 (zipfile raises
    UnicodeDecodeError, not BadZipFile)."""
    data = bytearray(src.read_bytes())
    end = data.rfind(b"PK\x05\x06")  # the end record, then the directory's first entry
    entry = int.from_bytes(data[end + 16 : end + 20], "little")
    assert data[entry : entry + 4] == b"PK\x01\x02"
    assert int.from_bytes(data[entry + 8 : entry + 10], "little") & 0x800  # names are UTF-8
    data[entry + 46 : entry + 48] = b"\xff\x88"
    dst.write_bytes(bytes(data))


def test_a_damaged_program_is_refused_in_one_line_and_nothing_is_written(tmp_path):
    src = _save(tmp_path, "views")
    flipped, torn = tmp_path / "flipped.pt2", tmp_path / "torn.pt2"
    _flip_a_weight_bit(src, flipped)
    _tear_a_name(src, torn)
    repo = tmp_path / "repo"
    for path, says in ((flipped, "does not match its checksum"), (torn, "damaged zip archive")):
        code, _, err = _cli("export", str(path), "--name", path.stem, "--out", str(repo))
        assert code == 2 and says in err, err
        assert "Traceback" not in err and err.count("\n") == 1, err
    assert not repo.exists() or list_models(repo) == []
    assert _cli("export", str(src), "--name", "views", "--out", str(repo))[0] == 0  # the intact
