"""Pages for promoters that need no login: setting payout details through a signed link."""

from __future__ import annotations

from django.shortcuts import render
from django.views.decorators.cache import never_cache

from core.errors import ServiceValidationError

from . import methods
from .models import PayoutMethod

KINDS = [
    ("paypal", "PayPal"),
    ("bank", "Bank transfer (IBAN)"),
    ("manual", "Something else: the merchant pays me by hand"),
]


@never_cache
def payout_details(request, token: str):
    try:
        promoter = methods.promoter_from_token(token)
    except methods.LinkInvalid as exc:
        return render(request, "payouts/payout_details.html", {"invalid": str(exc)}, status=410)
    method = PayoutMethod.objects.filter(promoter=promoter).first()
    current = methods.method_state(method)
    context = {"promoter": promoter, "kinds": KINDS, "errors": {}, "saved": False}
    if request.method == "POST":
        values = {name: request.POST.get(name, "") for name in ("kind", *methods.FIELDS)}
        # Only the fields of the chosen kind are sent on: the others may hold leftovers.
        used = methods.USED_BY.get(values["kind"], ())
        try:
            methods.payout_method_set(
                promoter=promoter,
                changed_by=f"promoter:{promoter.pk} (link)",
                kind=values["kind"],
                **{name: (values[name] if name in used else "") for name in methods.FIELDS},
            )
        except ServiceValidationError as exc:
            context.update(errors=exc.fields, values=values)
            return render(request, "payouts/payout_details.html", context, status=400)
        context.update(saved=True, values={**values, "iban": methods.mask_iban(values.get("iban", ""))})
        return render(request, "payouts/payout_details.html", context)
    context["values"] = {**current, "iban": ""}
    context["masked_iban"] = methods.mask_iban(current["iban"]) if current["iban"] else ""
    return render(request, "payouts/payout_details.html", context)
