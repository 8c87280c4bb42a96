"""Payout files for finance: CSV for everyone, a PayPal Payouts batch, SEPA credit transfers."""

from __future__ import annotations

import csv
import io
import json
from datetime import date

from core import money

from .models import PayoutBatch, PayoutLine, PayoutPolicy


class ExportError(ValueError):
    pass


def _lines(batch: PayoutBatch, kind: str | None = None):
    lines = batch.lines.filter(status=PayoutLine.Status.PENDING).select_related("promoter").order_by("id")
    return [line for line in lines if kind is None or line.method.get("kind") == kind]


def reference(line: PayoutLine) -> str:
    return f"AFF-{line.batch_id}-{line.pk}"


CSV_COLUMNS = [
    "batch", "line", "reference", "promoter", "name", "email", "amount", "currency", "method", "paypal_email",
    "account_holder", "iban", "bic", "status",
]


def batch_csv(batch: PayoutBatch) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for line in batch.lines.select_related("promoter").order_by("id"):
        method = line.method
        writer.writerow([
            batch.pk, line.pk, reference(line), line.promoter_id, line.promoter.name, line.promoter.email,
            money.format_minor(line.amount_minor, line.currency), line.currency, method.get("kind", "manual"),
            method.get("paypal_email", ""), method.get("account_holder", ""), method.get("iban", ""),
            method.get("bic", ""), line.status,
        ])
    return out.getvalue()


def paypal_payouts(batch: PayoutBatch) -> str:
    """The request body of PayPal's Payouts API (POST /v1/payments/payouts) for the batch's
    PayPal lines: one item per line, its reference as ``sender_item_id``."""
    items = [
        {
            "recipient_type": "EMAIL",
            "receiver": line.method["paypal_email"],
            "amount": {"value": money.format_minor(line.amount_minor, line.currency), "currency": line.currency},
            "note": f"Commissions, batch {batch.pk}",
            "sender_item_id": reference(line),
        }
        for line in _lines(batch, "paypal")
    ]
    body = {
        "sender_batch_header": {
            "sender_batch_id": f"AFF-{batch.pk}",
            "email_subject": "You have a payout",
            "email_message": "Your commissions have been paid.",
        },
        "items": items,
    }
    return json.dumps(body, indent=2)


def sepa_credit_transfer(batch: PayoutBatch, *, execution_date: date | None = None) -> bytes:
    """SEPA pain.001.001.03 for the batch's bank lines (EUR only), validated against the XSD."""
    from sepaxml import SepaTransfer

    if batch.currency != "EUR":
        raise ExportError("SEPA credit transfers are in EUR only.")
    lines = _lines(batch, "bank")
    if not lines:
        raise ExportError("The batch has no bank transfer lines.")
    policy = PayoutPolicy.objects.filter(program_id=lines[0].promoter.program_id).first()
    if policy is None or not policy.payer_iban or not policy.payer_name:
        raise ExportError("Set the payer's name and IBAN in the program's payout policy first.")
    config = {"name": policy.payer_name, "IBAN": policy.payer_iban, "batch": True, "currency": "EUR"}
    if policy.payer_bic:
        config["BIC"] = policy.payer_bic
    transfer = SepaTransfer(config, clean=True)
    for line in lines:
        payment = {
            "name": line.method.get("account_holder") or line.promoter.name,
            "IBAN": line.method["iban"],
            "amount": line.amount_minor,  # sepaxml takes cents
            "execution_date": execution_date or date.today(),
            "description": f"Commissions {reference(line)}",
            "endtoend_id": reference(line),
        }
        if line.method.get("bic"):
            payment["BIC"] = line.method["bic"]
        transfer.add_payment(payment)
    return transfer.export(validate=True)
