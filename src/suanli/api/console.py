"""The web console: its static page at ``/console`` and its sessions (``/console/session``)."""

from __future__ import annotations

from starlette.routing import BaseRoute

routes: list[BaseRoute] = []
