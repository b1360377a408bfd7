"""Shim for Litestar's autodiscovery: a bare `litestar run` in the project root serves arbstr."""

from arbstr.app import app

__all__ = ["app"]
