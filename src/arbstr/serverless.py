"""AWS Lambda (API Gateway HTTP API, REST API, ALB) through Mangum: `arbstr.serverless:handler`.

The app is built once per Lambda container from `$ARBSTR_CONFIG`. Mangum runs the ASGI
lifespan around every invocation, so each one starts and stops the app's resources and the
recorder writes the invocation's rows before Lambda freezes the container: nothing is left in a
queue that a frozen process would never write. Point `[database] url` at PostgreSQL (a Lambda's
disk is not shared and not kept), set `migrate_on_start = false` and run `arbstr db migrate`
once. API Gateway buffers responses, so a stream reaches the client as one body of SSE events.
"""

from __future__ import annotations

from typing import Any

from mangum import Mangum

__all__ = ["handler"]

_adapter: Mangum | None = None


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda entry point."""
    global _adapter
    if _adapter is None:
        from arbstr.app import create_app
        from arbstr.config import load_settings

        app: Any = create_app(load_settings())  # Mangum's ASGI type is narrower than Litestar's
        _adapter = Mangum(app, lifespan="on")
    return _adapter(event, context)
