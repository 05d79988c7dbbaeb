"""A loopback Alibaba Function Compute 3.0 endpoint: InvokeFunction with V3 signatures checked.

Written from the public documentation (FC 3.0 API "InvokeFunction", version 2023-03-30, and
"Request syntax and signature method V3"), independently of burst.faas.alibaba_fc:
- only ``POST /2023-03-30/functions/{name}/invocations`` is served; ``qualifier`` is a query
  parameter; x-acs-action/x-acs-version/x-acs-date/x-acs-signature-nonce/x-acs-content-sha256,
  host and Authorization are required; the body hash must match x-acs-content-sha256;
- the signature is recomputed from the headers the client lists in SignedHeaders, which must
  cover host, content-type and every x-acs-* header sent;
- errors are JSON ``{"Code", "Message", "RequestId"}`` with the HTTP status; a function's own
  failure is HTTP 200 with ``x-fc-error-type`` and an ``{"errorMessage", "errorType"}`` body;
- with ``x-fc-log-type: Tail`` the base64 log tail is returned in ``x-fc-log-result`` and ends
  with a line giving Duration, Billed Duration (1 ms granularity), Memory Size, Max Memory Used.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler
from typing import Callable
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import pytest

from tests.support.loopback import LoopbackHTTPServer

API_VERSION = "2023-03-30"
MAX_CLOCK_SKEW_S = 15 * 60


def _encode(s: str) -> str:
    # RFC 3986 unreserved characters stay; everything else is %XX (space -> %20, '*' -> %2A).
    return quote(s, safe="-_.~")


def expected_signature(
    secret: str,
    method: str,
    path: str,
    query: list[tuple[str, str]],
    headers: dict[str, str],
    signed: list[str],
    body: bytes,
) -> str:
    canonical_uri = "/".join(_encode(unquote(seg)) for seg in path.split("/"))
    canonical_query = "&".join(f"{_encode(k)}={_encode(v)}" for k, v in sorted(query))
    canonical_headers = "".join(f"{name}:{headers.get(name, '').strip()}\n" for name in signed)
    canonical = "\n".join(
        [
            method,
            canonical_uri,
            canonical_query,
            canonical_headers,
            ";".join(signed),
            hashlib.sha256(body).hexdigest(),
        ]
    )
    to_sign = "ACS3-HMAC-SHA256\n" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return hmac.new(secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()


class FunctionFailed(Exception):
    """Raise from a test function to make FC report a function error."""

    def __init__(self, message: str, error_type: str = "UnhandledInvocationError"):
        super().__init__(message)
        self.error_type = error_type


@dataclass
class FakeFunction:
    handler: Callable[[bytes], bytes]
    memory_mb: int = 512
    qualifiers: set[str] = field(default_factory=lambda: {"LATEST"})
    warm: bool = False  # the first call is a cold start and reports Init Duration


class FCError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class FCServer(LoopbackHTTPServer):
    """Threaded loopback FC. ``credentials`` maps AccessKeyId -> AccessKeySecret."""

    def __init__(self, credentials: dict[str, str]):
        self.credentials = dict(credentials)
        self.functions: dict[str, FakeFunction] = {}
        self.throttle_next = 0  # answer this many upcoming invocations with 429
        self.requests: list[dict] = []  # method, path, query, headers of every request seen
        self.lock = threading.Lock()
        self._nonces: set[str] = set()
        self._listen(_make_handler(self))

    # -- request processing (called from handler threads) ------------------------------------
    def authenticate(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]],
        headers: dict[str, str],
        body: bytes,
    ) -> None:
        for required in (
            "authorization",
            "host",
            "x-acs-action",
            "x-acs-version",
            "x-acs-date",
            "x-acs-signature-nonce",
            "x-acs-content-sha256",
        ):
            if not headers.get(required):
                raise FCError(400, "MissingHeader", f"Required header {required} is missing.")
        if headers["x-acs-version"] != API_VERSION:
            raise FCError(
                400,
                "InvalidVersion",
                f"Specified API version {headers['x-acs-version']} is not supported.",
            )
        if headers["x-acs-action"] != "InvokeFunction":
            raise FCError(
                400, "InvalidAction", f"Action {headers['x-acs-action']} does not match the path."
            )
        try:
            sent = datetime.strptime(headers["x-acs-date"], "%Y-%m-%dT%H:%M:%SZ").replace(
                tzinfo=timezone.utc
            )
        except ValueError:
            raise FCError(
                400, "InvalidTimeStamp.Format", "x-acs-date must be yyyy-MM-ddTHH:mm:ssZ in UTC."
            ) from None
        if abs(time.time() - sent.timestamp()) > MAX_CLOCK_SKEW_S:
            raise FCError(
                400, "InvalidTimeStamp.Expired", "The request time is too far from the server time."
            )
        if headers["x-acs-content-sha256"] != hashlib.sha256(body).hexdigest():
            raise FCError(
                400, "InvalidContentSHA256", "x-acs-content-sha256 does not match the request body."
            )
        with self.lock:
            if headers["x-acs-signature-nonce"] in self._nonces:
                raise FCError(
                    400, "SignatureNonceUsed", "The request signature nonce has been used."
                )
            self._nonces.add(headers["x-acs-signature-nonce"])
        algo, _, rest = headers["authorization"].partition(" ")
        if algo != "ACS3-HMAC-SHA256":
            raise FCError(400, "IncompleteSignature", f"Unsupported signature algorithm {algo!r}.")
        fields = dict(item.strip().split("=", 1) for item in rest.split(",") if "=" in item)
        if not {"Credential", "SignedHeaders", "Signature"} <= fields.keys():
            raise FCError(
                400,
                "IncompleteSignature",
                "Authorization must carry Credential, SignedHeaders and Signature.",
            )
        signed = fields["SignedHeaders"].split(";")
        must_sign = {h for h in headers if h.startswith("x-acs-")} | {"host"}
        if "content-type" in headers:
            must_sign.add("content-type")
        if signed != sorted(signed) or not must_sign <= set(signed):
            raise FCError(
                400,
                "IncompleteSignature",
                f"SignedHeaders must be sorted and include {sorted(must_sign)}, got {signed}.",
            )
        secret = self.credentials.get(fields["Credential"])
        if secret is None:
            raise FCError(403, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
        want = expected_signature(secret, method, path, query, headers, signed, body)
        if not hmac.compare_digest(want, fields["Signature"]):
            raise FCError(
                403,
                "SignatureDoesNotMatch",
                "The request signature does not conform to Aliyun standards.",
            )

    def invoke(
        self, name: str, qualifier: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        with self.lock:
            if self.throttle_next > 0:
                self.throttle_next -= 1
                raise FCError(
                    429, "ResourceThrottled", "Reserved resource exhausted, please retry later."
                )
            fn = self.functions.get(name)
            if fn is None:
                raise FCError(404, "FunctionNotFound", f"function '{name}' does not exist")
            if qualifier not in fn.qualifiers:
                raise FCError(
                    404,
                    "AliasNotFound",
                    f"alias or version '{qualifier}' of function '{name}' does not exist",
                )
            cold, fn.warm = not fn.warm, True
        request_id = headers["x-fc-request-id"]
        out_headers: dict[str, str] = {}
        started = time.perf_counter()
        try:
            status, payload = 200, fn.handler(body)
        except FunctionFailed as e:
            status = 200
            payload = json.dumps(
                {"errorMessage": str(e), "errorType": "Error", "stackTrace": []}
            ).encode()
            out_headers["x-fc-error-type"] = e.error_type
        duration_ms = (time.perf_counter() - started) * 1000.0
        if headers.get("x-fc-log-type") == "Tail":
            report = (
                f"FC Invoke End RequestId: {request_id}, Duration: {duration_ms:.2f} ms, "
                f"Billed Duration: {max(1, math.ceil(duration_ms))} ms, Memory Size: {fn.memory_mb} MB, "
                f"Max Memory Used: 21.37 MB"
            )
            if cold:
                report += ", Init Duration: 250.00 ms"
            log = f"FC Invoke Start RequestId: {request_id}\nhandler ran\n{report}\n"
            out_headers["x-fc-log-result"] = base64.b64encode(log.encode()).decode()
        return status, out_headers, payload


def _make_handler(server: FCServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in separate writes

        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            self._handle("POST")

        def do_GET(self) -> None:
            self._handle("GET")

        def do_PUT(self) -> None:
            self._handle("PUT")

        def _handle(self, method: str) -> None:
            request_id = f"1-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:12]}"
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            parts = urlsplit(self.path)
            query = parse_qsl(parts.query, keep_blank_values=True)
            headers = {k.lower(): v for k, v in self.headers.items()}
            with server.lock:
                server.requests.append(
                    {
                        "method": method,
                        "path": parts.path,
                        "query": dict(query),
                        "headers": dict(headers),
                    }
                )
            segs = parts.path.split("/")
            try:
                if (
                    method != "POST"
                    or len(segs) != 5
                    or segs[1] != API_VERSION
                    or segs[2] != "functions"
                    or segs[4] != "invocations"
                ):
                    raise FCError(
                        404,
                        "PathNotSupported",
                        f"{method} {parts.path} is not an InvokeFunction request.",
                    )
                server.authenticate(method, parts.path, query, headers, body)
                headers["x-fc-request-id"] = request_id
                status, out_headers, payload = server.invoke(
                    unquote(segs[3]), dict(query).get("qualifier", "LATEST"), headers, body
                )
                self._send(
                    status,
                    payload,
                    {"Content-Type": "application/octet-stream", **out_headers},
                    request_id,
                )
            except FCError as e:
                err = json.dumps(
                    {"Code": e.code, "Message": e.message, "RequestId": request_id}
                ).encode()
                self._send(e.status, err, {"Content-Type": "application/json"}, request_id)

        def _send(self, status: int, body: bytes, headers: dict[str, str], request_id: str) -> None:
            self.send_response(status)
            self.send_header("x-fc-request-id", request_id)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


FC_TEST_CREDENTIALS = {"LTAIfctest": "tidegate-fc-secret"}


@pytest.fixture(scope="session")
def fc_server_session():
    srv = FCServer(FC_TEST_CREDENTIALS).start()
    yield srv
    srv.stop()


@pytest.fixture
def fc_server(fc_server_session):
    """The loopback FC with no functions, no throttling and an empty request log."""
    srv = fc_server_session
    with srv.lock:
        srv.functions.clear()
        srv.throttle_next = 0
        srv.requests.clear()
    yield srv
