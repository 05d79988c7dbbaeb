"""ASGI middleware for every answer that is not infer's own: ``x-request-id`` and 405 ``Allow``.

Pure ASGI (no BaseHTTPMiddleware): it only looks at ``http.response.start``.
"""

from __future__ import annotations

from .infer_endpoint import new_request_id
from .protocol import header_safe_id


class RequestIdMiddleware:
    """Every answer carries ``x-request-id``: the client's own if it sent one that may travel
    as a header (``protocol.header_safe_id``), else a new id."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request_id = None
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                # as the infer endpoint: the client's id only if it may go back as a header
                # (a 20 kB one, or one with a tab or bytes past ASCII, was echoed as it came)
                safe = header_safe_id(value.decode("latin-1"))
                request_id = safe.encode() if safe else None
                break
        if request_id is None:
            request_id = new_request_id().encode()

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(k.lower() == b"x-request-id" for k, _ in headers):
                    headers.append((b"x-request-id", request_id))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_id)
