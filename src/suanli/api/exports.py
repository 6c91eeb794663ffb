"""The routes of exports: usage events and ledger transfers, streamed as CSV or JSON Lines."""

from __future__ import annotations

from starlette.routing import BaseRoute

routes: list[BaseRoute] = []
