"""The customer's own account over HTTP: wallet, calls, usage by period, keys, budgets, forecast; and the
platform-wide usage summaries for admins. Every page of the console reads these, and nothing else."""

from __future__ import annotations

from starlette.routing import Route

routes: list[Route] = []
