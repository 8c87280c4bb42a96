"""A merchant's webhook URL must not reach into the platform's own network: an endpoint on a
private, loopback, link-local or reserved address is refused when it is saved, and an attempt
to a name that resolves to one is not sent (WEBHOOK_ALLOW_PRIVATE_HOSTS off, as in production)."""

from __future__ import annotations

import socket

import pytest
from django.utils import timezone

from core.errors import ServiceValidationError
from payouts import webhooks
from payouts.models import WebhookDelivery, WebhookEndpoint

REFUSED = ["Must be a public address, not a private, loopback or link-local one."]


@pytest.fixture
def production(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_HOSTS = False
    settings.DEBUG = False
    return settings


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hooks",
        "http://127.0.0.1:8000/hooks",  # plain http to this machine: allowed as http, refused as private
        "https://localhost/hooks",
        "https://billing.localhost/hooks",
        "https://10.0.0.7/hooks",
        "https://172.16.5.4/hooks",
        "https://192.168.1.20/hooks",
        "https://169.254.169.254/latest/meta-data/",  # a cloud's metadata service
        "https://100.64.0.1/hooks",  # shared address space
        "https://0.0.0.0/hooks",
        "https://[::1]/hooks",
        "https://[fd00::5]/hooks",
        "https://[fe80::1]/hooks",
    ],
)
def test_an_endpoint_on_a_private_address_is_refused_and_nothing_written(production, merchant, url):
    with pytest.raises(ServiceValidationError) as caught:
        webhooks.webhook_endpoint_create(merchant=merchant, url=url, events=["commission.created"])
    assert caught.value.fields == {"url": REFUSED}
    assert WebhookEndpoint.objects.count() == 0


def test_a_public_address_or_name_is_accepted(production, merchant):
    by_address, _ = webhooks.webhook_endpoint_create(merchant=merchant, url="https://93.184.216.34/hooks", events=["commission.created"])
    by_name, _ = webhooks.webhook_endpoint_create(merchant=merchant, url="https://crm.example.com/hooks", events=["payout.paid"])
    assert sorted(WebhookEndpoint.objects.values_list("url", flat=True)) == [
        "https://93.184.216.34/hooks",
        "https://crm.example.com/hooks",
    ]
    assert (by_address.url, by_name.url) == ("https://93.184.216.34/hooks", "https://crm.example.com/hooks")


def test_a_moving_address_is_updated_away_from_too(production, merchant):
    endpoint, _ = webhooks.webhook_endpoint_create(merchant=merchant, url="https://crm.example.com/hooks", events=["payout.paid"])
    with pytest.raises(ServiceValidationError) as caught:
        webhooks.webhook_endpoint_update(endpoint=endpoint, url="https://10.1.1.1/hooks")
    assert caught.value.fields == {"url": REFUSED}
    endpoint.refresh_from_db()
    assert endpoint.url == "https://crm.example.com/hooks"


def resolving_to(monkeypatch, address: str, family=socket.AF_INET):
    asked = []

    def getaddrinfo(host, port, *args, **kwargs):
        asked.append(host)
        return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, 443))]

    monkeypatch.setattr(webhooks.socket, "getaddrinfo", getaddrinfo)
    return asked


def test_private_address_names_what_a_name_resolves_to(production, monkeypatch):
    asked = resolving_to(monkeypatch, "10.0.0.5")
    assert webhooks.private_address("https://crm.example.com/hooks") == "10.0.0.5"
    assert asked == ["crm.example.com"]
    resolving_to(monkeypatch, "fe80::1%eth0", socket.AF_INET6)
    assert webhooks.private_address("https://crm.example.com/hooks") == "fe80::1"
    resolving_to(monkeypatch, "93.184.216.34")
    assert webhooks.private_address("https://crm.example.com/hooks") == ""
    assert webhooks.private_address("https://[2606:2800:220:1:248:1893:25c8:1946]/x") == ""
    assert webhooks.private_address("https://192.168.0.1/x") == "192.168.0.1"


def test_an_attempt_to_a_name_that_now_resolves_privately_is_not_sent(production, monkeypatch, merchant):
    endpoint, _ = webhooks.webhook_endpoint_create(merchant=merchant, url="https://crm.example.com/hooks", events=["payout.paid"])
    delivery = WebhookDelivery.objects.create(
        endpoint=endpoint, event_type="payout.paid", event_id="payout.paid:1", payload={"id": "payout.paid:1"}, next_attempt_at=timezone.now()
    )
    resolving_to(monkeypatch, "169.254.169.254")
    sent = []
    monkeypatch.setattr(webhooks.requests, "post", lambda *a, **k: sent.append(a) or pytest.fail("a request was sent"))

    webhooks.deliver(delivery.pk)

    delivery.refresh_from_db()
    assert sent == []
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, None)
    assert delivery.last_error == "Not sent: the host resolves to 169.254.169.254, not a public address."
    assert [(e["attempt"], e["status_code"], e["error"]) for e in delivery.log] == [
        (1, None, "Not sent: the host resolves to 169.254.169.254, not a public address.")
    ]
