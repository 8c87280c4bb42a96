"""Who may see a portal page, and as which promoter: shared by every page of the portal
(``portal.views`` and ``portal.insight_views``)."""

from __future__ import annotations

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.views.decorators.cache import never_cache

from promoters import selectors

SESSION_PROMOTER = "portal_promoter"  # the switcher keeps the promoter chosen under this key


def portal_page(view):
    """Logged in, and a promoter to show; sets ``request.promoter`` (the one chosen with the
    switcher, or the first) and ``request.portal_promoters``. Never cached."""

    @login_required
    @never_cache
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        promoters = selectors.promoters_of_user(request.user)
        if not promoters:
            return render(request, "portal/no_program.html", status=200)
        chosen = request.session.get(SESSION_PROMOTER)
        request.promoter = next((p for p in promoters if p.pk == chosen), promoters[0])
        request.portal_promoters = promoters
        return view(request, *args, **kwargs)

    return wrapper
