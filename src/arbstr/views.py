"""Read-only views of the running gateway for the non-proxy routes: models, cost estimates,
providers, health and rate limits. They read the routing tables and `ProviderHealth`; they
never enter the request pipeline."""

from __future__ import annotations

import time
from typing import Any

from arbstr.pipeline.admit import decode_chat, plan_route
from arbstr.pipeline.context import RequestContext, RequestMeta, Shared

__all__ = ["Views"]


class Views:
    """One per process, beside the gateway (`app.state.views`)."""

    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        self.started_at = time.time()
        self.refresh()

    def refresh(self) -> None:
        """What the settings say (again, after a reload)."""
        settings = self.shared.settings
        # what each provider is configured to serve (/health: usable while one is not cooling)
        health_models: dict[str, tuple[str, ...]] = {}
        for p in settings.providers:
            chained = {
                e.model
                for chain in settings.config.chains
                for e in chain.entries
                if e.provider == p.name
            }
            health_models[p.name] = tuple(sorted(set(p.models) | chained)) if p.models else ()
        self._health_models = health_models

    def models(self) -> list[tuple[str, str]]:
        return self.shared.router.models()

    def estimate(self, body: bytes, policy: str | None) -> dict[str, Any]:
        """What a chat body would cost at the provider routing picks first (no upstream call)."""
        ctx = RequestContext.start(body, RequestMeta("estimate", time.monotonic(), policy), "chat")
        decode_chat(self.shared, ctx)
        plan_route(self.shared, ctx)
        plan = ctx.plan
        assert plan is not None
        best = plan.candidates[0]
        return {
            "model": ctx.model,
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
            for p in self.shared.settings.providers
        ]

    def health_report(self) -> dict[str, Any]:
        return self.shared.health.report(self._health_models)

    def ratelimits(self) -> list[dict[str, object]]:
        return self.shared.health.ratelimits()
