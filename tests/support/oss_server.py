"""A loopback OSS server: the REST subset OSSStore uses, with OSS's V1 header signature checked.

Written from Alibaba Cloud's public documentation, not from oss2's code:
- "Include a V1 signature in the Authorization header" (help/en/oss/developer-reference/
  include-signatures-in-the-authorization-header, doc-detail/31951):
  Authorization = "OSS " + AccessKeyId + ":" + base64(hmac-sha1(AccessKeySecret,
  VERB \\n Content-MD5 \\n Content-Type \\n Date \\n CanonicalizedOSSHeaders + CanonicalizedResource)).
- PutObject, GetObject, DeleteObject, DeleteMultipleObjects (POST /?delete, Content-MD5 required,
  at most 1000 keys), ListObjects (GET /) and ListObjectsV2 (GET /?list-type=2), errors as
  <Error><Code/><Message/><RequestId/><HostId/></Error> with x-oss-request-id.
Only path-style addressing is served (what an SDK uses for an IP endpoint).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
import uuid
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qsl, quote, unquote, urlsplit
from xml.etree import ElementTree
from xml.sax.saxutils import escape

import crcmod
import pytest

from tests.support.loopback import LoopbackHTTPServer

# Sub-resources that take part in CanonicalizedResource (from the V1 signature page; the subset
# this server can see plus the common ones).
SIGNED_SUBRESOURCES = frozenset(
    {
        "acl",
        "uploads",
        "location",
        "cors",
        "logging",
        "website",
        "referer",
        "lifecycle",
        "delete",
        "append",
        "tagging",
        "objectMeta",
        "uploadId",
        "partNumber",
        "security-token",
        "position",
        "img",
        "style",
        "styleName",
        "replication",
        "replicationProgress",
        "replicationLocation",
        "cname",
        "bucketInfo",
        "comp",
        "qos",
        "live",
        "status",
        "vod",
        "startTime",
        "endTime",
        "symlink",
        "x-oss-process",
        "response-content-type",
        "x-oss-traffic-limit",
        "response-content-language",
        "response-expires",
        "response-cache-control",
        "response-content-disposition",
        "response-content-encoding",
        "restore",
        "callback",
        "callback-var",
        "qosInfo",
        "policy",
        "stat",
        "encryption",
        "versions",
        "versioning",
        "versionId",
        "asyncFetch",
        "x-oss-request-payer",
        "sequential",
        "inventory",
        "inventoryId",
        "continuation-token",
        "worm",
        "wormId",
        "wormExtend",
    }
)
MAX_CLOCK_SKEW_S = 15 * 60
MAX_DELETE_KEYS = 1000

# OSS's x-oss-hash-crc64ecma is CRC-64/XZ (ECMA-182 polynomial, reflected, all-ones init/xorout).
crc64_ecma = crcmod.mkCrcFun(0x142F0E1EBA9EA3693, initCrc=0, xorOut=0xFFFFFFFFFFFFFFFF, rev=True)


def v1_string_to_sign(
    method: str, headers: dict[str, str], bucket: str, key: str, query: list[tuple[str, str]]
) -> str:
    """The documented V1 StringToSign. ``headers`` has lower-case names."""
    oss_headers = sorted((k, v.strip()) for k, v in headers.items() if k.startswith("x-oss-"))
    canonical_headers = "".join(f"{k}:{v}\n" for k, v in oss_headers)
    resource = f"/{bucket}/{key}" if bucket else "/"
    subs = sorted((k, v) for k, v in query if k in SIGNED_SUBRESOURCES)
    if subs:
        resource += "?" + "&".join(f"{k}={v}" if v else k for k, v in subs)
    date = headers.get("x-oss-date") or headers.get("date", "")
    return "\n".join(
        [
            method,
            headers.get("content-md5", ""),
            headers.get("content-type", ""),
            date,
            canonical_headers + resource,
        ]
    )


def v1_signature(secret: str, string_to_sign: str) -> str:
    mac = hmac.new(secret.encode(), string_to_sign.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


class _Object:
    __slots__ = ("data", "etag", "mtime", "content_type", "crc")

    def __init__(self, data: bytes, content_type: str):
        self.data = data
        self.etag = hashlib.md5(data).hexdigest().upper()
        self.mtime = time.time()
        self.content_type = content_type
        self.crc = crc64_ecma(data)


class OSSServer(LoopbackHTTPServer):
    """Threaded loopback OSS. ``credentials`` maps AccessKeyId -> AccessKeySecret."""

    def __init__(self, credentials: dict[str, str], buckets: tuple[str, ...] = ("tidegate",)):
        self.credentials = dict(credentials)
        self.buckets: dict[str, dict[str, _Object]] = {b: {} for b in buckets}
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []  # (method, path?query) seen, for wire assertions
        self._listen(_make_handler(self))


class OSSRequestError(Exception):
    def __init__(self, status: int, code: str, message: str, **extra: str):
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


def _make_handler(server: OSSServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like OSS; the SDK pools connections
        disable_nagle_algorithm = True  # headers and body go out in separate writes

        def log_message(self, *args: object) -> None:  # keep test output quiet
            pass

        def do_GET(self) -> None:
            self._handle("GET")

        def do_PUT(self) -> None:
            self._handle("PUT")

        def do_DELETE(self) -> None:
            self._handle("DELETE")

        def do_POST(self) -> None:
            self._handle("POST")

        def do_HEAD(self) -> None:
            self._handle("HEAD")

        # -- plumbing -------------------------------------------------------------------
        def _read_body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _send(
            self,
            status: int,
            body: bytes = b"",
            headers: dict[str, str] | None = None,
            request_id: str = "",
        ) -> None:
            self.send_response(status)
            self.send_header("Server", "AliyunOSS")
            self.send_header("x-oss-request-id", request_id)
            self.send_header("Date", formatdate(usegmt=True))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD" and body:
                self.wfile.write(body)

        def _send_error(self, err: OSSRequestError, request_id: str) -> None:
            fields = {
                "Code": err.code,
                "Message": err.message,
                "RequestId": request_id,
                "HostId": self.headers.get("Host", ""),
                **err.extra,
            }
            xml = "".join(f"<{k}>{escape(str(v))}</{k}>" for k, v in fields.items())
            body = f'<?xml version="1.0" encoding="UTF-8"?>\n<Error>\n{xml}\n</Error>\n'.encode()
            self._send(err.status, body, {"Content-Type": "application/xml"}, request_id)

        def _handle(self, method: str) -> None:
            request_id = uuid.uuid4().hex[:24].upper()
            body = self._read_body()
            try:
                self._dispatch(method, body, request_id)
            except OSSRequestError as err:
                self._send_error(err, request_id)

        # -- auth -----------------------------------------------------------------------
        def _authenticate(
            self, method: str, bucket: str, key: str, query: list[tuple[str, str]]
        ) -> None:
            headers = {k.lower(): v for k, v in self.headers.items()}
            date = headers.get("x-oss-date") or headers.get("date")
            if not date:
                raise OSSRequestError(403, "AccessDenied", "Date header is required.")
            try:
                skew = abs(time.time() - parsedate_to_datetime(date).timestamp())
            except (TypeError, ValueError):
                raise OSSRequestError(403, "AccessDenied", f"Invalid date format: {date}") from None
            if skew > MAX_CLOCK_SKEW_S:
                raise OSSRequestError(
                    403,
                    "RequestTimeTooSkewed",
                    "The difference between the request time and the current time is too large.",
                )
            auth = headers.get("authorization", "")
            if not auth.startswith("OSS ") or ":" not in auth:
                raise OSSRequestError(403, "AccessDenied", "Authorization header is invalid.")
            access_key_id, _, provided = auth[4:].rpartition(":")
            secret = server.credentials.get(access_key_id)
            if secret is None:
                raise OSSRequestError(
                    403,
                    "InvalidAccessKeyId",
                    "The OSS Access Key Id you provided does not exist in our records.",
                    OSSAccessKeyId=access_key_id,
                )
            string_to_sign = v1_string_to_sign(method, headers, bucket, key, query)
            expected = v1_signature(secret, string_to_sign)
            if not hmac.compare_digest(expected, provided):
                raise OSSRequestError(
                    403,
                    "SignatureDoesNotMatch",
                    "The request signature we calculated does not match the signature you provided. "
                    "Check your key and signing method.",
                    OSSAccessKeyId=access_key_id,
                    SignatureProvided=provided,
                    StringToSign=string_to_sign,
                )

        # -- operations -----------------------------------------------------------------
        def _dispatch(self, method: str, body: bytes, request_id: str) -> None:
            parts = urlsplit(self.path)
            query = parse_qsl(parts.query, keep_blank_values=True)
            params = dict(query)
            path = unquote(parts.path)
            bucket, _, key = path.lstrip("/").partition("/")
            with server.lock:
                server.requests.append((method, self.path))
            self._authenticate(method, bucket, key, query)
            if bucket not in server.buckets:
                raise OSSRequestError(
                    404, "NoSuchBucket", "The specified bucket does not exist.", BucketName=bucket
                )
            objects = server.buckets[bucket]
            if key:
                if method == "PUT":
                    return self._put_object(objects, key, body, request_id)
                if method in ("GET", "HEAD"):
                    return self._get_object(objects, key, request_id)
                if method == "DELETE":
                    with server.lock:
                        objects.pop(key, None)
                    return self._send(204, request_id=request_id)
            else:
                if method == "POST" and "delete" in params:
                    return self._delete_multiple(objects, body, params, request_id)
                if method == "GET":
                    return self._list(bucket, objects, params, request_id)
            raise OSSRequestError(
                405, "MethodNotAllowed", f"{method} {path} is not supported here."
            )

        def _put_object(self, objects: dict, key: str, body: bytes, request_id: str) -> None:
            md5 = self.headers.get("Content-MD5")
            if md5 and md5 != base64.b64encode(hashlib.md5(body).digest()).decode():
                raise OSSRequestError(
                    400, "InvalidDigest", "The Content-MD5 you specified is not valid."
                )
            obj = _Object(body, self.headers.get("Content-Type", "application/octet-stream"))
            with server.lock:
                objects[key] = obj
            self._send(
                200,
                headers={
                    "ETag": f'"{obj.etag}"',
                    "x-oss-hash-crc64ecma": str(obj.crc),
                    "Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode(),
                },
                request_id=request_id,
            )

        def _get_object(self, objects: dict, key: str, request_id: str) -> None:
            with server.lock:
                obj = objects.get(key)
            if obj is None:
                raise OSSRequestError(
                    404, "NoSuchKey", "The specified key does not exist.", Key=key
                )
            self._send(
                200,
                obj.data,
                {
                    "Content-Type": obj.content_type,
                    "ETag": f'"{obj.etag}"',
                    "Last-Modified": formatdate(obj.mtime, usegmt=True),
                    "x-oss-object-type": "Normal",
                    "x-oss-hash-crc64ecma": str(obj.crc),
                    "x-oss-storage-class": "Standard",
                },
                request_id,
            )

        def _delete_multiple(
            self, objects: dict, body: bytes, params: dict, request_id: str
        ) -> None:
            md5 = self.headers.get("Content-MD5")
            if not md5:
                raise OSSRequestError(
                    400, "MissingArgument", "Content-MD5 is required for DeleteMultipleObjects."
                )
            if md5 != base64.b64encode(hashlib.md5(body).digest()).decode():
                raise OSSRequestError(
                    400, "InvalidDigest", "The Content-MD5 you specified is not valid."
                )
            try:
                root = ElementTree.fromstring(body)
            except ElementTree.ParseError:
                raise OSSRequestError(
                    400, "MalformedXML", "The XML you provided was not well-formed."
                ) from None
            keys = [node.text or "" for node in root.findall("Object/Key")]
            if root.tag != "Delete" or not keys or len(keys) > MAX_DELETE_KEYS:
                raise OSSRequestError(
                    400, "MalformedXML", f"Delete must name 1..{MAX_DELETE_KEYS} objects."
                )
            quiet = (root.findtext("Quiet") or "false").strip().lower() == "true"
            url = params.get("encoding-type") == "url"
            with server.lock:
                for k in keys:
                    objects.pop(k, None)
            out = ['<?xml version="1.0" encoding="UTF-8"?>\n<DeleteResult>']
            if url:
                out.append("<EncodingType>url</EncodingType>")
            if not quiet:
                for k in keys:
                    out.append(
                        f"<Deleted><Key>{escape(quote(k, safe='') if url else k)}</Key></Deleted>"
                    )
            out.append("</DeleteResult>")
            self._send(200, "".join(out).encode(), {"Content-Type": "application/xml"}, request_id)

        def _list(self, bucket: str, objects: dict, params: dict, request_id: str) -> None:
            v2 = params.get("list-type") == "2"
            prefix = params.get("prefix", "")
            try:
                max_keys = int(params.get("max-keys") or 100)
            except ValueError:
                raise OSSRequestError(
                    400, "InvalidArgument", "max-keys must be an integer."
                ) from None
            if not 1 <= max_keys <= 1000:
                raise OSSRequestError(
                    400, "InvalidArgument", "max-keys must be between 1 and 1000."
                )
            after = (
                params.get("continuation-token") or params.get("start-after", "")
                if v2
                else params.get("marker", "")
            )
            url = params.get("encoding-type") == "url"
            enc = (lambda s: escape(quote(s, safe=""))) if url else escape
            with server.lock:
                names = sorted(k for k in objects if k.startswith(prefix) and k > after)
                page = [(k, objects[k]) for k in names[:max_keys]]
            truncated = len(names) > max_keys
            out = [
                '<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult>',
                f"<Name>{escape(bucket)}</Name><Prefix>{enc(prefix)}</Prefix>",
                f"<MaxKeys>{max_keys}</MaxKeys><Delimiter></Delimiter>",
                f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>",
            ]
            if url:
                out.append("<EncodingType>url</EncodingType>")
            if v2:
                out.append(f"<KeyCount>{len(page)}</KeyCount>")
                if truncated:
                    out.append(f"<NextContinuationToken>{enc(page[-1][0])}</NextContinuationToken>")
            else:
                out.append(f"<Marker>{enc(after)}</Marker>")
                if truncated:
                    out.append(f"<NextMarker>{enc(page[-1][0])}</NextMarker>")
            for k, obj in page:
                modified = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(obj.mtime))
                out.append(
                    f"<Contents><Key>{enc(k)}</Key><LastModified>{modified}</LastModified>"
                    f'<ETag>"{obj.etag}"</ETag><Type>Normal</Type><Size>{len(obj.data)}</Size>'
                    f"<StorageClass>Standard</StorageClass></Contents>"
                )
            out.append("</ListBucketResult>")
            self._send(200, "".join(out).encode(), {"Content-Type": "application/xml"}, request_id)

    return Handler


OSS_TEST_CREDENTIALS = {"LTAItidegatetest": "tidegate-oss-secret"}


@pytest.fixture(scope="session")
def oss_server():
    """A running loopback OSS with bucket "tidegate" and ``OSS_TEST_CREDENTIALS``."""
    srv = OSSServer(OSS_TEST_CREDENTIALS).start()
    yield srv
    srv.stop()
