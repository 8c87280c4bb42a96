"""The team page's tree, read by the database a page at a time: the same members, in the same
order, with the same figures as walking the tree level by level (``selectors.downline``)."""

from __future__ import annotations

import random

import pytest

from portal import selectors as reads
from promoters import selectors
from promoters.models import Promoter
from tests.factories import PromoterFactory

pytestmark = pytest.mark.django_db


def tree(program, rng: random.Random, *, size: int = 60):
    """A root and ``size`` members over several levels, each sponsor's recruits created
    between other sponsors' (so that the order of ids is not the tree's), and a promoter
    outside the tree."""
    root = PromoterFactory(program=program, name="Root")
    members = [root]
    for i in range(size):
        sponsor = rng.choice(members[: max(1, len(members) * 2 // 3)])
        members.append(PromoterFactory(program=program, sponsor=sponsor, name=f"M{i}"))
    PromoterFactory(program=program, name="Outside", sponsor=None)
    return root, members[1:]


def listed(team: reads.TeamMembers, per_page: int) -> list[dict]:
    rows = []
    for start in range(0, len(team), per_page):
        rows.extend(team[start : start + per_page])
    return rows


@pytest.mark.parametrize("levels,limit", [(10, 5000), (3, 5000), (10, 25), (2, 7)])
def test_pages_of_the_tree_are_the_level_by_level_walk(program, levels, limit):
    root, _ = tree(program, random.Random(levels * 100 + limit))
    expected = selectors.downline(root, levels=levels, limit=limit)
    team = reads.TeamMembers(root, levels=levels, limit=limit)
    assert len(team) == team.count() == len(expected)
    assert team.truncated == (len(expected) >= limit)
    per_level: dict[int, int] = {}
    for row in expected:
        per_level[row["level"]] = per_level.get(row["level"], 0) + 1
    assert team.per_level == per_level
    for per_page in (1, 7, 100):
        assert listed(team, per_page) == expected


def test_a_loop_back_to_the_promoter_stops_there(program):
    root = PromoterFactory(program=program)
    child = PromoterFactory(program=program, sponsor=root)
    grandchild = PromoterFactory(program=program, sponsor=child)
    Promoter.objects.filter(pk=root.pk).update(sponsor=grandchild)  # only a hand edit can do this
    team = reads.TeamMembers(root)
    assert team.per_level == {1: 1, 2: 1}
    assert [(r["id"], r["level"], r["recruits"]) for r in team[0:10]] == [(child.pk, 1, 1), (grandchild.pk, 2, 0)]
    assert team[0:10] == selectors.downline(root)


def test_the_team_page_lists_members_a_page_at_a_time(world, django_assert_max_num_queries):
    from portal.views import TEAM_MEMBERS_PER_PAGE

    for i in range(TEAM_MEMBERS_PER_PAGE + 5):
        world.w.promoter(f"Recruit{i:03d}", sponsor=world.pia)
    first = world.sam_client.get("/portal/team/").content.decode()
    assert f"Members ({TEAM_MEMBERS_PER_PAGE + 6})" in first
    assert f"Members 1–{TEAM_MEMBERS_PER_PAGE} of {TEAM_MEMBERS_PER_PAGE + 6}" in first
    assert '<tr><th scope="row">2</th><td class="num">0.00</td><td class="num">105</td>' in first
    second = world.sam_client.get("/portal/team/?page=2").content.decode()
    assert "Recruit104" in second and "Recruit000" not in second
    assert "Recruit000" in first and "Recruit104" not in first


def test_the_team_page_runs_the_same_queries_however_deep_and_wide_the_team(world):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert world.sam_client.get("/portal/team/").status_code == 200
        return len(queries)

    shallow = count()  # Pia only
    sponsor = world.pia
    for depth in range(6):  # a chain six levels further down, each with two more recruits
        for j in range(2):
            world.w.promoter(f"Side{depth}x{j}", sponsor=sponsor)
        sponsor = world.w.promoter(f"Chain{depth}", sponsor=sponsor)
    assert count() == shallow
