"""Regenerate ``inference_pb2.py`` from ``inference.proto``: ``python -m gateway.grpc.regenerate``.

Needs grpcio-tools at a version whose protoc matches the protobuf runtime's major version
(protobuf 6.x: ``pip install "grpcio-tools>=1.75,<1.85"``). The generated module is committed so
that serving needs only grpcio and protobuf.

One change to protoc's output: the messages go in a private descriptor pool. Their full names
(``inference.ModelInferRequest``, ...) are the spec's, so they would clash in the default pool
with a client library's own copy (tritonclient.grpc) loaded in the same process.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO = "inference.proto"
DEFAULT_POOL = "_descriptor_pool.Default()"
PRIVATE_POOL = "_POOL"


def main() -> int:
    with tempfile.TemporaryDirectory() as out:
        cmd = [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{HERE}",
            f"--python_out={out}",
            str(HERE / PROTO),
        ]
        subprocess.run(cmd, check=True)
        text = (Path(out) / "inference_pb2.py").read_text()
    if text.count(DEFAULT_POOL) != 1:
        print(
            "unexpected protoc output: the default pool is not used exactly once", file=sys.stderr
        )
        return 1
    text = text.replace(DEFAULT_POOL, PRIVATE_POOL)
    text = text.replace(
        "\n_sym_db = ",
        f"\n{PRIVATE_POOL} = _descriptor_pool.DescriptorPool()"
        "  # private: see gateway/grpc/regenerate.py\n_sym_db = ",
        1,
    )
    (HERE / "inference_pb2.py").write_text(text)
    print(f"wrote {HERE / 'inference_pb2.py'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
