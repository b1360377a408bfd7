"""Budget periods come from request timestamps (DESIGN §7): yesterday's spend of a daily budget
is not today's; a restart seeds the meters from the request log, the ledger."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from arbstr.keys.admin import Actor, KeyAdmin
from arbstr.keys.schemas import KeyCreate, ProjectCreate
from arbstr.recording.record import RequestRecord
from arbstr.stores.keys import open_key_store
from arbstr.stores.requestlog import open_request_log

from .conftest import StackFactory
from .keyed import ADMIN, PRICED


async def _seed(url: str, rows: list[tuple[float, float]]) -> tuple[str, str]:
    """A daily-budget key, and past requests of it: (timestamp, charged sats)."""
    store, log = open_key_store(url), open_request_log(url)
    await log.migrate()
    await store.migrate()
    admin = KeyAdmin(store, log, {"alpha"})
    project = await admin.create_project(ProjectCreate(name="team"), Actor("cli"))
    key = await admin.create_key(
        KeyCreate(project_id=project.id, name="k", budget_sats=10.0, budget_period="daily"),
        Actor("cli"),
    )
    records = []
    for i, (ts, charged) in enumerate(rows):
        r = RequestRecord(id=f"past-{i}", timestamp=ts, model="gpt-4o-mini", provider="alpha")
        r.key_id, r.project_id, r.charged_sats, r.cost_sats = key.id, project.id, charged, charged
        r.success, r.status = True, 200
        records.append(r)
    await log.append(records)
    await store.aclose()
    await log.aclose()
    assert key.key is not None
    return key.id, key.key


def test_a_daily_budget_spent_yesterday_is_available_today(
    tmp_path: Path, stack: StackFactory
) -> None:
    url = f"sqlite:///{tmp_path / 'arbstr.db'}"
    now = datetime.now(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    yesterday = (midnight - timedelta(hours=2)).timestamp()
    today = max(midnight.timestamp() + 1, time.time() - 60)
    key_id, key = asyncio.run(_seed(url, [(yesterday, 9.5), (today, 7.0)]))
    head = (
        f'[database]\nurl = "{url}"\n[auth]\nenabled = true\nadmin_token = "{ADMIN}"\n'
        "[reliability]\nbackoff_s = [0.0]\n"
    )
    s = stack([PRICED], head=head)
    auth = {"authorization": f"Bearer {key}"}
    own = httpx.get(s.url + "/v1/key", headers=auth).json()
    assert own["spend_sats"] == 7.0  # today's only
    assert own["budget_remaining_sats"] == 3.0
    assert own["budget_reset_at"] == (midnight + timedelta(days=1)).strftime(
        "%Y-%m-%dT%H:%M:%S.000Z"
    )
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x" * 40}],
            "max_tokens": 10}  # fmt: skip
    post = lambda: httpx.post(s.url + "/v1/chat/completions", json=body, headers=auth)  # noqa: E731
    results = [post().status_code for _ in range(3)]
    assert results == [200, 200, 402]  # 7.0 + 1.4 + 1.4 = 9.8; another 1.4 would pass 10
    refused = post().json()["error"]
    assert refused["code"] == "budget_exceeded"
    assert (midnight + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ") in refused["message"]
    assert s.sim("alpha").chat_hits == 2
    assert key_id in refused["message"]
