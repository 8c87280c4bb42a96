"""Every write to merchants and programs: creation, settings, keys and program terms."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from django.db import transaction

from core import money
from core.errors import ServiceValidationError
from core.validation import MAX_TIER_LEVELS, FieldProblem, normalize_host, parse_rate

from .auth import digest, new_api_key
from .models import FRAUD_DEFAULTS, Merchant, Program

# --- Merchants ------------------------------------------------------------------------


@dataclass(frozen=True)
class MerchantCredentials:
    merchant: Merchant
    api_key: str
    postback_token: str
    postback_secret: str

    def as_dict(self) -> dict:
        return {
            "merchant_id": self.merchant.pk,
            "api_key": self.api_key,
            "postback_token": self.postback_token,
            "postback_secret": self.postback_secret,
        }


def _clean_domains(domains) -> list[str]:
    if not isinstance(domains, (list, tuple)) or not domains:
        raise ServiceValidationError({"domains": ["Give at least one domain."]})
    cleaned, problems = [], []
    for raw in domains:
        try:
            host = normalize_host(raw)
        except FieldProblem as exc:
            problems.append(str(exc))
            continue
        if host not in cleaned:
            cleaned.append(host)
    if problems:
        raise ServiceValidationError({"domains": problems})
    return cleaned


@transaction.atomic
def merchant_create(*, name: str, domains: list[str]) -> MerchantCredentials:
    name = (name or "").strip()
    if not name:
        raise ServiceValidationError({"name": ["A name is required."]})
    cleaned = _clean_domains(domains)
    api_key = new_api_key()
    token = secrets.token_urlsafe(24)
    secret = secrets.token_urlsafe(32)
    merchant = Merchant.objects.create(
        name=name[:200],
        domains=cleaned,
        api_key_hash=digest(api_key),
        api_key_prefix=api_key[:12],
        postback_token_hash=digest(token),
        postback_secret=secret,
    )
    return MerchantCredentials(merchant, api_key, token, secret)


@transaction.atomic
def merchant_update(*, merchant: Merchant, **fields) -> Merchant:
    if "name" in fields:
        name = (fields["name"] or "").strip()
        if not name:
            raise ServiceValidationError({"name": ["A name is required."]})
        merchant.name = name[:200]
    if "domains" in fields:
        merchant.domains = _clean_domains(fields["domains"])
    if "require_signature" in fields:
        merchant.require_signature = bool(fields["require_signature"])
    merchant.save()
    return merchant


@transaction.atomic
def merchant_rotate_api_key(*, merchant: Merchant) -> str:
    api_key = new_api_key()
    merchant.api_key_hash = digest(api_key)
    merchant.api_key_prefix = api_key[:12]
    merchant.save(update_fields=["api_key_hash", "api_key_prefix"])
    return api_key


def merchant_lock(merchant_id: int) -> None:
    """Take the merchant's row lock until the transaction ends: the one lock that serialises a
    merchant's changes to its programs (one default), its promoters' tree, rates and plans
    (promoters, insights) and its payout batches (one builder at a time)."""
    Merchant.objects.select_for_update().filter(pk=merchant_id).first()


def merchant_by_postback_token(token: str) -> Merchant | None:
    return Merchant.objects.filter(postback_token_hash=digest(token)).first()


# --- Programs -------------------------------------------------------------------------

RATE_FIELDS = ("first_click_share", "last_click_share", "first_purchase_rate", "repeat_purchase_rate")
PROGRAM_FIELDS = (
    "name", "currency", "attribution_model", *RATE_FIELDS, "lookback_days", "registration_bounty",
    "tier_rates", "compress_inactive", "duplicate_click_seconds", "hold_days", "fraud",
)

# The fraud rules' whole-number settings and their ranges (0: off).
FRAUD_COUNTS = {
    "click_flood_max": (0, 100_000),
    "click_flood_seconds": (0, 86_400),
    "min_click_to_conversion_seconds": (0, 86_400),
    "ip_max_promoters": (0, 100_000),
}


def clean_fraud_rules(raw, *, current: dict, currency: str) -> tuple[dict, dict[str, list[str]]]:
    """A program's fraud rules after a change (``raw``: some or all of them; the others keep
    their ``current`` value), and the problems found, by ``fraud.<rule>``."""
    if not isinstance(raw, dict):
        return current, {"fraud": ["Must be an object of fraud rules: " + ", ".join(FRAUD_DEFAULTS) + "."]}
    problems: dict[str, list[str]] = {}
    rules = {**FRAUD_DEFAULTS, **current}
    for name in sorted(set(raw) - set(FRAUD_DEFAULTS)):
        problems[f"fraud.{name}"] = ["Unknown rule."]
    for name in ("bots", "self_referral_email"):
        if name in raw:
            if isinstance(raw[name], bool):
                rules[name] = raw[name]
            else:
                problems[f"fraud.{name}"] = ["Must be true or false."]
    for name, (low, high) in FRAUD_COUNTS.items():
        if name in raw:
            value = raw[name]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                problems[f"fraud.{name}"] = [f"Must be a whole number from {low} to {high} (0: off)."]
            else:
                rules[name] = value
    if "max_order_amount" in raw:
        value = raw["max_order_amount"]
        if value is None:
            rules["max_order_amount"] = None
        else:
            try:
                rules["max_order_amount"] = str(money.parse_amount(value, currency))
            except money.MoneyError as exc:
                problems["fraud.max_order_amount"] = [f"{exc} (null: off)"]
    return rules, problems


def _apply_program_fields(program: Program, fields: dict, *, creating: bool) -> None:
    problems: dict[str, list[str]] = {}

    def problem(field: str, message: str) -> None:
        problems.setdefault(field, []).append(message)

    unknown = set(fields) - set(PROGRAM_FIELDS)
    if unknown:
        raise ServiceValidationError({f: ["Unknown field."] for f in sorted(unknown)})
    if "name" in fields:
        name = (fields["name"] or "").strip() if isinstance(fields["name"], str) else ""
        if not name:
            problem("name", "A name is required.")
        program.name = name[:200]
    if "currency" in fields:
        currency = fields["currency"]
        if not money.is_currency(currency):
            problem("currency", "Give an ISO 4217 currency code such as \"USD\".")
        elif not creating and currency != program.currency and program.events.exists():
            problem("currency", "The currency cannot change once the program has events.")
        else:
            program.currency = currency
    if "attribution_model" in fields:
        if fields["attribution_model"] not in Program.Model.values:
            problem("attribution_model", f"Choose one of: {', '.join(Program.Model.values)}.")
        else:
            program.attribution_model = fields["attribution_model"]
    for field in RATE_FIELDS:
        if field in fields:
            try:
                setattr(program, field, parse_rate(fields[field], what=field.replace("_", " ")))
            except FieldProblem as exc:
                problem(field, str(exc))
    for field, low, high in (("lookback_days", 1, 3650), ("duplicate_click_seconds", 0, 86_400 * 30), ("hold_days", 0, 3650)):
        if field in fields:
            value = fields[field]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                problem(field, f"Must be a whole number from {low} to {high}.")
            else:
                setattr(program, field, value)
    if "compress_inactive" in fields:
        if not isinstance(fields["compress_inactive"], bool):
            problem("compress_inactive", "Must be true or false.")
        else:
            program.compress_inactive = fields["compress_inactive"]
    if "tier_rates" in fields:
        rates = fields["tier_rates"]
        if not isinstance(rates, (list, tuple)):
            problem("tier_rates", "Must be a list of decimal strings.")
        elif len(rates) > MAX_TIER_LEVELS:
            problem("tier_rates", f"At most {MAX_TIER_LEVELS} levels.")
        else:
            parsed = []
            for index, raw in enumerate(rates, start=1):
                try:
                    parsed.append(parse_rate(raw, what=f"level {index} rate"))
                except FieldProblem as exc:
                    problem("tier_rates", str(exc))
            program.tier_rates = [str(rate) for rate in parsed]
    if "fraud" in fields:
        rules, found = clean_fraud_rules(fields["fraud"], current=program.fraud_rules, currency=program.currency)
        problems.update(found)
        program.fraud = rules
    if "registration_bounty" in fields and "currency" not in problems:
        try:
            bounty = money.parse_amount(fields["registration_bounty"], program.currency, allow_zero=True)
            program.registration_bounty_minor = money.to_minor(bounty, program.currency)
        except money.MoneyError as exc:
            problem("registration_bounty", str(exc))
    if not problems and program.first_click_share + program.last_click_share > 1:
        problem("last_click_share", "The first and last click shares add up to more than 1.")
    if problems:
        raise ServiceValidationError(problems)


@transaction.atomic
def program_create(*, merchant: Merchant, **fields) -> Program:
    if "name" not in fields:
        raise ServiceValidationError({"name": ["A name is required."]})
    # Lock the merchant so that two first programs cannot both become the default.
    merchant_lock(merchant.pk)
    program = Program(merchant=merchant)
    _apply_program_fields(program, fields, creating=True)
    program.is_default = not Program.objects.filter(merchant=merchant).exists()
    program.save()
    return program


@transaction.atomic
def program_update(*, program: Program, **fields) -> Program:
    program = Program.objects.select_for_update().get(pk=program.pk)
    _apply_program_fields(program, fields, creating=False)
    program.save()
    return program


def default_program(merchant_id: int) -> Program | None:
    return Program.objects.filter(merchant_id=merchant_id, is_default=True).first()
