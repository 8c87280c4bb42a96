"""Every write on promoters and the sponsor tree."""

from __future__ import annotations

import hashlib
import secrets
from decimal import Decimal

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models.functions import Upper
from django.utils import timezone

from core.errors import ServiceValidationError
from core.validation import FieldProblem, parse_rate
from merchants.models import Merchant, Program
from merchants.services import merchant_lock

from .models import Promoter, PromoterApiToken, PromoterRateHistory

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
PROMOTER_FIELDS = (
    "email", "name", "program", "sponsor", "customer_id", "coupon_code", "commission_rate", "payout_plan", "status",
)


def _referral_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(8))


def _optional_string(value, field: str, max_length: int, problems: dict) -> str | None:
    if value is None:
        return None
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        problems.setdefault(field, []).append("Must be a string.")
        return None
    value = str(value).strip()
    if len(value) > max_length:
        problems.setdefault(field, []).append(f"At most {max_length} characters.")
        return None
    return value or None


def _would_loop(promoter: Promoter, sponsor: Promoter) -> bool:
    """True when ``sponsor`` is ``promoter`` or sits below it in the tree."""
    seen = set()
    current_id = sponsor.pk
    while current_id is not None and current_id not in seen:
        if current_id == promoter.pk:
            return True
        seen.add(current_id)
        current_id = Promoter.objects.filter(pk=current_id).values_list("sponsor_id", flat=True).first()
    return current_id is not None  # a pre-existing loop above: refuse as well


def _apply(promoter: Promoter, merchant: Merchant, fields: dict) -> None:
    problems: dict[str, list[str]] = {}
    unknown = set(fields) - set(PROMOTER_FIELDS)
    if unknown:
        raise ServiceValidationError({f: ["Unknown field."] for f in sorted(unknown)})
    if "email" in fields:
        email = fields["email"]
        try:
            if not isinstance(email, str):
                raise DjangoValidationError("bad")
            email = email.strip()
            validate_email(email)
            promoter.email = email
        except DjangoValidationError:
            problems["email"] = ["Give a valid email address."]
    if "name" in fields:
        name = fields["name"].strip() if isinstance(fields["name"], str) else ""
        if not name or len(name) > 200:
            problems["name"] = ["A name of 1 to 200 characters is required."]
        promoter.name = name
    if "program" in fields:
        program = fields["program"]
        if not isinstance(program, Program) or program.merchant_id != merchant.pk:
            problems["program"] = ["No program with this id."]
        else:
            promoter.program = program
    if "sponsor" in fields:
        sponsor = fields["sponsor"]
        if sponsor is None:
            promoter.sponsor = None
        elif not isinstance(sponsor, Promoter) or sponsor.merchant_id != merchant.pk:
            problems["sponsor"] = ["No promoter with this id."]
        elif promoter.pk is not None and _would_loop(promoter, sponsor):
            problems["sponsor"] = ["This sponsor would make a loop in the sponsor tree."]
        else:
            promoter.sponsor = sponsor
    if "customer_id" in fields:
        promoter.customer_id = _optional_string(fields["customer_id"], "customer_id", 255, problems)
    if "coupon_code" in fields:
        coupon = _optional_string(fields["coupon_code"], "coupon_code", 64, problems)
        if coupon is not None:
            taken = (
                Promoter.objects.annotate(key=Upper("coupon_code"))
                .filter(merchant=merchant, key=coupon.upper())
                .exclude(pk=promoter.pk)
                .exists()
            )
            if taken:
                problems["coupon_code"] = ["Another promoter of this merchant has this coupon code."]
        promoter.coupon_code = coupon
    if "commission_rate" in fields:
        raw = fields["commission_rate"]
        if raw is None:
            promoter.commission_rate = None
        else:
            try:
                promoter.commission_rate = parse_rate(raw, what="commission rate")
            except FieldProblem as exc:
                problems["commission_rate"] = [str(exc)]
    if "payout_plan" in fields:
        if fields["payout_plan"] not in Promoter.PayoutPlan.values:
            problems["payout_plan"] = [f"Choose one of: {', '.join(Promoter.PayoutPlan.values)}."]
        else:
            promoter.payout_plan = fields["payout_plan"]
    if "status" in fields:
        # Pending (awaiting approval) comes only from joining through an invite link.
        if fields["status"] not in (Promoter.Status.ACTIVE, Promoter.Status.INACTIVE):
            problems["status"] = ["Choose active or inactive."]
        else:
            promoter.status = fields["status"]
    if "email" not in problems and "program" not in problems and promoter.program_id and promoter.email:
        clash = Promoter.objects.filter(program_id=promoter.program_id, email__iexact=promoter.email).exclude(pk=promoter.pk)
        if clash.exists():
            problems["email"] = ["A promoter with this email is already in the program."]
    if problems:
        raise ServiceValidationError(problems)


def promoter_create(*, merchant: Merchant, **fields) -> Promoter:
    missing = [f for f in ("email", "name", "program") if fields.get(f) in (None, "")]
    if missing:
        raise ServiceValidationError({f: ["This field is required."] for f in missing})
    for _ in range(5):
        promoter = Promoter(merchant=merchant)
        try:
            with transaction.atomic():
                merchant_lock(merchant.pk)
                _apply(promoter, merchant, fields)
                promoter.referral_code = _referral_code()
                promoter.save()
                return promoter
        except IntegrityError as exc:
            _raise_for_integrity(exc)
    raise RuntimeError("Could not draw a unique referral code.")


def promoter_update(*, promoter: Promoter, **fields) -> Promoter:
    try:
        with transaction.atomic():
            merchant_lock(promoter.merchant_id)
            promoter = Promoter.objects.select_for_update().get(pk=promoter.pk)
            old_rate = promoter.commission_rate
            _apply(promoter, promoter.merchant, fields)
            promoter.save()
            promoter_rate_history_record(promoter=promoter, old_rate=old_rate)
            return promoter
    except IntegrityError as exc:
        _raise_for_integrity(exc)
        raise


def promoter_rate_history_record(*, promoter: Promoter, old_rate, at=None) -> PromoterRateHistory | None:
    """Record that ``promoter.commission_rate`` (already saved) replaced ``old_rate`` at
    ``at`` (now): nothing when the rate did not change. The first change also records the
    rate the promoter had until then, from its creation. Every path that changes a
    promoter's rate calls this (``promoter_update`` does), inside its transaction."""
    new_rate = promoter.commission_rate
    if old_rate == new_rate:  # None == None; 0.1 == 0.100000
        return None
    at = at or timezone.now()
    has_history = PromoterRateHistory.objects.filter(promoter=promoter).exists()
    rows = _rate_history_rows(promoter.pk, promoter.created_at, old_rate, new_rate, at, has_history=has_history)
    for row in rows:
        row.save()
    return rows[-1]


def _rate_history_rows(promoter_id: int, created_at, old_rate, new_rate, at, *, has_history: bool) -> list[PromoterRateHistory]:
    """The rule of a promoter's rate history, for one change and for many: the new rate from
    ``at``; before it, on the first change only, the rate it had until then, from its
    creation (or from ``at``, were it created later)."""
    rows = []
    if not has_history:
        rows.append(PromoterRateHistory(promoter_id=promoter_id, rate=old_rate, effective_from=min(created_at, at)))
    rows.append(PromoterRateHistory(promoter_id=promoter_id, rate=new_rate, effective_from=at))
    return rows


def promoter_rates_set(*, merchant: Merchant, expected: dict[int, Decimal | None], rates: dict[int, Decimal | None], at=None) -> list[int]:
    """Set many promoters' own rates at once (a daily rates job changes thousands): each
    promoter in ``rates`` whose own rate is still ``expected[id]`` and who is still active
    gets ``rates[id]``, with its rate history, as ``promoter_update`` would write them one by
    one; the others are left alone. Returns the ids changed. Under the merchant's lock, in
    the caller's transaction (or one of its own)."""
    at = at or timezone.now()
    with transaction.atomic():
        merchant_lock(merchant.pk)
        current = {
            pk: (rate, created_at)
            for pk, rate, created_at in Promoter.objects.select_for_update()
            .filter(merchant=merchant, pk__in=list(rates), status=Promoter.Status.ACTIVE)
            .order_by("id")
            .values_list("id", "commission_rate", "created_at")
        }
        changed = [pk for pk in sorted(rates) if pk in current and current[pk][0] == expected.get(pk) and rates[pk] != expected.get(pk)]
        if not changed:
            return []
        promoters = [Promoter(pk=pk, commission_rate=rates[pk], updated_at=at) for pk in changed]
        Promoter.objects.bulk_update(promoters, ["commission_rate", "updated_at"], batch_size=2000)
        with_history = set(PromoterRateHistory.objects.filter(promoter_id__in=changed).values_list("promoter_id", flat=True).distinct())
        history = [
            row
            for pk in changed
            for row in _rate_history_rows(pk, current[pk][1], current[pk][0], rates[pk], at, has_history=pk in with_history)
        ]
        PromoterRateHistory.objects.bulk_create(history, batch_size=5000)
    return changed


def promoter_plans_set(*, merchant: Merchant, plans: dict[int, str], at=None) -> dict[int, str]:
    """Set many promoters' payout plans at once (a segment model's first training changes
    thousands): each of the merchant's promoters in ``plans`` whose plan differs gets its
    new one; returns the plans they had, by id, for those changed. Under the merchant's
    lock, in the caller's transaction (or one of its own)."""
    unknown = set(plans.values()) - set(Promoter.PayoutPlan.values)
    if unknown:
        raise ServiceValidationError({"payout_plan": [f"Choose one of: {', '.join(Promoter.PayoutPlan.values)}."]})
    at = at or timezone.now()
    with transaction.atomic():
        merchant_lock(merchant.pk)
        old = {
            pk: plan
            for pk, plan in Promoter.objects.select_for_update().filter(merchant=merchant, pk__in=list(plans))
            .order_by("id").values_list("id", "payout_plan")
            if plan != plans[pk]
        }
        Promoter.objects.bulk_update(
            [Promoter(pk=pk, payout_plan=plans[pk], updated_at=at) for pk in sorted(old)], ["payout_plan", "updated_at"], batch_size=2000
        )
    return old


def _raise_for_integrity(exc: IntegrityError) -> None:
    text = str(exc).lower()
    if "coupon" in text:
        raise ServiceValidationError({"coupon_code": ["Another promoter of this merchant has this coupon code."]}) from exc
    if "email" in text:
        raise ServiceValidationError({"email": ["A promoter with this email is already in the program."]}) from exc
    if "referral_code" in text:
        return  # draw another code
    raise exc


# --- Logins: joining through an invite link, approval, claiming by a verified email -----


def promoter_join(*, sponsor: Promoter, user, name: str) -> Promoter:
    """A person with a login joins the sponsor's program, placed under the sponsor. The program
    decides whether they start active or wait for the merchant's approval (pending: earning
    nothing). The promoter's email is the login's."""
    if sponsor.status != Promoter.Status.ACTIVE:
        raise ServiceValidationError({"sponsor": ["This invite link is no longer valid."]})
    program = sponsor.program
    already = ServiceValidationError({"program": ["You are already a promoter in this program."]})
    try:
        with transaction.atomic():
            if Promoter.objects.filter(user=user, program=program).exists():
                raise already
            promoter = promoter_create(merchant=sponsor.merchant, program=program, sponsor=sponsor, email=user.email, name=name)
            # In the same transaction: nobody sees the new promoter active before it is pending.
            promoter.status = Promoter.Status.PENDING if program.join_requires_approval else Promoter.Status.ACTIVE
            promoter.user = user
            promoter.save(update_fields=["status", "user", "updated_at"])
            return promoter
    except IntegrityError as exc:  # the same login joining twice at once: the second loses
        if "promoter_one_login_per_program" in str(exc) or "user_id" in str(exc).lower():
            raise already from exc
        raise


def _decide_pending(promoter: Promoter, *, status: str, verb: str) -> Promoter:
    promoter = Promoter.objects.select_for_update().get(pk=promoter.pk)
    if promoter.status != Promoter.Status.PENDING:
        raise ServiceValidationError({"status": [f"Only a promoter awaiting approval can be {verb}."]})
    promoter.status = status
    promoter.save(update_fields=["status", "updated_at"])
    return promoter


@transaction.atomic
def promoter_approve(*, promoter: Promoter) -> Promoter:
    """A promoter awaiting approval becomes active; they earn on events received from now on."""
    return _decide_pending(promoter, status=Promoter.Status.ACTIVE, verb="approved")


@transaction.atomic
def promoter_reject(*, promoter: Promoter) -> Promoter:
    """A promoter awaiting approval becomes inactive (refused): they keep their login and
    see their portal, and earn nothing."""
    return _decide_pending(promoter, status=Promoter.Status.INACTIVE, verb="rejected")


@transaction.atomic
def promoters_claim(*, user, email: str) -> int:
    """Give a login the promoters created for its email (by the merchant) that have none yet,
    once the email is verified; one per program, so a program where the login already has a
    promoter keeps that one. Returns how many were claimed."""
    taken = set(Promoter.objects.filter(user=user).values_list("program_id", flat=True))
    claimed = 0
    for pk, program_id in (
        Promoter.objects.select_for_update()
        .filter(user__isnull=True, email__iexact=email.strip())
        .order_by("id")
        .values_list("pk", "program_id")
    ):
        if program_id in taken:
            continue
        claimed += Promoter.objects.filter(pk=pk, user__isnull=True).update(user=user)
        taken.add(program_id)
    return claimed


@transaction.atomic
def promoter_login_set(*, promoter: Promoter, user) -> Promoter:
    """Open ``promoter``'s portal to ``user`` (an admin's or the demo's doing; people use an
    invite link or claim by their verified email)."""
    promoter = Promoter.objects.select_for_update().get(pk=promoter.pk)
    if Promoter.objects.filter(user=user, program_id=promoter.program_id).exclude(pk=promoter.pk).exists():
        raise ServiceValidationError({"user": ["This login already opens another promoter of the program."]})
    promoter.user = user
    promoter.save(update_fields=["user", "updated_at"])
    return promoter


# --- The promoter's own read-only API key ---------------------------------------------------

PROMOTER_KEY_PREFIX = "pt_live_"


def promoter_key_digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@transaction.atomic
def promoter_api_token_issue(*, promoter: Promoter) -> str:
    """A new key for the promoter's read-only API, replacing any old one; returned in clear
    this once (only its digest is kept)."""
    key = PROMOTER_KEY_PREFIX + secrets.token_urlsafe(32)
    PromoterApiToken.objects.filter(promoter=promoter).delete()
    PromoterApiToken.objects.create(promoter=promoter, key_hash=promoter_key_digest(key), prefix=key[:12])
    return key


@transaction.atomic
def promoter_api_token_revoke(*, promoter: Promoter) -> bool:
    deleted, _ = PromoterApiToken.objects.filter(promoter=promoter).delete()
    return bool(deleted)
