"""Ray Serve baseline for gateway_overhead.py: the same .pt2 with one replica and Serve's batching.

Runs in its own virtualenv (ray pins its own web stack). Usage:
    ray_serve_app.py PROGRAM.pt2 PORT THREADS MAX_BATCH C,H,W...
Prints "ready" once the HTTP route answers.
"""

import asyncio
import sys

import numpy as np
import torch
from ray import serve
from starlette.requests import Request
from starlette.responses import Response


def main() -> None:
    program, port, threads, max_batch = (
        sys.argv[1],
        int(sys.argv[2]),
        int(sys.argv[3]),
        int(sys.argv[4]),
    )
    sample_shape = tuple(int(d) for d in sys.argv[5].split(","))
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})

    @serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 1}, max_ongoing_requests=64)
    class Model:
        def __init__(self) -> None:
            torch.set_num_threads(threads)
            self.module = torch.export.load(program).module()

        @serve.batch(max_batch_size=max_batch, batch_wait_timeout_s=0.002)
        async def run(self, rows: list[np.ndarray]) -> list[bytes]:
            with torch.inference_mode():
                out = self.module(torch.from_numpy(np.concatenate(rows))).numpy()
            return [row.tobytes() for row in out]

        async def __call__(self, request: Request) -> Response:
            body = await request.body()
            x = np.frombuffer(body, dtype=np.float32).reshape((-1, *sample_shape))
            return Response(await self.run(x), media_type="application/octet-stream")

    serve.run(Model.bind(), route_prefix="/", blocking=False)
    print("ready", flush=True)
    asyncio.get_event_loop().run_forever()


if __name__ == "__main__":
    main()
