"""The job path's four POST routes, taken at the application's door.

Every job costs one ``POST /api/v1/jobs`` (or ``/api/v1/jobconfigs/{id}/run``), and a
remote worker calls ``POST /api/v1/worker/acquire`` and ``/api/v1/worker/reports`` for
every few jobs. Through the whole ASGI stack each of these calls crossed about ten
layers before its fast path answered it (Starlette's error middleware, FastAPI's
telemetry and body-limit layers, then the request metrics, the authentication and the
body limits, most of them wrapping ``receive`` or ``send`` once more): measured under a
burst, that cost more of the API process than the fast paths' own Python.

:class:`JobyardAPI` (the FastAPI application :func:`jobyard.api.app.create_app` builds)
takes those four routes first and does for them, in one step, what the stack does:

* the latency observation for ``/metrics`` (:class:`~jobyard.api.metrics.HttpMetrics`,
  the same route templates and statuses);
* authentication (:func:`jobyard.api.auth.admit`: the same 401 and 503 answers);
* the body limit of JSON requests (:func:`jobyard.api.limits.read_within`: the same
  413, for a declared length at once, for a longer body as it arrives);
* an unexpected error's answer: the application's own ``Exception`` handler (the 500
  ``internal`` body and its log line), then the error is raised on, as Starlette's
  ``ServerErrorMiddleware`` does.

Then the fast paths answer, given the body read here
(:func:`jobyard.api.hotpath.answer_submit`, :func:`jobyard.api.worker_hotpath.answer_worker`);
whatever they are not sure of goes to FastAPI's exception handling and routing (the
part of the stack inside the middleware above, captured when the stack is built) with
the body replayed. Every other request takes the whole stack unchanged.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobyard.api.auth import admit
from jobyard.api.hotpath import SUBMIT, answer_submit, run_target
from jobyard.api.limits import json_limit, read_within
from jobyard.api.metrics import HttpMetrics
from jobyard.api.worker_hotpath import ACQUIRE, REPORTS, answer_worker
from jobyard.settings import Settings


@dataclass(frozen=True, slots=True)
class DoorRoute:
    """A route the door takes, as matched once from the request's path."""

    #: Its route template (the ``/metrics`` label of a request the door answers).
    template: str
    #: Whether it is a worker route (else a submit route).
    worker: bool = False
    #: The jobconfig of ``/api/v1/jobconfigs/{jobconfig_id}/run`` (None: any other route).
    jobconfig_id: int | None = None


_RUN_TEMPLATE = "/api/v1/jobconfigs/{jobconfig_id}/run"
_FIXED = {
    ACQUIRE: DoorRoute(ACQUIRE, worker=True),
    REPORTS: DoorRoute(REPORTS, worker=True),
    SUBMIT: DoorRoute(SUBMIT),
}


def door_route(path: str) -> DoorRoute | None:
    """The route of a ``POST`` the door takes, None for any other path."""
    route = _FIXED.get(path)
    if route is not None:
        return route
    jobconfig_id = run_target(path)
    return None if jobconfig_id is None else DoorRoute(_RUN_TEMPLATE, jobconfig_id=jobconfig_id)


class JobyardAPI(FastAPI):
    """FastAPI with the job path's door (see the module docstring)."""

    def __init__(self, *, settings: Settings, metrics: HttpMetrics, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._door_settings = settings
        self._door_metrics = metrics
        self._door: _Door | None = None
        self._routing: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            route = door_route(scope["path"])
            if route is not None:
                door = self._door or self._open_door()
                await door(scope, receive, send, route)
                return
        await super().__call__(scope, receive, send)

    def build_middleware_stack(self) -> ASGIApp:
        """FastAPI's stack, noting what sits inside the application's own middleware
        (exception handling and routing): where the door hands on."""

        def capture(app: ASGIApp) -> ASGIApp:
            self._routing = app
            return app

        added = self.user_middleware
        self.user_middleware = [*added, Middleware(capture)]
        try:
            return super().build_middleware_stack()
        finally:
            self.user_middleware = added

    def _open_door(self) -> _Door:
        if self.middleware_stack is None:
            self.middleware_stack = self.build_middleware_stack()
        if self._routing is None:  # pragma: no cover - set by build_middleware_stack
            raise RuntimeError("the middleware stack was built without the door's capture")
        self._door = _Door(self, self._routing, self._door_settings, self._door_metrics)
        return self._door


class _Door:
    """What the stack does for the door's routes, in one step (module docstring)."""

    def __init__(
        self, app: JobyardAPI, routing: ASGIApp, settings: Settings, metrics: HttpMetrics
    ) -> None:
        self.app = app
        self.routing = routing
        self.limit, self.refusal = json_limit(settings)
        self.metrics = metrics
        self.on_error = app.exception_handlers[Exception]

    async def __call__(self, scope: Scope, receive: Receive, send: Send, route: DoorRoute) -> None:
        scope["app"] = self.app  # as Starlette sets it: the routes and fast paths read it
        if self.app.root_path:
            scope["root_path"] = self.app.root_path
        start = time.perf_counter()
        status = 500
        started = False

        async def observed(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status = message["status"]
                started = True
            await send(message)

        try:
            await self._serve(scope, receive, observed, route)
        except Exception as exc:
            self._observe(scope, route.template, status, start)
            if not started:  # the application's 500 answer; the error is raised on
                response = self.on_error(Request(scope), exc)
                if inspect.isawaitable(response):
                    response = await response
                await response(scope, receive, send)
            raise
        except BaseException:
            self._observe(scope, route.template, status, start)
            raise
        self._observe(scope, route.template, status, start)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, route: DoorRoute) -> None:
        if not await admit(self.app.state.ctx, scope, receive, send):
            return
        body = await read_within(scope, receive, send, self.limit, self.refusal)
        if body is None:
            return
        if route.worker:
            await answer_worker(scope, body, receive, send, self.routing)
        else:
            await answer_submit(scope, body, route.jobconfig_id, receive, send, self.routing)

    def _observe(self, scope: Scope, template: str, status: int, start: float) -> None:
        # A request handed on to the routes is labelled by the route that answered it.
        route = getattr(scope.get("route"), "path", None)
        key = ("POST", route if isinstance(route, str) else template, status)
        self.metrics.observe(key, time.perf_counter() - start)
