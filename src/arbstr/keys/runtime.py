"""`KeyService`: virtual keys in a running process. It loads the mirror at startup, polls the
store's version (`auth.refresh_interval_s`) and applies what changed, seeds the meters from the
request log, and flushes aggregated auth-failure audit rows. The request path only reads it."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import hmac
import logging
import sys
import time
from collections.abc import Callable

from arbstr.keys.accounts import Accounts
from arbstr.keys.crypto import Cipher, CipherError
from arbstr.keys.meters import Meters
from arbstr.keys.model import PERIODS, period_start
from arbstr.keys.ring import KeyRing
from arbstr.keys.throttle import AuthThrottle
from arbstr.secrets import ApiKey
from arbstr.stores.keys.base import Changes, KeyStore, ProviderKeyRow
from arbstr.stores.requestlog.base import RequestLog

__all__ = ["KeyService"]

log = logging.getLogger(__name__)
LOAD_PAGE = 10_000  # keys read at a time at startup


def _release_freed_memory() -> None:
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)


class KeyService:
    def __init__(
        self,
        store: KeyStore,
        request_log: RequestLog,
        admin_token: ApiKey | None,
        *,
        shared_usage: bool,
        failure_burst: int = 20,
        failure_window_s: float = 60.0,
        refresh_interval_s: float = 0.25,
        cipher: Cipher | None = None,
    ) -> None:
        self.store = store
        self.request_log = request_log
        self._admin = admin_token.reveal().encode() if admin_token is not None else None
        self.cipher = cipher
        self.ring = KeyRing(self._decrypt)
        self.meters = Meters(store if shared_usage else None, {})
        self.accounts = Accounts(self.ring, self.meters)
        self.throttle = AuthThrottle(failure_burst, failure_window_s)
        self.refresh_interval_s = refresh_interval_s
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.on_secret: Callable[[ApiKey], None] | None = None  # the error-path scrubber

    def _decrypt(self, row: ProviderKeyRow) -> ApiKey | None:
        if self.cipher is None:
            log.error("project %s has a stored key for %s but no encryption key is set",
                      row.project_id, row.provider)  # fmt: skip
            return None
        try:
            key = ApiKey(self.cipher.decrypt(row.ciphertext, row.project_id, row.provider))
        except CipherError as exc:
            log.error("%s", exc)
            return None
        if self.on_secret is not None:
            self.on_secret(key)
        return key

    def is_admin(self, token: str) -> bool:
        """Constant-time comparison with the admin token."""
        return self._admin is not None and hmac.compare_digest(token.encode(), self._admin)

    async def start(self) -> None:
        started = time.perf_counter()
        changes = await self.store.changes_since(0, with_keys=False)
        if changes.provider_keys and self.cipher is None:
            from arbstr.keys.crypto import ENV

            raise CipherError(f"the key store holds provider keys but {ENV} is not set")
        self.ring.apply(changes)  # projects and the version first: a key changed while the
        after = ""  # pages load is newer than that version, and the next poll applies it again
        collecting = gc.isenabled()
        gc.disable()  # 100,000 keys: the collector would walk the growing mirror again and again
        try:
            while True:
                page = await self.store.keys_page(after, LOAD_PAGE)
                if not page:
                    break
                self.ring.apply(Changes(version=0, projects=[], keys=page, provider_keys=[]))
                after = page[-1].id
                del page
        finally:
            if collecting:
                gc.enable()
        del changes
        gc.collect()
        _release_freed_memory()  # the full load's rows: gone, but glibc keeps the pages
        await self._seed()
        await self.meters.start()
        self._task = asyncio.create_task(self._poll())
        log.info(
            "virtual keys: %d keys, %d projects loaded in %.0f ms",
            len(self.ring.keys),
            len(self.ring.projects),
            (time.perf_counter() - started) * 1000,
        )

    async def _seed(self) -> None:
        """What each budget's period and each lifetime request count already hold."""
        now = time.time()
        seeds = self.meters.seeds
        starts = {p: period_start(p, now) for p in PERIODS}
        for scope, rows in (("key", self.ring.keys), ("project", self.ring.projects)):
            lifetime = await self.request_log.spend(scope, 0.0)
            periods = {starts[r.budget_period] for r in rows.values() if r.budget_sats}
            spent = {0.0: lifetime}
            for p in periods - {0.0}:
                spent[p] = await self.request_log.spend(scope, p)
            if not any(spent.values()):
                continue  # nothing recorded yet for any of them
            for row_id, row in rows.items():
                if row.budget_sats is not None:
                    window = starts[row.budget_period]
                    charged = spent[window].get(row_id)
                    if charged:
                        seeds[(f"{scope}:{row_id}:sats", window)] = charged[0]
                if scope == "key" and getattr(row, "max_requests", None) is not None:
                    used = lifetime.get(row_id)
                    if used:
                        seeds[(f"key:{row_id}:requests", 0.0)] = float(used[1])

    async def refresh(self) -> bool:
        """Apply what changed since the version held; True when something did."""
        async with self._lock:
            version = await self.store.version()
            if version == self.ring.version:
                return False
            self.ring.apply(await self.store.changes_since(self.ring.version))
            return True

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_interval_s)
            try:
                await self.refresh()
                events = self.throttle.take_events()
                if events:
                    await self.store.add_audit(events)
            except Exception as exc:
                log.warning("key refresh failed: %s", type(exc).__name__)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.meters.aclose()
        with contextlib.suppress(Exception):
            await self.store.add_audit(self.throttle.take_events(everything=True))
