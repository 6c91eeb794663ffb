"""The routes of webhooks and the alerts they deliver."""

from __future__ import annotations

from starlette.routing import BaseRoute

routes: list[BaseRoute] = []
