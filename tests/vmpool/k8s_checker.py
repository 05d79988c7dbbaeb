"""A loopback Kubernetes API server for one Deployment and its Service, checking the wire.

It checks what a real API server would refuse: the Bearer token (401), the merge-patch content
type on PATCH (415), the shape of a scale patch (422), the EndpointSlice label selector (400).
It behaves like the controllers behind it: scaling adds not-ready pods (``set_ready`` makes them
ready), scaling down removes the pods with the lowest ``pod-deletion-cost`` first, a deleted pod
is replaced.
"""

from __future__ import annotations

import itertools
import json
import threading
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlparse

from tests.support.loopback import LoopbackHTTPServer

COST = "controller.kubernetes.io/pod-deletion-cost"


class KubeChecker(LoopbackHTTPServer):
    def __init__(
        self,
        *,
        token: str,
        namespace: str = "serving",
        deployment: str = "model-server",
        service: str = "model-server",
    ):
        self.token, self.namespace = token, namespace
        self.deployment, self.service = deployment, service
        self.replicas = 0
        self.pods: dict[str, dict] = {}  # name -> {"ip", "ready", "cost", "seq"}
        self.log: list[tuple[str, str, int]] = []  # (method, path, status)
        self._seq = itertools.count(1)
        self._lock = threading.Lock()
        self._hold: threading.Event | None = None  # armed: the next scale PATCH waits on it
        self._release: threading.Event | None = None  # set once a later scale PATCH is applied
        self._listen(_handler(self))

    # controller behaviour ----------------------------------------------------------------

    def _reconcile(self) -> None:
        while len(self.pods) < self.replicas:
            n = next(self._seq)
            self.pods[f"{self.deployment}-{n}"] = {
                "ip": f"10.1.0.{n}",
                "ready": False,
                "cost": 0,
                "seq": n,
            }
        while len(self.pods) > self.replicas:
            victim = min(
                self.pods,
                key=lambda p: (self.pods[p]["cost"], self.pods[p]["ready"], -self.pods[p]["seq"]),
            )
            del self.pods[victim]

    def hold_next_scale(self) -> None:
        """Delay the next scale PATCH until another one has been applied (or 1 s has passed):
        the network reordering two concurrent PATCHes."""
        self._hold = threading.Event()

    def set_ready(self, *names: str) -> None:
        with self._lock:
            for name in names or list(self.pods):
                self.pods[name]["ready"] = True

    # API ---------------------------------------------------------------------------------

    def handle(self, method: str, url: str, headers, body: bytes) -> tuple[int, dict]:
        if headers.get("Authorization") != f"Bearer {self.token}":
            return 401, _status(401, "Unauthorized")
        parsed = urlparse(url)
        path, query = parsed.path, parse_qs(parsed.query)
        ns = f"/namespaces/{self.namespace}"
        scale = f"/apis/apps/v1{ns}/deployments/{self.deployment}/scale"
        pod_prefix = f"/api/v1{ns}/pods/"
        if method == "PATCH":
            if headers.get("Content-Type") != "application/merge-patch+json":
                return 415, _status(415, "UnsupportedMediaType")
            try:
                patch = json.loads(body)
            except ValueError:
                return 400, _status(400, "BadRequest")
        if path == scale and method == "PATCH" and self._hold is not None:
            held, self._hold, self._release = self._hold, None, self._hold
            held.wait(1.0)
        with self._lock:
            if path == scale and method == "GET":
                return 200, self._scale()
            if path == scale and method == "PATCH":
                replicas = patch.get("spec", {}).get("replicas") if set(patch) == {"spec"} else None
                if (
                    not isinstance(replicas, int)
                    or replicas < 0
                    or set(patch["spec"]) != {"replicas"}
                ):
                    return 422, _status(422, "Invalid")
                self.replicas = replicas
                self._reconcile()
                release, self._release = self._release, None
                if release is not None and not release.is_set():
                    release.set()
                return 200, self._scale()
            if path == f"/apis/discovery.k8s.io/v1{ns}/endpointslices" and method == "GET":
                if query.get("labelSelector") != [f"kubernetes.io/service-name={self.service}"]:
                    return 400, _status(400, "BadRequest")
                return 200, {
                    "kind": "EndpointSliceList",
                    "apiVersion": "discovery.k8s.io/v1",
                    "items": [self._slice()],
                }
            if path == f"/api/v1{ns}/endpoints/{self.service}" and method == "GET":
                return 200, self._endpoints()
            if path.startswith(pod_prefix):
                name = path[len(pod_prefix) :]
                if name not in self.pods:
                    return 404, _status(404, "NotFound")
                if method == "PATCH":
                    cost = patch.get("metadata", {}).get("annotations", {}).get(COST)
                    if cost is not None:
                        self.pods[name]["cost"] = int(cost)
                    return 200, {"kind": "Pod", "metadata": {"name": name}}
                if method == "DELETE":
                    del self.pods[name]
                    self._reconcile()  # the ReplicaSet replaces it
                    return 200, {"kind": "Pod", "metadata": {"name": name}}
        return 404, _status(404, "NotFound")

    def _scale(self) -> dict:
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {"name": self.deployment, "namespace": self.namespace},
            "spec": {"replicas": self.replicas},
            "status": {"replicas": len(self.pods)},
        }

    def _slice(self) -> dict:
        return {
            "addressType": "IPv4",
            "metadata": {"labels": {"kubernetes.io/service-name": self.service}},
            "endpoints": [
                {
                    "addresses": [p["ip"]],
                    "conditions": {"ready": p["ready"]},
                    "targetRef": {"kind": "Pod", "name": name},
                }
                for name, p in self.pods.items()
            ],
            "ports": [{"name": "http", "port": 8000, "protocol": "TCP"}],
        }

    def _endpoints(self) -> dict:
        def addr(name, p):
            return {"ip": p["ip"], "targetRef": {"kind": "Pod", "name": name}}

        return {
            "kind": "Endpoints",
            "subsets": [
                {
                    "addresses": [addr(n, p) for n, p in self.pods.items() if p["ready"]],
                    "notReadyAddresses": [
                        addr(n, p) for n, p in self.pods.items() if not p["ready"]
                    ],
                    "ports": [{"name": "http", "port": 8000}],
                }
            ],
        }


def _status(code: int, reason: str) -> dict:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": reason,
        "code": code,
        "message": reason,
    }


def _handler(checker: KubeChecker):
    class Handler(BaseHTTPRequestHandler):
        def _serve(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status, payload = checker.handle(self.command, self.path, self.headers, body)
            checker.log.append((self.command, urlparse(self.path).path, status))
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PATCH = do_DELETE = do_PUT = do_POST = _serve

        def log_message(self, *args):
            pass

    return Handler
