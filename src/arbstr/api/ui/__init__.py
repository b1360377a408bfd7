"""The dashboard at `/ui` (DESIGN §8): server-rendered pages, our own stylesheet, SVG charts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from arbstr.api.ui.manage import MANAGE_ROUTES
from arbstr.api.ui.pages import UI_ROUTES
from arbstr.api.ui.playground import PLAYGROUND_ROUTES
from arbstr.api.ui.session import Sessions

__all__ = ["Sessions", "ui_handlers", "ui_templates"]

HERE = Path(__file__).parent


def ui_templates() -> TemplateConfig[JinjaTemplateEngine]:
    return TemplateConfig(directory=HERE / "templates", engine=JinjaTemplateEngine)


def ui_handlers() -> list[Any]:
    static = create_static_files_router(
        path="/ui/static", directories=[HERE / "static"], include_in_schema=False
    )
    return [*UI_ROUTES, *MANAGE_ROUTES, *PLAYGROUND_ROUTES, static]
