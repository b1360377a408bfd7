"""Dashboard sessions: a signed cookie after an admin-token login, and CSRF tokens.

The signing key is derived from the admin token, so changing the token logs every session
out; a session carries no secret, only when it was issued and a random nonce, from which the
CSRF token of its forms is derived. The cookie is HttpOnly and SameSite=Strict (Secure when the
request came over TLS)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

import msgspec

__all__ = ["COOKIE", "LOGIN_COOKIE", "MAX_AGE_S", "Sessions"]

COOKIE = "arbstr_session"
LOGIN_COOKIE = "arbstr_login"  # the login form's own CSRF token (double submit)
MAX_AGE_S = 12 * 3600


class _Claims(msgspec.Struct):
    iat: float
    nonce: str


class Sessions:
    def __init__(self, admin_token: str | None) -> None:
        secret = (admin_token or secrets.token_urlsafe(32)).encode()
        self._key = hmac.new(secret, b"arbstr-ui-session-v1", hashlib.sha256).digest()

    def _sign(self, payload: bytes) -> str:
        return hmac.new(self._key, payload, hashlib.sha256).hexdigest()

    def issue(self, now: float | None = None) -> str:
        claims = _Claims(iat=time.time() if now is None else now, nonce=secrets.token_hex(16))
        payload = base64.urlsafe_b64encode(msgspec.json.encode(claims))
        return f"{payload.decode()}.{self._sign(payload)}"

    def nonce(self, cookie: str | None, now: float | None = None) -> str | None:
        """The session's nonce when the cookie is ours and not expired, else None."""
        if not cookie or "." not in cookie or len(cookie) > 512:
            return None
        payload, _, signature = cookie.rpartition(".")
        if not hmac.compare_digest(signature, self._sign(payload.encode())):
            return None
        try:
            claims = msgspec.json.decode(base64.urlsafe_b64decode(payload), type=_Claims)
        except (ValueError, msgspec.DecodeError):
            return None
        now = time.time() if now is None else now
        if not claims.iat <= now < claims.iat + MAX_AGE_S:
            return None
        return claims.nonce

    def csrf(self, nonce: str) -> str:
        return self._sign(f"csrf:{nonce}".encode())[:32]

    def check_csrf(self, nonce: str, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf(nonce), token or "")
