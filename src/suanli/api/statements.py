"""The routes of statements and operator settlements."""

from __future__ import annotations

from starlette.routing import BaseRoute

routes: list[BaseRoute] = []
