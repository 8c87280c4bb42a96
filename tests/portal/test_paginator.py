"""Pages past the middle are read from the other end and turned round: same rows, same order."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.paginator import Paginator

from portal.views import TwoEndedPaginator

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("n", [1, 6, 7, 8])
def test_every_page_holds_what_a_plain_paginator_gives(n):
    User = get_user_model()
    for i in range(n):
        User.objects.create(username=f"u{i}")
    qs = User.objects.order_by("-date_joined", "-id")
    plain, two_ended = Paginator(qs, 3), TwoEndedPaginator(qs, 3)
    assert two_ended.num_pages == plain.num_pages
    for number in plain.page_range:
        assert [u.pk for u in two_ended.page(number)] == [u.pk for u in plain.page(number)]
