"""One contract for every `RequestLog` backend: SQLite file, SQLite in memory, PostgreSQL."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from polyfactory.factories.msgspec_factory import MsgspecFactory

from arbstr.recording.record import AttemptRow, RequestRecord
from arbstr.stores.requestlog import PostgresRequestLog, RequestLog, SqliteRequestLog
from arbstr.stores.requestlog.base import ListQuery, StatsQuery
from tests.pg import PG_BASE, drop_schema, new_schema, require_pg

T0 = 1_700_000_000.0 - (1_700_000_000.0 % 3600)  # an hour boundary


class RecordFactory(MsgspecFactory[RequestRecord]):
    __random_seed__ = 7


def make(i: int, **kw: object) -> RequestRecord:
    rnd = random.Random(i)
    success = kw.pop("success", rnd.random() > 0.2)
    base = RecordFactory.build(
        id=f"req-{i:06d}",
        timestamp=T0 + i * 60.0,
        model=rnd.choice(["gpt-4o", "gpt-4o-mini"]),
        provider=rnd.choice(["alpha", "beta", None]),
        streaming=rnd.random() > 0.5,
        success=success,
        status=200 if success else 502,
        input_tokens=rnd.randint(1, 500),
        output_tokens=rnd.randint(1, 500),
        cost_sats=round(rnd.uniform(0, 10), 6),
        savings_sats=round(rnd.uniform(0, 1), 6),
        latency_ms=round(rnd.uniform(1, 3000), 3),
        stream_duration_ms=None,
        error_message=None if success else "all providers failed",
        attempts=[
            AttemptRow(provider="alpha", upstream_model="m", status=500, error="HTTP 500"),
            AttemptRow(provider="beta", upstream_model="m", skipped="cooldown"),
        ],
    )
    for key, value in kw.items():
        setattr(base, key, value)
    return base


@pytest.fixture(
    params=["sqlite", "sqlite-memory", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RequestLog]:
    schema = None
    s: RequestLog
    if request.param == "sqlite":
        s = SqliteRequestLog(str(tmp_path / "log.db"))
    elif request.param == "sqlite-memory":
        s = SqliteRequestLog(":memory:")
    else:
        require_pg()
        schema = new_schema()
        s = PostgresRequestLog(PG_BASE, schema)
    status = await s.status()
    assert status.pending
    await s.migrate()
    again = await s.migrate()  # idempotent
    assert again.pending == []
    assert again.current == again.latest
    yield s
    await s.aclose()
    if schema:
        await drop_schema(schema)


RECORDS = [make(i) for i in range(300)]  # 5 hours, one per minute


def raw_totals(records: list[RequestRecord], lo: float, hi: float, **f: object) -> dict[str, float]:
    rows = [
        r
        for r in records
        if lo <= r.timestamp < hi and all(getattr(r, k) == v for k, v in f.items())
    ]
    return {
        "total": len(rows),
        "success": sum(r.success for r in rows),
        "streaming": sum(r.streaming for r in rows),
        "cost": round(sum(r.cost_sats or 0 for r in rows), 6),
        "input": sum(r.input_tokens or 0 for r in rows),
        "savings": round(sum(r.savings_sats or 0 for r in rows), 6),
    }


async def test_append_get_with_attempts_and_replay_is_idempotent(store: RequestLog) -> None:
    await store.append(RECORDS[:10])
    await store.append(RECORDS[5:15])  # overlapping batch: nothing counted twice
    assert await store.count() == 15
    detail = await store.get("req-000003")
    assert detail is not None
    assert detail.id == "req-000003"
    assert detail.cost.sats == RECORDS[3].cost_sats
    assert [(a.provider, a.status, a.skipped) for a in detail.attempts] == [
        ("alpha", 500, None),
        ("beta", None, "cooldown"),
    ]
    assert await store.get("nope") is None
    stats = await store.stats(StatsQuery(since=T0, until=T0 + 86400))
    assert stats.counts.total == 15


@pytest.mark.parametrize(
    ("lo", "hi"),
    [
        (T0, T0 + 5 * 3600),
        (T0 + 1234, T0 + 3 * 3600 + 99),
        (T0 + 600, T0 + 1200),
        (T0 - 86400, T0 + 86400),
    ],
)
async def test_stats_match_raw_rows_across_rollup_and_edges(
    store: RequestLog, lo: float, hi: float
) -> None:
    await store.append(RECORDS)
    stats = await store.stats(StatsQuery(since=lo, until=hi))
    raw = raw_totals(RECORDS, lo, hi)
    assert stats.counts.total == raw["total"]
    assert stats.counts.success == raw["success"]
    assert stats.counts.error == raw["total"] - raw["success"]
    assert stats.counts.streaming == raw["streaming"]
    assert stats.costs.total_cost_sats == pytest.approx(raw["cost"], abs=1e-4)
    assert stats.costs.total_input_tokens == raw["input"]
    assert stats.savings_sats == pytest.approx(raw["savings"], abs=1e-4)
    lats = sorted(r.latency_ms for r in RECORDS if lo <= r.timestamp < hi and r.latency_ms)
    if lats:
        assert stats.performance.avg_latency_ms == pytest.approx(sum(lats) / len(lats), abs=1e-2)
        assert stats.performance.p50_latency_ms == pytest.approx(
            lats[(len(lats) + 1) // 2 - 1], abs=1e-3
        )


async def test_filters_and_grouping(store: RequestLog) -> None:
    await store.append(RECORDS)
    q = StatsQuery(since=T0, until=T0 + 86400, model="gpt-4o")
    stats = await store.stats(q)
    assert stats.counts.total == raw_totals(RECORDS, T0, T0 + 86400, model="gpt-4o")["total"]
    grouped = await store.stats(StatsQuery(since=T0, until=T0 + 86400), "provider")
    assert grouped.providers is not None
    assert set(grouped.providers) == {"alpha", "beta", "(none)"}
    assert sum(g.counts.total for g in grouped.providers.values()) == len(RECORDS)
    alpha = raw_totals(RECORDS, T0, T0 + 86400, provider="alpha")
    assert grouped.providers["alpha"].counts.total == alpha["total"]
    by_model = await store.stats(StatsQuery(since=T0, until=T0 + 86400), "model")
    assert by_model.models is not None
    assert set(by_model.models) == {"gpt-4o", "gpt-4o-mini"}
    empty = await store.stats(StatsQuery(since=T0 - 7200, until=T0 - 3600))
    assert empty.counts.total == 0
    assert empty.performance.p50_latency_ms is None


async def test_timeseries(store: RequestLog) -> None:
    await store.append(RECORDS)
    hours = await store.timeseries(StatsQuery(since=T0, until=T0 + 5 * 3600), "hour")
    assert [p.counts.total for p in hours.data] == [60] * 5
    assert hours.data[0].start.endswith("Z")
    minutes = await store.timeseries(StatsQuery(since=T0, until=T0 + 600), "minute")
    assert [p.counts.total for p in minutes.data] == [1] * 10
    days = await store.timeseries(StatsQuery(since=T0 - 86400, until=T0 + 86400), "day")
    assert sum(p.counts.total for p in days.data) == len(RECORDS)


async def test_list_paging_filters_and_sorting(store: RequestLog) -> None:
    await store.append(RECORDS)
    base = {"since": T0, "until": T0 + 86400}
    page = await store.list(ListQuery(**base, per_page=7, page=2))
    assert page.total == 300
    assert page.total_pages == 43
    assert [r.id for r in page.data] == [f"req-{i:06d}" for i in range(292, 285, -1)]
    oldest = await store.list(ListQuery(**base, order="asc", per_page=3))
    assert [r.id for r in oldest.data] == ["req-000000", "req-000001", "req-000002"]
    by_cost = await store.list(ListQuery(**base, sort="cost_sats", order="desc", per_page=5))
    costs = [r.cost.sats for r in by_cost.data]
    assert costs == sorted((r.cost_sats for r in RECORDS), reverse=True)[:5]
    by_latency = await store.list(ListQuery(**base, sort="latency_ms", order="asc", per_page=5))
    assert [r.timing.latency_ms for r in by_latency.data] == sorted(r.latency_ms for r in RECORDS)[
        :5
    ]
    failed = await store.list(ListQuery(**base, success=False, per_page=100))
    assert failed.total == sum(not r.success for r in RECORDS)
    assert all(r.error is not None and r.error.status == 502 for r in failed.data)
    streamed = await store.list(ListQuery(**base, streaming=True, provider="beta", per_page=100))
    assert streamed.total == sum(r.streaming and r.provider == "beta" for r in RECORDS)
    beyond = await store.list(ListQuery(**base, page=99))
    assert beyond.data == []
    assert beyond.total == 300


async def test_ping(store: RequestLog) -> None:
    assert await store.ping()


async def test_keyed_rollups_agree_with_the_rows(store: RequestLog) -> None:
    """Per key and per project, by key and hour or by key, model and provider: the same sums
    as the rows (the edges of a range from the rows, the hours between from a rollup)."""
    records = [
        make(i, key_id=f"k{i % 3}", project_id=f"p{i % 3 % 2}", charged_sats=1.0)
        for i in range(400)
    ]
    await store.append(records)
    lo, hi = T0 + 1800, T0 + 5 * 3600 + 900

    def raw(pred: object) -> tuple[int, float]:
        rows = [r for r in records if lo <= r.timestamp < hi and pred(r)]  # type: ignore[operator]
        return len(rows), round(sum(r.cost_sats or 0 for r in rows), 4)

    by_key = (await store.stats(StatsQuery(since=lo, until=hi), "key")).keys or {}
    by_project = (await store.stats(StatsQuery(since=lo, until=hi), "project")).projects or {}
    for k in ("k0", "k1", "k2"):
        total, cost = raw(lambda r, k=k: r.key_id == k)
        assert by_key[k].counts.total == total
        assert by_key[k].costs.total_cost_sats == pytest.approx(cost, abs=1e-3)
        one = await store.stats(StatsQuery(since=lo, until=hi, key_id=k))
        assert one.counts.total == total
        modelled = await store.stats(StatsQuery(since=lo, until=hi, key_id=k, model="gpt-4o"))
        assert modelled.counts.total == raw(lambda r, k=k: r.key_id == k and r.model == "gpt-4o")[0]
    for p in ("p0", "p1"):
        assert by_project[p].counts.total == raw(lambda r, p=p: r.project_id == p)[0]
    spent = await store.spend("key", T0)
    assert spent["k0"][1] == sum(1 for r in records if r.key_id == "k0")
