"""A small world for worked examples: a program with chosen terms, a sponsor tree, clicks
at chosen times, events through the real API, and the bodies read back."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.utils import timezone

from affiliate import services
from merchants.models import Program
from promoters.services import promoter_create
from tests.conftest import client_for
from tests.factories import make_merchant

# A fixed moment safely in the past, whole seconds: every time in the examples hangs off it.
T0 = (timezone.now() - timedelta(days=60)).replace(microsecond=0)


def at(days: float = 0, hours: float = 0) -> datetime:
    return T0 + timedelta(days=days, hours=hours)


class World:
    def __init__(self, capture, **terms):
        self.capture = capture
        self.merchant = make_merchant("Worked Example Shop", ["shop.example.com"])
        self.api = client_for(self.merchant)
        response = self.api.post("/api/v1/programs/", {"name": "Default", **terms}, format="json")
        assert response.status_code == 201, response.content
        self.program = Program.objects.get(pk=response.json()["id"])
        self.links = {}
        self.count = 0

    def promoter(self, name: str, sponsor=None, **fields):
        self.count += 1
        return promoter_create(
            merchant=self.merchant,
            email=f"{name.lower()}-{self.count}@example.com",
            name=name,
            program=self.program,
            sponsor=sponsor,
            **fields,
        )

    def click(self, promoter, when: datetime, visitor: uuid.UUID, **flags):
        if promoter.pk not in self.links:
            self.links[promoter.pk] = services.link_create(
                merchant=self.merchant, promoter=promoter, destination_url="https://shop.example.com/", channel=f"ch-{promoter.name}"
            )
        click = services.click_record(target=services.link_target(self.links[promoter.pk].code), visitor_id=visitor, at=when)
        if flags:
            type(click).objects.filter(pk=click.pk).update(**flags)
        return click

    def journey(self, *steps, visitor=None):
        """steps: (promoter, when) pairs on one browser; returns the last click's id."""
        visitor = visitor or uuid.uuid4()
        last = None
        for promoter, when in steps:
            last = self.click(promoter, when, visitor)
        return last.id.hex

    def send(self, **payload) -> dict:
        """POST an event, let the inline queue process it, return the body read back."""
        if "occurred_at" in payload and isinstance(payload["occurred_at"], datetime):
            payload["occurred_at"] = payload["occurred_at"].isoformat()
        with self.capture(execute=True):
            response = self.api.post("/api/v1/events/", payload, format="json")
        assert response.status_code in (200, 201), response.content
        body = self.api.get(f"/api/v1/events/{response.json()['id']}/").json()
        assert body["status"] == "processed"
        return body

    def balance(self, promoter) -> dict:
        return self.api.get(f"/api/v1/promoters/{promoter.pk}/balance/").json()


def rows(body: dict, names: dict) -> tuple[list, list]:
    """The body's attribution and commissions with promoter names instead of ids."""
    attribution = [(names[r["promoter"]], r["weight"], r["revenue"]) for r in body["attribution"]]
    commissions = [(names[r["promoter"]], r["kind"], r["level"], r["amount"], r["status"]) for r in body["commissions"]]
    return attribution, commissions
