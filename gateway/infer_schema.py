"""The infer endpoint in the OpenAPI schema and /docs.

Infer is answered by ``InferEndpoint`` at the ASGI level, before FastAPI routing; the route
added here is the documentation of that endpoint (the same request and response shapes, the
binary tensor extension and every error status), never its implementation.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

from vmpool.wire import DATATYPES, HEADER_LENGTH

from .routes import ERROR_SCHEMA

Datatype = Literal[tuple(list(DATATYPES) + ["BYTES"])]  # type: ignore[valid-type]
EXPOSED_HEADERS = [
    HEADER_LENGTH,
    "x-request-id",
    "x-tidegate-path",
    "x-tidegate-cost-usd",
    "x-tidegate-workers",
    "x-tidegate-cold-starts",
    "server-timing",
]


class TensorParameters(BaseModel):
    model_config = ConfigDict(extra="allow")
    binary_data_size: int | None = Field(
        None, ge=0, description="Binary extension: this tensor's bytes follow the JSON header."
    )
    binary_data: bool | None = Field(None, description="Requested output: answer in binary.")


class RequestInput(BaseModel):
    name: str
    shape: list[int]
    datatype: Datatype
    parameters: TensorParameters | None = None
    data: Any = Field(
        None,
        description="Row-major values, flat or nested; absent when "
        "parameters.binary_data_size is given.",
    )


class RequestOutput(BaseModel):
    name: str
    parameters: TensorParameters | None = None


class InferenceRequest(BaseModel):
    id: str | None = None
    parameters: dict[str, str | int | float | bool] | None = Field(
        None,
        description="binary_data_output: true answers every output in binary. Typed as "
        "Triton types them, else a 400: priority and timeout (microseconds) unsigned "
        "integers; sequence_id an unsigned integer or a string; sequence_start, sequence_end "
        "and binary_data_output booleans. Other parameters: a string, a number or a boolean; "
        "keys starting with triton_ are reserved. timeout is acted on (VM path): a request "
        "still queued for its model past it is dropped unrun, 503 'Request timeout expired'.",
    )
    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None = None


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: Datatype
    parameters: TensorParameters | None = None
    data: list[Any] | None = None


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[ResponseOutput]


_BINARY = (
    "Binary tensor extension: the JSON header (an InferenceRequest whose binary inputs "
    f"carry parameters.binary_data_size) followed by the raw little-endian tensor bytes; "
    f"the `{HEADER_LENGTH}` header gives the JSON header's length."
)
_ERR = {"content": {"application/json": {"schema": ERROR_SCHEMA}}}
_ERRORS = {
    "400": {"description": "Malformed request, or tensors that do not fit the model", **_ERR},
    "401": {"description": "Missing or unknown API key", **_ERR},
    "403": {"description": "The tenant may not do this", **_ERR},
    "404": {"description": "Unknown model or version", **_ERR},
    "405": {"description": "Not POST", **_ERR},
    "408": {"description": "The body did not arrive in time", **_ERR},
    "413": {"description": "Body over the size limit", **_ERR},
    "422": {"description": "Idempotency-Key sent again with another request", **_ERR},
    "429": {"description": "Rate limit, quota or budget (Retry-After)", **_ERR},
    "500": {"description": "Internal error", **_ERR},
    "503": {
        "description": "No capacity now, or queued past the request's timeout (Retry-After)",
        **_ERR,
    },
    "504": {"description": "No answer within the timeout", **_ERR},
}
_OPENAPI = {
    "parameters": [
        {
            "name": HEADER_LENGTH,
            "in": "header",
            "required": False,
            "schema": {"type": "integer", "minimum": 0},
            "description": "Length of the JSON header when binary tensors follow.",
        },
        {"name": "x-request-id", "in": "header", "required": False, "schema": {"type": "string"}},
    ],
    "requestBody": {
        "content": {
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary"},
                "description": _BINARY,
            }
        }
    },
    "responses": {
        "200": {
            "description": "The outputs, as JSON or, with binary outputs, a JSON header and the "
            f"raw bytes (`{HEADER_LENGTH}` gives the header's length)",
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        },
        **_ERRORS,
    },
}


def document_infer(app: FastAPI) -> None:
    for path in ("/v2/models/{model}/infer", "/v2/models/{model}/versions/{version}/infer"):

        @app.post(
            path,
            response_model=InferenceResponse,
            openapi_extra=_OPENAPI,
            tags=["Open Inference Protocol"],
            summary="Infer",
            description="Run the model on the request's tensors (JSON or binary).",
        )
        async def infer(model: str, request: InferenceRequest, version: str | None = None):
            raise RuntimeError("served by gateway.infer_endpoint.InferEndpoint")
