"""Where a promoter's money goes: PayPal, a bank account (IBAN/BIC checked by ``schwifty``)
or by hand. One current method per promoter; every change is logged, the IBAN masked (as the
API and the pages show it; only the SEPA export carries it whole)."""

from __future__ import annotations

from datetime import timedelta

from django.core import signing
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from schwifty import BIC, IBAN
from schwifty.exceptions import SchwiftyException

from core.errors import ServiceValidationError
from promoters.models import Promoter

from .models import PayoutMethod, PayoutMethodChange

FIELDS = ("paypal_email", "account_holder", "iban", "bic")
USED_BY = {
    PayoutMethod.Kind.PAYPAL: ("paypal_email",),
    PayoutMethod.Kind.BANK: ("account_holder", "iban", "bic"),
    PayoutMethod.Kind.MANUAL: (),
}
# As typed: an IBAN or BIC may come with spaces; stored compact (at most 34 and 11).
MAX_LENGTHS = {"paypal_email": 254, "account_holder": 70, "iban": 50, "bic": 20}


def iban_clean(value: str) -> IBAN:
    """The IBAN in compact upper case; ``ValueError`` with a sentence when it is not one."""
    try:
        return IBAN(value)
    except SchwiftyException as exc:
        raise ValueError(f"Not a valid IBAN ({_sentence(exc)}).") from None


def bic_clean(value: str) -> BIC:
    try:
        return BIC(value)
    except SchwiftyException as exc:
        raise ValueError(f"Not a valid BIC ({_sentence(exc)}).") from None


def _sentence(exc: Exception) -> str:
    text = str(exc).strip().rstrip(".")
    return text[:1].lower() + text[1:] if text else "unrecognised"


def bank_account_clean(iban: str, bic: str = "") -> tuple[str, str, dict[str, list[str]]]:
    """(compact IBAN, compact BIC or "", problems by field). A BIC, when given, must be of the
    IBAN's country."""
    problems: dict[str, list[str]] = {}
    iban_obj = bic_obj = None
    if iban:
        try:
            iban_obj = iban_clean(iban)
        except ValueError as exc:
            problems["iban"] = [str(exc)]
    if bic:
        try:
            bic_obj = bic_clean(bic)
        except ValueError as exc:
            problems["bic"] = [str(exc)]
    if iban_obj is not None and bic_obj is not None and bic_obj.country_code != iban_obj.country_code:
        problems["bic"] = [
            f"The BIC is of country {bic_obj.country_code}, the IBAN of {iban_obj.country_code}: they must be of one country."
        ]
    return (iban_obj.compact if iban_obj else ""), (bic_obj.compact if bic_obj else ""), problems


MASK = "*"
MASKED_IBAN_HELP = (
    "Shown masked: its country code and last four characters, each other character a *, compact "
    "(DE89370400440532013000 is shown DE****************3000)."
)


def mask_iban(iban: str) -> str:
    """The IBAN as the API, the logs and the pages show it: its country code and last four
    characters, every other character a ``*`` (``DE****************3000``). Only the SEPA
    export carries it whole."""
    iban = iban.replace(" ", "").upper()
    if len(iban) <= 6:
        return MASK * len(iban)
    return iban[:2] + MASK * (len(iban) - 6) + iban[-4:]


def is_masked(value) -> bool:
    return isinstance(value, str) and MASK in value


def method_state(method: PayoutMethod | None) -> dict:
    """The method's fields; a promoter without one is paid by hand."""
    if method is None:
        return {"kind": PayoutMethod.Kind.MANUAL.value, **dict.fromkeys(FIELDS, "")}
    return {"kind": method.kind, **{name: getattr(method, name) for name in FIELDS}}


def masked_state(state: dict) -> dict:
    """A method's fields as they are logged and shown: the IBAN masked."""
    return {**state, "iban": mask_iban(state["iban"])}


def unmasked_iban(iban, method: PayoutMethod | None):
    """An IBAN sent masked (as it is shown) stands for the stored one when it is the stored
    one's mask; any other masked value is refused. An IBAN in clear is returned as it is."""
    if not is_masked(iban):
        return iban
    stored = method.iban if method is not None else ""
    if stored and iban.replace(" ", "").upper() == mask_iban(stored):
        return stored
    if stored:
        problem = f"Masked, but not as the stored IBAN ({mask_iban(stored)}): send the full IBAN to change it."
    else:
        problem = "Masked (* hides characters): send the full IBAN."
    raise ServiceValidationError({"iban": [problem]})


def method_clean(*, kind, paypal_email="", account_holder="", iban="", bic="") -> dict:
    """The fields of a valid method, normalised; ``ServiceValidationError`` naming each problem."""
    raw = {"paypal_email": paypal_email, "account_holder": account_holder, "iban": iban, "bic": bic}
    problems: dict[str, list[str]] = {}
    if kind not in PayoutMethod.Kind.values:
        problems["kind"] = [f"Must be one of: {', '.join(PayoutMethod.Kind.values)}."]
    values = {}
    for name, value in raw.items():
        if value is None:
            value = ""
        if not isinstance(value, str):
            problems[name] = ["Must be a string."]
            continue
        value = value.strip()
        if "\x00" in value:
            problems[name] = ["Must not contain the NUL character."]
        elif len(value) > MAX_LENGTHS[name]:
            problems[name] = [f"At most {MAX_LENGTHS[name]} characters."]
        values[name] = value
    if problems.get("kind"):
        raise ServiceValidationError(problems)
    used = USED_BY[kind]
    for name in FIELDS:
        if name not in used and values.get(name) and name not in problems:
            problems[name] = [f"Not used by a {kind} payout method: leave it empty."]
    if kind == PayoutMethod.Kind.PAYPAL and "paypal_email" not in problems:
        email = values["paypal_email"]
        if not email:
            problems["paypal_email"] = ["Required for a PayPal payout method."]
        else:
            try:
                validate_email(email)
            except ValidationError:
                problems["paypal_email"] = ["Enter a valid email address."]
    if kind == PayoutMethod.Kind.BANK:
        if "account_holder" not in problems and not values["account_holder"]:
            problems["account_holder"] = ["Required for a bank payout method."]
        if "iban" not in problems and "bic" not in problems:
            values["iban"], values["bic"], bank_problems = bank_account_clean(values["iban"], values["bic"])
            problems.update(bank_problems)
        if "iban" not in problems and not values["iban"]:
            problems["iban"] = ["Required for a bank payout method."]
    if problems:
        raise ServiceValidationError(problems)
    return {"kind": kind, **{name: (values[name] if name in used else "") for name in FIELDS}}


@transaction.atomic
def payout_method_set(
    *, promoter: Promoter, kind: str, changed_by: str, paypal_email: str = "", account_holder: str = "", iban: str = "",
    bic: str = "",
) -> PayoutMethod:
    """Set the promoter's payout method. A change writes one ``PayoutMethodChange`` (before and
    after, the IBAN masked but for its country code and last four characters); setting what
    is already there writes none. An IBAN sent masked is the stored one if it is its mask, and
    refused otherwise (``unmasked_iban``). Batches already built keep the method they were
    built with."""
    Promoter.objects.select_for_update().filter(pk=promoter.pk).first()  # one change of a promoter's method at a time
    method = PayoutMethod.objects.filter(promoter=promoter).first()
    iban = unmasked_iban(iban, method)
    after = method_clean(kind=kind, paypal_email=paypal_email, account_holder=account_holder, iban=iban, bic=bic)
    before = method_state(method)
    if method is None:
        method = PayoutMethod(promoter=promoter)
    elif before == after:
        return method
    for name, value in after.items():
        setattr(method, name, value)
    method.save()
    if before != after:
        PayoutMethodChange.objects.create(
            promoter=promoter, changed_by=changed_by[:200], before=masked_state(before), after=masked_state(after)
        )
    return method


@transaction.atomic
def payout_method_update(*, promoter: Promoter, changed_by: str, **changes) -> PayoutMethod:
    """Change some of the method's fields (``kind`` and those of ``FIELDS``), keeping the others:
    a BIC alone, say, without sending the IBAN again. A new kind starts from empty fields (the
    old kind's are not carried over). Checked, logged and written as ``payout_method_set``."""
    unknown = set(changes) - {"kind", *FIELDS}
    if unknown:
        raise TypeError(f"payout_method_update() got unexpected fields: {', '.join(sorted(unknown))}")
    Promoter.objects.select_for_update().filter(pk=promoter.pk).first()
    current = method_state(PayoutMethod.objects.filter(promoter=promoter).first())
    kind = changes.get("kind", current["kind"])
    base = current if kind == current["kind"] else dict.fromkeys(FIELDS, "")
    return payout_method_set(
        promoter=promoter, kind=kind, changed_by=changed_by, **{name: changes.get(name, base[name]) for name in FIELDS}
    )


# --- The promoter's own link -------------------------------------------------------------

LINK_SALT = "payouts.payout-details"
LINK_DAYS = 7


def _last_change_id(promoter_id: int) -> int:
    return PayoutMethodChange.objects.filter(promoter_id=promoter_id).order_by("-id").values_list("id", flat=True).first() or 0


def payout_details_token(promoter: Promoter) -> str:
    """A signed link for the promoter to set their own payout details: valid for seven days
    and until the details next change (so a used link cannot be replayed)."""
    return signing.dumps({"p": promoter.pk, "c": _last_change_id(promoter.pk)}, salt=LINK_SALT, compress=True)


class LinkInvalid(Exception):
    pass


def promoter_from_token(token: str) -> Promoter:
    try:
        data = signing.loads(token, salt=LINK_SALT, max_age=timedelta(days=LINK_DAYS))
    except signing.SignatureExpired:
        raise LinkInvalid("This link has expired. Ask for a new one.") from None
    except signing.BadSignature:
        raise LinkInvalid("This link is not valid.") from None
    promoter = Promoter.objects.filter(pk=data.get("p")).select_related("program").first()
    if promoter is None:
        raise LinkInvalid("This link is not valid.")
    if _last_change_id(promoter.pk) != data.get("c"):
        raise LinkInvalid("This link was already used: your payout details changed since. Ask for a new one.")
    return promoter
