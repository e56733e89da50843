"""Every topic a service reads shows its event model in the AsyncAPI document, not an empty
payload: the document is generated from the subscriptions themselves."""

from __future__ import annotations

import importlib

import pytest
from faststream.specification import AsyncAPI

from services.common.settings import Settings

EXPECTED = {
    "intake": {"acikkapi.intake.submissions": "ApplicationSubmitted"},
    "routing": {
        "acikkapi.applications.received": "ApplicationReceived",
        "acikkapi.applications.status": "StatusChanged",
    },
    "tracking": {
        "acikkapi.applications.received": "ApplicationReceived",
        "acikkapi.applications.routed": "RoutingOutcome",
        "acikkapi.applications.responses": "ApplicationResponse",
        "acikkapi.notifications.results": "NotificationResult",
    },
    "notification": {"acikkapi.notifications.requests": "NotificationRequest"},
    "reporting": {
        "acikkapi.applications.received": "ApplicationReceived",
        "acikkapi.applications.routed": "RoutingOutcome",
        "acikkapi.applications.status": "StatusChanged",
        "acikkapi.deadlines": "DeadlineEvent",
        "acikkapi.ratings": "ApplicationRated",
    },
}


@pytest.mark.parametrize("service", sorted(EXPECTED))
def test_each_subscription_documents_its_event_model(service: str) -> None:
    app = importlib.import_module(f"services.{service}.app").build_app(Settings())
    document = AsyncAPI(app.state.runtime.broker, title=service).to_specification().to_jsonable()
    messages = document["components"]["messages"]
    schemas = document["components"]["schemas"]
    for topic, model in EXPECTED[service].items():
        payload = messages[f"{service}:{topic}:SubscribeMessage"]["payload"]
        assert payload == {"$ref": f"#/components/schemas/{model}"}, (topic, payload)
        assert schemas[model].get("properties") or schemas[model].get("discriminator"), model
