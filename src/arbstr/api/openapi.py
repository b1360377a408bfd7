"""The OpenAPI schema at `/schema`: Litestar's generator, plus what it cannot see by itself.

Query parameters are validated by our own parsers (our 400 messages name the parameter), so
they are documented through an `Operation` subclass rather than handler signatures. The two
proxy routes are dispatched before the router (ADR 0008), so their paths are added to the
generated schema once the app is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import msgspec
from litestar import Litestar
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, YamlRenderPlugin
from litestar.openapi.spec import (
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Parameter,
    PathItem,
    RequestBody,
    Schema,
)

from arbstr import __version__
from arbstr.errors import ErrorEnvelope

__all__ = ["document_proxy_routes", "openapi_config", "query_operation"]


def openapi_config() -> OpenAPIConfig:
    """JSON at `/schema` (and `/schema/openapi.json`), YAML at `/schema/openapi.yaml`.

    Every bundled UI (Swagger, Redoc, Scalar, RapiDoc, Elements) loads its script from a CDN,
    and arbstr runs on machines without one: the schema is served as data only.
    """
    return OpenAPIConfig(
        title="arbstr",
        version=__version__,
        description="OpenAI-compatible LLM gateway: cheapest healthy provider, retries and "
        "fallback, the true cost of every request.",
        path="/schema",
        render_plugins=[JsonRenderPlugin(path="/"), YamlRenderPlugin()],
        create_examples=False,
    )


_QUERY: dict[str, tuple[str, str]] = {
    # name: (type, description)
    "range": ("string", "last_1h | last_24h | last_7d | last_30d (default last_7d)"),
    "since": ("string", "ISO 8601 start; wins over range"),
    "until": ("string", "ISO 8601 end (default now)"),
    "model": ("string", "only this requested model"),
    "provider": ("string", "only this provider"),
    "group_by": ("string", "model | provider | key | project"),
    "bucket": ("string", "minute | hour | day (minute: at most 2 days; default range 24 h)"),
    "page": ("integer", "page number, from 1"),
    "per_page": ("integer", "rows per page (default 20, at most 100)"),
    "success": ("boolean", "true | false | 1 | 0"),
    "streaming": ("boolean", "true | false | 1 | 0"),
    "sort": ("string", "timestamp | cost_sats | latency_ms"),
    "order": ("string", "asc | desc"),
    "key_id": ("string", "only this virtual key's requests"),
    "project_id": ("string", "only this project's (a virtual key: always its own)"),
    "active": ("boolean", "only active (true) or revoked (false) keys"),
    "action": ("string", "audit action, e.g. key.revoke"),
    "actor": ("string", "admin | cli | key:<id> | anonymous"),
    "outcome": ("string", "success | denied | error"),
    "target": ("string", "the project or key id changed"),
}
_TYPES = {"string": OpenAPIType.STRING, "integer": OpenAPIType.INTEGER}
_TYPES["boolean"] = OpenAPIType.BOOLEAN


def query_operation(*names: str) -> type[Operation]:
    """An `Operation` that documents these query parameters (they are not validated by
    Litestar: our parsers answer a bad value with a 400 naming it)."""
    params = [
        Parameter(
            name=name,
            param_in="query",
            required=False,
            schema=Schema(type=_TYPES[_QUERY[name][0]]),
            description=_QUERY[name][1],
        )
        for name in names
    ]

    @dataclass
    class _Documented(Operation):
        def __post_init__(self) -> None:
            self.parameters = [*(self.parameters or []), *params]

    return _Documented


# ---- the proxy routes: documented shapes (the gateway forwards any other field untouched) ----
class ChatMessage(msgspec.Struct):
    role: str
    content: str | list[dict[str, Any]] | None = None


class StreamOptions(msgspec.Struct):
    include_usage: bool | None = None


class ChatCompletionRequest(msgspec.Struct):
    """The fields routing reads; tools, response_format, n, ... pass through to the upstream."""

    model: str
    messages: list[ChatMessage]
    stream: bool = False
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    stream_options: StreamOptions | None = None


class Usage(msgspec.Struct):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Choice(msgspec.Struct):
    index: int
    message: dict[str, Any]
    finish_reason: str | None


class ChatCompletion(msgspec.Struct):
    """The upstream's answer, byte for byte."""

    id: str
    object: str
    created: int
    model: str
    choices: list[Choice]
    usage: Usage | None = None


class EmbeddingsRequest(msgspec.Struct):
    model: str
    input: str | list[str | int | list[int]]  # text, texts, or token arrays


class Embedding(msgspec.Struct):
    index: int
    embedding: list[float]
    object: str = "embedding"


class EmbeddingsResponse(msgspec.Struct):
    data: list[Embedding]
    model: str
    usage: Usage | None = None
    object: str = "list"


_HEADERS = (
    "x-arbstr-request-id, x-arbstr-provider, x-arbstr-cost-sats (JSON answers), "
    "x-arbstr-latency-ms, x-arbstr-overhead-ms, x-arbstr-attempts, x-arbstr-retries, "
    "x-arbstr-streaming (streams)"
)
_STREAM = (
    "text/event-stream: the upstream's events and its `data: [DONE]` untouched, then "
    '`data: {"arbstr": {"cost_sats", "latency_ms", "provider", "request_id"}}` and a final '
    "`data: [DONE]` (SDKs stop at the first one)."
)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _operation(op_id: str, summary: str, request: str, answer: str, stream: bool) -> Operation:
    content = {"application/json": OpenAPIMediaType(schema=cast("Any", _ref(answer)))}
    if stream:
        content["text/event-stream"] = OpenAPIMediaType(
            schema=Schema(type=OpenAPIType.STRING, description=_STREAM)
        )
    error = {"application/json": OpenAPIMediaType(schema=cast("Any", _ref("ErrorEnvelope")))}
    responses = {
        "200": OpenAPIResponse(
            description=f"The upstream's answer. Headers: {_HEADERS}", content=content
        )
    }
    for status, why in (
        ("400", "invalid_json, invalid_request, model_not_found, model_not_allowed"),
        ("413", "payload_too_large"),
        ("429", "all_providers_rate_limited (with retry-after)"),
        ("502", "all_providers_failed"),
        ("503", "all_circuits_open"),
        ("504", "upstream_timeout"),
    ):
        responses[status] = OpenAPIResponse(description=why, content=error)
    return Operation(
        operation_id=op_id,
        summary=summary,
        tags=["proxy"],
        request_body=RequestBody(
            required=True,
            content={"application/json": OpenAPIMediaType(schema=cast("Any", _ref(request)))},
        ),
        responses=responses,  # type: ignore[arg-type]
    )


def document_proxy_routes(app: Litestar) -> None:
    """Add the two raw-ASGI proxy routes, with their bodies, to the app's generated schema.

    Call it last: registering another HTTP route later would rebuild the schema without them.
    """
    _, defs = msgspec.json.schema_components(
        [
            ChatCompletionRequest,
            ChatCompletion,
            EmbeddingsRequest,
            EmbeddingsResponse,
            ErrorEnvelope,
        ],
        ref_template="#/components/schemas/{name}",
    )
    spec = app.openapi_schema
    if spec.components.schemas is None:  # pragma: no cover (Litestar always sets a dict)
        spec.components.schemas = {}
    spec.components.schemas.update(cast("Any", defs))
    paths = spec.paths if spec.paths is not None else {}
    paths["/v1/chat/completions"] = PathItem(
        post=_operation(
            "chatCompletions",
            "Proxy a chat completion to the cheapest healthy provider (JSON or a stream)",
            "ChatCompletionRequest",
            "ChatCompletion",
            stream=True,
        )
    )
    paths["/v1/embeddings"] = PathItem(
        post=_operation(
            "embeddings",
            "Proxy an embeddings request, priced on input tokens",
            "EmbeddingsRequest",
            "EmbeddingsResponse",
            stream=False,
        )
    )
    spec.paths = paths
