"""Kubernetes provisioner: a Deployment of model servers behind a Service.

The replica count is the Deployment's scale subresource (``PATCH .../deployments/NAME/scale``,
merge patch). Replicas are the Service's endpoints, read from EndpointSlices
(``discovery.k8s.io/v1``, or the older Endpoints object with ``use_endpoint_slices=False``):
a ready endpoint is a READY replica, a not-ready one BOOTING, and pods the Deployment wants but
that have no endpoint yet are BOOTING placeholders. A drained replica leaves by marking its pod
with ``controller.kubernetes.io/pod-deletion-cost`` and scaling down by one (the ReplicaSet
removes the cheapest pod first); a dead one is deleted so the Deployment replaces it.

Auth is a Bearer token (``token``, or ``token_file``: in a pod, the service account's).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from pathlib import Path

import aiohttp

from .base import ReplicaInfo, ReplicaState

log = logging.getLogger("tidegate.provisioner.kubernetes")

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
MERGE_PATCH = "application/merge-patch+json"
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"


class KubernetesError(Exception):
    pass


class KubernetesProvisioner:
    def __init__(
        self,
        deployment: str,
        *,
        service: str | None = None,
        namespace: str = "default",
        api_url: str = "https://kubernetes.default.svc",
        token: str | None = None,
        token_file: str | Path | None = None,
        ca_file: str | Path | None = None,
        port: int | None = None,
        use_endpoint_slices: bool = True,
        poll_interval_s: float = 2.0,
        expected_boot_s: float = 60.0,
    ):
        self.deployment, self.service = deployment, service or deployment
        self.namespace = namespace
        self.api_url = api_url.rstrip("/")
        self._token, self._token_file = token, Path(token_file) if token_file else None
        if (
            self._token is None
            and self._token_file is None
            and (SERVICE_ACCOUNT / "token").is_file()
        ):
            self._token_file = SERVICE_ACCOUNT / "token"
        self.ca_file = ca_file
        self.port = port
        self.use_endpoint_slices = use_endpoint_slices
        self.poll_interval_s = poll_interval_s
        self.expected_boot_s = expected_boot_s
        self.boot_failures = 0
        self._wanted = 0
        # one scale PATCH at a time, each sending the count as it is when sent: concurrent drains
        # would otherwise race on the wire and an older, larger count could land last
        self._scale_lock = asyncio.Lock()
        self._replicas: dict[str, ReplicaInfo] = {}
        self._session: aiohttp.ClientSession | None = None
        self._poller: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()

    # wire ----------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        token = self._token
        if token is None and self._token_file is not None:
            token = self._token_file.read_text().strip()  # re-read: projected tokens rotate
        return {"Authorization": f"Bearer {token}"} if token else {}

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            ctx = ssl.create_default_context(cafile=str(self.ca_file)) if self.ca_file else None
            connector = aiohttp.TCPConnector(ssl=ctx) if ctx else aiohttp.TCPConnector()
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=10)
            )
        return self._session

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json_body=None,
        params=None,
        content_type: str = "application/json",
    ):
        headers = {**self._headers(), "Accept": "application/json"}
        kwargs = {}
        if json_body is not None:
            import json

            headers["Content-Type"] = content_type
            kwargs["data"] = json.dumps(json_body).encode()
        async with self._client().request(
            method, self.api_url + path, headers=headers, params=params, **kwargs
        ) as resp:
            body = await resp.json(content_type=None) if resp.status != 204 else {}
            if resp.status >= 400:
                message = body.get("message") if isinstance(body, dict) else None
                raise KubernetesError(f"{method} {path}: HTTP {resp.status} {message or ''}")
            return body

    def _deployment_path(self) -> str:
        return f"/apis/apps/v1/namespaces/{self.namespace}/deployments/{self.deployment}"

    # the Provisioner protocol ------------------------------------------------------------------

    def replicas(self) -> list[ReplicaInfo]:
        return list(self._replicas.values())

    async def scale_to(self, count: int) -> None:
        if count < 0:
            raise ValueError("replica count must be >= 0")
        await self._set_replicas(count)
        await self.refresh()
        if self._poller is None:
            self._poller = asyncio.get_running_loop().create_task(self._poll())

    async def _set_replicas(self, count: int) -> None:
        self._wanted = count
        async with self._scale_lock:
            await self._call(
                "PATCH",
                self._deployment_path() + "/scale",
                json_body={"spec": {"replicas": self._wanted}},
                content_type=MERGE_PATCH,
            )

    async def drain(self, replica_id: str) -> None:
        info = self._replicas.pop(replica_id, None)
        if info is not None and not replica_id.startswith("pending-"):
            await self._call(
                "PATCH",
                f"/api/v1/namespaces/{self.namespace}/pods/{replica_id}",
                json_body={"metadata": {"annotations": {DELETION_COST: "-1000"}}},
                content_type=MERGE_PATCH,
            )
        # from our own count, not a read-modify-write of the scale: drains run concurrently
        await self._set_replicas(max(self._wanted - 1, 0))

    def mark_failed(self, replica_id: str) -> None:
        info = self._replicas.get(replica_id)
        if info is None or replica_id.startswith("pending-"):
            return
        info.state = ReplicaState.FAILED
        task = asyncio.get_running_loop().create_task(
            self._call("DELETE", f"/api/v1/namespaces/{self.namespace}/pods/{replica_id}")
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Stop watching; the Deployment keeps running (it is not ours to end)."""
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    # discovery ---------------------------------------------------------------------------------

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval_s)
            try:
                await self.refresh()
            except Exception:  # keep the last view; the next poll tries again
                log.exception("cannot read endpoints of %s/%s", self.namespace, self.service)

    async def refresh(self) -> None:
        endpoints = await (self._slices() if self.use_endpoint_slices else self._endpoints())
        now = time.monotonic()
        seen = {}
        for pod, url, ready in endpoints:
            info = self._replicas.get(pod)
            if info is None or info.id.startswith("pending-"):
                info = ReplicaInfo(pod, url, ReplicaState.BOOTING, now)
            if ready and info.state == ReplicaState.BOOTING:
                info.state, info.ready_at_s = ReplicaState.READY, now
            elif not ready and info.state == ReplicaState.READY:
                info.state = ReplicaState.BOOTING  # not ready any more (restarting)
            seen[pod] = info
        pending = [r for r in self._replicas.values() if r.id.startswith("pending-")]
        for i in range(max(self._wanted - len(seen), 0)):
            placeholder = (
                pending[i]
                if i < len(pending)
                else ReplicaInfo(f"pending-{i + 1}", "", ReplicaState.BOOTING, now)
            )
            seen[placeholder.id] = placeholder
        self._replicas = seen

    async def _slices(self) -> list[tuple[str, str, bool]]:
        body = await self._call(
            "GET",
            f"/apis/discovery.k8s.io/v1/namespaces/{self.namespace}/endpointslices",
            params={"labelSelector": f"kubernetes.io/service-name={self.service}"},
        )
        out = []
        for item in body.get("items", []):
            port = self.port or next((p["port"] for p in item.get("ports") or []), 8000)
            for ep in item.get("endpoints") or []:
                if ep.get("conditions", {}).get("terminating"):
                    continue
                pod = (ep.get("targetRef") or {}).get("name") or ep["addresses"][0]
                ready = ep.get("conditions", {}).get("ready", True)
                out.append((pod, f"http://{ep['addresses'][0]}:{port}", bool(ready)))
        return out

    async def _endpoints(self) -> list[tuple[str, str, bool]]:
        body = await self._call(
            "GET", f"/api/v1/namespaces/{self.namespace}/endpoints/{self.service}"
        )
        out = []
        for subset in body.get("subsets") or []:
            port = self.port or next((p["port"] for p in subset.get("ports") or []), 8000)
            for key, ready in (("addresses", True), ("notReadyAddresses", False)):
                for addr in subset.get(key) or []:
                    pod = (addr.get("targetRef") or {}).get("name") or addr["ip"]
                    out.append((pod, f"http://{addr['ip']}:{port}", ready))
        return out
