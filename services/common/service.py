"""One bootstrap for every service process: the same parts, built the same way, in one place.

A service's `app.py` creates a `Service`, wires its own store and use cases to the parts, and
asks `Service.app` for the FastAPI app. The shared lifespan (services/common/http.py) then
connects MongoDB and Kafka (retrying until both answer; /readyz says 503 until then), starts
the consumers and the background loops, and on shutdown stops, in this order: the loops, the
consumers (so no handler is mid-way), the service's own shutdown hooks, the MongoDB client.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter, FastAPI

from services.common.http import Hook, Runtime, create_service_app, serve
from services.common.messaging import Publisher, make_broker
from services.common.mongo import make_client, service_database
from services.common.settings import Settings, get_settings


class Service:
    """The parts of one service process: settings, Kafka broker, MongoDB client and the
    service's own database, and a publisher."""

    def __init__(self, name: str, settings: Settings) -> None:
        self.name = name
        self.settings = settings
        self.broker = make_broker(settings, name)
        self.mongo = make_client(settings, name)
        self.runtime = Runtime(name, settings, self.broker, self.mongo)
        self.db = service_database(self.mongo, settings, name)
        self.publisher = Publisher(self.broker)

    def app(
        self,
        *,
        title: str,
        description: str,
        routers: Sequence[APIRouter] = (),
        on_startup: Sequence[Hook] = (),
        background: Sequence[Hook] = (),
        on_shutdown: Sequence[Hook] = (),
    ) -> FastAPI:
        return create_service_app(
            self.runtime,
            title=title,
            description=description,
            routers=routers,
            on_startup=on_startup,
            background=background,
            on_shutdown=on_shutdown,
        )


def run(name: str) -> None:
    """`python -m services.<name>`: serve the service with the environment's settings."""
    serve(name, get_settings())
