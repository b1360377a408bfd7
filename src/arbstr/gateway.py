"""The framework-free pipeline: parse a view, plan a route, run attempts, answer, record."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec

from arbstr.attempts import AttemptResult, Health, LoopFailed, Send, T, run_attempts
from arbstr.config import Settings
from arbstr.errors import ArbstrError, BadRequest, InvalidJson
from arbstr.recording.record import AttemptRow, RecordSink, RequestRecord
from arbstr.reliability.retry import RetryHeader
from arbstr.routing import RoutePlan, Router
from arbstr.routing.cost import (
    actual_cost,
    actual_embedding_cost,
    format_sats,
    provider_reported_cost,
    savings,
)
from arbstr.routing.resolve import Candidate
from arbstr.schemas.chat import ChatView, EmbeddingsView, last_user_text, prompt_chars
from arbstr.schemas.usage import Usage, read_usage
from arbstr.secrets import Scrubber
from arbstr.streaming import start_stream
from arbstr.upstream.body import rewrite_body
from arbstr.upstream.client import Upstream, body_headers

__all__ = ["Gateway", "GatewayResponse", "RequestMeta"]

log = logging.getLogger(__name__)

Header = tuple[bytes, bytes]
_JSON: Header = (b"content-type", b"application/json")
_chat_view = msgspec.json.Decoder(ChatView)
_embed_view = msgspec.json.Decoder(EmbeddingsView)


class MalformedUpstream(httpx.HTTPError):
    """The upstream answered 200 with a body that is not a JSON object."""


@dataclass(slots=True)
class RequestMeta:
    """What the HTTP layer learned before the gateway takes over."""

    request_id: str
    started: float  # time.monotonic() at arrival
    policy_header: str | None = None
    key_id: str | None = None
    wall: float = field(default_factory=time.time)


@dataclass(slots=True)
class GatewayResponse:
    """Status, raw ASGI headers, and either a body or a byte stream."""

    status: int
    headers: list[Header]
    body: bytes = b""
    stream: AsyncIterator[bytes] | None = None


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


class Gateway:
    """One per process: owns routing tables and health state, shares the pooled client."""

    def __init__(
        self, settings: Settings, upstream: Upstream, sink: RecordSink, health: Health
    ) -> None:
        self.settings = settings
        self.upstream = upstream
        self.sink = sink
        self.health = health
        self.router = Router(settings)
        self.started_at = time.time()
        self.ready_checks: dict[str, Callable[[], Awaitable[bool]]] = {}
        server = settings.config.server
        self.max_body_bytes = server.max_body_bytes
        self.request_timeout_s = server.request_timeout_s
        self.connect_timeout_s = server.connect_timeout_s
        self.idle_timeout_s = settings.config.reliability.stream_idle_timeout_s
        self.max_stream_s = settings.config.reliability.max_stream_s
        self.max_sse_event_bytes = settings.config.limits.max_sse_event_bytes
        self.body_timeout_s = settings.config.limits.body_timeout_s
        # what each provider is configured to serve (/health: usable while one is not cooling)
        self._health_models: dict[str, tuple[str, ...]] = {}
        for p in settings.providers:
            chained = {
                e.model
                for chain in settings.config.chains
                for e in chain.entries
                if e.provider == p.name
            }
            self._health_models[p.name] = tuple(sorted(set(p.models) | chained)) if p.models else ()
        self.scrubber = Scrubber([*(p.api_key for p in settings.providers), settings.admin_token])
        self._base_headers: dict[str, list[Header]] = {}
        for p in settings.providers:
            base: list[Header] = [_JSON, (b"accept-encoding", b"identity")]
            if p.api_key is not None:
                base.append((b"authorization", f"Bearer {p.api_key.reveal()}".encode()))
            self._base_headers[p.name] = base

    # ---- chat ---------------------------------------------------------------------------
    async def chat(self, body: bytes, meta: RequestMeta) -> GatewayResponse:
        """Answer one chat completion request; never raises."""
        record = RequestRecord(id=meta.request_id, timestamp=meta.wall, model=None)
        try:
            view = self._decode_chat(body)
            record.model = view.model
            record.streaming = view.stream
            assert view.model is not None
            plan = self.router.plan(
                view.model,
                policy_header=meta.policy_header,
                last_user_text=last_user_text(view),
                prompt_chars=prompt_chars(view),
                max_tokens=view.max_completion_tokens or view.max_tokens,
                latency=self._latency(),
            )
        except ArbstrError as exc:
            return self._fail(exc, meta, record)
        record.chain, record.policy = plan.chain, plan.policy
        if view.stream:
            return await start_stream(self, body, view, plan, meta, record)
        bodies: dict[str, bytes] = {}

        async def send(cand: Candidate, timeout_s: float) -> tuple[httpx.Response, bytes]:
            payload = self._body_for(body, bodies, cand, view.model, stream=False)
            response = await self.upstream.post(
                cand.provider.url + "/chat/completions",
                payload,
                self._headers(cand, meta),
                timeout_s,
            )
            content = await Upstream.read(response, cand.provider.max_response_bytes)
            if response.status_code == 200 and not content.startswith(b"{"):
                raise MalformedUpstream("upstream sent a body that is not a JSON object")
            return response, content

        result = await self.attempt(plan, send, meta, record)
        if isinstance(result, GatewayResponse):
            return result
        return self._finish_json(result, plan, meta, record, chat=True)

    # ---- embeddings ---------------------------------------------------------------------
    async def embeddings(self, body: bytes, meta: RequestMeta) -> GatewayResponse:
        """Answer one embeddings request, priced on input tokens only; never raises."""
        record = RequestRecord(
            id=meta.request_id, timestamp=meta.wall, model=None, endpoint="embeddings"
        )
        try:
            view = self._decode(_embed_view, body)
            if view.model is None:
                raise BadRequest("missing required field 'model'", param="model")
            if view.input is None:
                raise BadRequest("missing required field 'input'", param="input")
            record.model = view.model
            chars = _input_chars(view.input)
            plan = self.router.plan(
                view.model,
                policy_header=meta.policy_header,
                last_user_text="",
                prompt_chars=chars,
                max_tokens=0,
                latency=self._latency(),
            )
        except ArbstrError as exc:
            return self._fail(exc, meta, record)
        record.chain, record.policy = plan.chain, plan.policy
        bodies: dict[str, bytes] = {}

        async def send(cand: Candidate, timeout_s: float) -> tuple[httpx.Response, bytes]:
            payload = self._body_for(body, bodies, cand, view.model, stream=False)
            response = await self.upstream.post(
                cand.provider.url + "/embeddings", payload, self._headers(cand, meta), timeout_s
            )
            return response, await Upstream.read(response, cand.provider.max_response_bytes)

        result = await self.attempt(plan, send, meta, record)
        if isinstance(result, GatewayResponse):
            return result
        return self._finish_json(result, plan, meta, record, chat=False)

    # ---- shared pieces ------------------------------------------------------------------
    def _latency(self) -> dict[str, float] | None:
        """Observed latencies, only built when a strategy ranks by them."""
        return self.health.latency_map() if self.router.needs_latency else None

    async def attempt(
        self, plan: RoutePlan, send: Send[T], meta: RequestMeta, record: RequestRecord
    ) -> AttemptResult[T] | GatewayResponse:
        """Run the attempt loop under the request's deadline; exhaustion becomes an answer."""
        try:
            return await run_attempts(
                plan.candidates,
                send,
                self.health,
                meta.started + self.request_timeout_s,
                self.request_timeout_s,
            )
        except LoopFailed as failed:
            record.attempts = failed.rows
            return self._fail(failed.error, meta, record, failed.retries, failed.rows)

    def _decode_chat(self, body: bytes) -> ChatView:
        view: ChatView = self._decode(_chat_view, body)
        if view.model is None:
            raise BadRequest("missing required field 'model'", param="model")
        if view.messages is None:
            raise BadRequest("missing required field 'messages'", param="messages")
        return view

    @staticmethod
    def _decode(decoder: msgspec.json.Decoder[Any], body: bytes) -> Any:
        try:
            return decoder.decode(body)
        except msgspec.ValidationError as exc:
            text = str(exc)
            param = text.rsplit("`$.", 1)[-1].rstrip("`") if "`$." in text else None
            if param is None and text.startswith("Expected `object`"):
                raise InvalidJson("request body must be a JSON object") from None
            raise BadRequest(f"invalid request body: {text}", param=param) from None
        except msgspec.DecodeError as exc:
            raise InvalidJson(f"request body is not valid JSON: {exc}") from None
        except RecursionError:  # nesting deeper than the decoder will follow
            raise InvalidJson("request body nests JSON too deeply") from None

    def _body_for(
        self, body: bytes, cache: dict[str, bytes], cand: Candidate, model: str | None, stream: bool
    ) -> bytes:
        upstream = cand.upstream_model
        payload = cache.get(upstream)
        if payload is None:
            payload = rewrite_body(
                body, model=None if upstream == model else upstream, include_usage=stream
            )
            cache[upstream] = payload
        return payload

    def _headers(self, cand: Candidate, meta: RequestMeta) -> list[Header]:
        """The provider's own key, never the client's `Authorization`; the request id as
        `Idempotency-Key` so every retry of one request carries the same one."""
        return [
            *self._base_headers[cand.provider.name],
            (b"idempotency-key", meta.request_id.encode()),
        ]

    def _finish_json(
        self,
        result: AttemptResult[bytes],
        plan: RoutePlan,
        meta: RequestMeta,
        record: RequestRecord,
        *,
        chat: bool,
    ) -> GatewayResponse:
        response = result.response
        content = result.extra
        cand = result.candidate
        provider = cand.provider
        elapsed = time.monotonic() - meta.started
        headers = self._common_headers(meta, result.retries, len(_calls(result.attempts)))
        headers.extend(body_headers(response))
        headers.append((b"x-arbstr-provider", provider.name.encode()))
        record.provider, record.upstream_model = provider.name, cand.upstream_model
        record.status = response.status_code
        record.success = result.success
        record.attempts = result.attempts
        if result.success:
            usage = read_usage(content)
            if usage is not None:
                self._fill_usage(record, usage)
                self.health.record_tokens(provider.name, cand.upstream_model, usage.total_tokens)
                cost = (actual_cost if chat else actual_embedding_cost)(provider, usage)
                record.cost_sats = cost
                record.provider_cost_sats = provider_reported_cost(usage)
                if cost is not None:
                    headers.append((b"x-arbstr-cost-sats", format_sats(cost).encode()))
                    record.savings_sats = savings(cost, plan.candidates, usage, chat=chat)
        else:  # the error path: an upstream may echo our key back
            content = self.scrubber.scrub(content)
            record.error_code = "upstream_client_error"
            record.error_message = content[:500].decode("utf-8", "replace")
        overhead = max(0.0, elapsed - result.upstream_s)
        record.latency_ms, record.overhead_ms = _ms(elapsed), _ms(overhead)
        headers.append((b"x-arbstr-latency-ms", str(round(elapsed * 1000)).encode()))
        headers.append((b"x-arbstr-overhead-ms", f"{overhead * 1000:.3f}".encode()))
        self.sink.submit(record)
        return GatewayResponse(response.status_code, headers, content)

    @staticmethod
    def _fill_usage(record: RequestRecord, usage: Usage) -> None:
        record.input_tokens = usage.prompt_tokens
        record.output_tokens = usage.completion_tokens
        details = usage.prompt_tokens_details
        record.cached_tokens = details.cached_tokens if details is not None else None
        out_details = usage.completion_tokens_details
        record.reasoning_tokens = out_details.reasoning_tokens if out_details is not None else None

    def _common_headers(
        self, meta: RequestMeta, retries: RetryHeader | None, attempts: int
    ) -> list[Header]:
        headers: list[Header] = [(b"x-arbstr-request-id", meta.request_id.encode())]
        if retries is not None:
            value = retries.header()
            if value:
                headers.append((b"x-arbstr-retries", value.encode()))
        headers.append((b"x-arbstr-attempts", str(attempts).encode()))
        return headers

    def _fail(
        self,
        exc: ArbstrError,
        meta: RequestMeta,
        record: RequestRecord,
        retries: RetryHeader | None = None,
        rows: list[AttemptRow] | None = None,
    ) -> GatewayResponse:
        elapsed = time.monotonic() - meta.started
        headers = self._common_headers(meta, retries, len(_calls(rows or [])))
        headers.insert(0, _JSON)
        headers.append((b"x-arbstr-latency-ms", str(round(elapsed * 1000)).encode()))
        if exc.retry_after is not None:
            headers.append((b"retry-after", str(max(1, round(exc.retry_after))).encode()))
        record.status, record.success = exc.status, False
        record.error_code, record.error_message = exc.code, exc.message
        record.latency_ms = _ms(elapsed)
        self.sink.submit(record)
        return GatewayResponse(exc.status, headers, exc.body())

    def record_rejected(self, meta: RequestMeta, endpoint: str, exc: ArbstrError) -> None:
        """Record a request refused before its body was read (e.g. 413)."""
        record = RequestRecord(
            id=meta.request_id, timestamp=meta.wall, model=None, endpoint=endpoint
        )
        record.status, record.error_code, record.error_message = exc.status, exc.code, exc.message
        record.latency_ms = _ms(time.monotonic() - meta.started)
        self.sink.submit(record)

    # ---- read-only views for the other routes -------------------------------------------
    def models(self) -> list[tuple[str, str]]:
        return self.router.models()

    def estimate(self, body: bytes, policy: str | None) -> dict[str, Any]:
        view = self._decode_chat(body)
        assert view.model is not None
        plan = self.router.plan(
            view.model,
            policy_header=policy,
            last_user_text=last_user_text(view),
            prompt_chars=prompt_chars(view),
            max_tokens=view.max_completion_tokens or view.max_tokens,
            latency=self._latency(),
        )
        best = plan.candidates[0]
        return {
            "model": view.model,
            "provider": best.provider.name,
            "upstream_model": best.upstream_model,
            "policy": plan.policy,
            "estimated_input_tokens": plan.in_est,
            "estimated_output_tokens": plan.out_est,
            "estimated_cost_sats": round(plan.expected_cost(best), 6),
        }

    def describe_providers(self) -> list[dict[str, Any]]:
        return [
            {
                "name": p.name,
                "url": p.url,
                "models": list(p.models),
                "input_rate": p.input_rate,
                "output_rate": p.output_rate,
                "cached_input_rate": p.cached_input_rate,
                "base_fee": p.base_fee,
                "key_source": p.key_source,
                "api_key": p.api_key.masked() if p.api_key is not None else None,
            }
            for p in self.settings.providers
        ]

    def health_report(self) -> dict[str, Any]:
        return self.health.report(self._health_models)

    async def ready(self) -> tuple[bool, dict[str, Any]]:
        """Ready when every store answers."""
        results = {name: await check() for name, check in self.ready_checks.items()}
        return all(results.values()), {"checks": results}


def _calls(rows: list[AttemptRow]) -> list[AttemptRow]:
    return [r for r in rows if r.skipped is None]


def _input_chars(value: object) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        total = 0
        for item in value:
            if isinstance(item, str):
                total += len(item)
            elif isinstance(item, int):
                total += 4
            elif isinstance(item, list):
                total += 4 * len(item)
        return total
    return 0
