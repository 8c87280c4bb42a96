"""Every write of the tracking layer: merchants, programs, links, clicks.

Conversion events live in ``affiliate.events``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from . import money
from .auth import digest, new_api_key
from .errors import ServiceValidationError
from .models import Click, ConversionEvent, Merchant, Program, ReferralLink, Visitor
from .validation import MAX_TIER_LEVELS, FieldProblem, destination_host, normalize_host, parse_rate

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


def merchant_by_postback_token(token: str) -> Merchant | None:
    return Merchant.objects.filter(postback_token_hash=digest(token)).first()


# --- Programs -------------------------------------------------------------------------

RATE_FIELDS = ("first_click_share", "last_click_share", "first_purchase_rate", "repeat_purchase_rate")
PROGRAM_FIELDS = (
    "name", "currency", "attribution_model", *RATE_FIELDS, "lookback_days", "registration_bounty",
    "tier_rates", "compress_inactive", "duplicate_click_seconds", "hold_days",
)


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
        elif not creating and currency != program.currency and ConversionEvent.objects.filter(program=program).exists():
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
    Merchant.objects.select_for_update().get(pk=merchant.pk)
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


# --- Referral links -------------------------------------------------------------------

CODE_ALPHABET = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def _new_code(length: int = 8) -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(length))


def link_create(*, merchant: Merchant, promoter, destination_url: str, channel: str = "") -> ReferralLink:
    problems: dict[str, list[str]] = {}
    try:
        _, host = destination_host(destination_url)
        if not merchant.allows_host(host):
            problems["destination_url"] = [
                f"The host {host} is not one of the merchant's domains ({', '.join(merchant.domains)})."
            ]
    except FieldProblem as exc:
        problems["destination_url"] = [str(exc)]
    if promoter is None or promoter.merchant_id != merchant.pk:
        problems["promoter"] = ["No promoter with this id."]
    channel = (channel or "").strip() if isinstance(channel, str) else None
    if channel is None or len(channel) > 100:
        problems["channel"] = ["The channel is free text of at most 100 characters."]
    if problems:
        raise ServiceValidationError(problems)
    for _ in range(5):
        try:
            with transaction.atomic():
                return ReferralLink.objects.create(
                    merchant=merchant,
                    program_id=promoter.program_id,
                    promoter=promoter,
                    code=_new_code(),
                    destination_url=destination_url,
                    channel=channel,
                )
        except IntegrityError:  # a code collision: draw again
            continue
    raise RuntimeError("Could not draw a unique link code.")


# --- Clicks (the tracking redirect) ---------------------------------------------------


def hash_ip(ip: str) -> str:
    if not ip:
        return ""
    try:
        ip = str(ipaddress.ip_address(ip.strip()))
    except ValueError:
        return ""
    return hashlib.sha256(f"{settings.IP_HASH_SALT}|{ip}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class LinkTarget:
    """What the redirect needs of a link, small enough to cache."""

    id: int
    merchant_id: int
    program_id: int
    promoter_id: int
    destination_url: str
    duplicate_click_seconds: int


def click_record(
    *,
    target: LinkTarget,
    visitor_id: uuid.UUID | None,
    ip: str = "",
    user_agent: str = "",
    referrer: str = "",
    subs: dict[str, str] | None = None,
    at=None,
) -> Click:
    """Store one click; create the visitor when the browser brought no valid id.
    ``at`` backdates the click (the traffic simulator); the redirect leaves it unset."""
    now = at or timezone.now()
    subs = subs or {}
    new_visitor = visitor_id is None
    if new_visitor:
        visitor_id = uuid.uuid4()
    click = Click(
        link_id=target.id,
        merchant_id=target.merchant_id,
        program_id=target.program_id,
        promoter_id=target.promoter_id,
        visitor_id=visitor_id,
        created_at=now,
        user_agent=(user_agent or "")[:512],
        referrer=(referrer or "")[:1024],
        ip_hash=hash_ip(ip),
        **{f"sub{i}": (subs.get(f"sub{i}") or "")[:255] for i in range(1, 6)},
    )
    with transaction.atomic():
        if new_visitor:
            Visitor.objects.create(id=visitor_id, first_seen_at=now)
        else:
            # The cookie may come from another installation or a wiped database.
            Visitor.objects.bulk_create([Visitor(id=visitor_id, first_seen_at=now)], ignore_conflicts=True)
            if target.duplicate_click_seconds:
                since = now - timezone.timedelta(seconds=target.duplicate_click_seconds)
                if Click.objects.filter(visitor_id=visitor_id, link_id=target.id, created_at__gte=since).exists():
                    click.is_duplicate = True
                    click.flag_reason = f"repeat click within {target.duplicate_click_seconds}s"
        click.save(force_insert=True)
    return click


def link_target(code: str) -> LinkTarget | None:
    row = (
        ReferralLink.objects.filter(code=code)
        .values_list("id", "merchant_id", "program_id", "promoter_id", "destination_url", "program__duplicate_click_seconds")
        .first()
    )
    return LinkTarget(*row) if row else None


