"""A traffic simulator: merchants, a sponsor tree of promoters, links and weeks of traffic.

Everything goes through the services the API uses (``merchant_create``, ``program_create``,
``promoter_create``, ``link_create``, ``click_record`` and ``event_ingest``); models are only
read. The run is planned first from a seeded random generator, as offsets from the start of
the window, and then played in time order: runs of clicks in one transaction each, every
event committed (and so processed) on its own, as through the API. The same seed and sizes
give the same plan, so the same counts, whenever it runs.

Used by ``manage.py simulate_traffic``, ``manage.py load_demo`` and the benchmarks.
"""

from __future__ import annotations

import itertools
import math
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.db import transaction
from django.utils import timezone

from affiliate import services
from affiliate.events import event_ingest
from affiliate.models import ConversionEvent
from core.errors import ApiError, ServiceValidationError
from merchants import services as merchant_services
from merchants.models import Merchant
from promoters.services import promoter_create

DAY = 86_400
MAX_DEPTH = 6
CENT = Decimal("0.01")

CHANNELS = ("blog", "youtube", "newsletter", "instagram", "podcast", "tiktok", "twitter", "reddit")
CHANNEL_REFERRERS = {
    "blog": "https://{slug}.blog.example/reviews/",
    "youtube": "https://www.youtube.com/",
    "newsletter": "",
    "instagram": "https://l.instagram.com/",
    "podcast": "",
    "tiktok": "https://www.tiktok.com/",
    "twitter": "https://t.co/",
    "reddit": "https://www.reddit.com/",
}
CAMPAIGNS = ("spring-sale", "review", "unboxing", "top10", "weekly", "launch", "gift-guide")
PLACEMENTS = ("description", "bio", "header", "footer", "pinned", "story")
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
)
FIRST_NAMES = (
    "Anna", "Ben", "Chloe", "David", "Emma", "Felix", "Grace", "Hugo", "Iris", "Jonas", "Kira", "Liam",
    "Maya", "Noah", "Olga", "Paul", "Quinn", "Rosa", "Sam", "Tara", "Uma", "Victor", "Wendy", "Yusuf", "Zoe",
)
LAST_NAMES = ("Berg", "Costa", "Dietz", "Evans", "Fischer", "Garcia", "Hansen", "Ito", "Jensen", "Kowalski", "Larsen", "Moreau")
# Relative click volume by hour, counted from the start of each simulated day.
HOUR_WEIGHTS = (2, 1, 1, 1, 1, 2, 3, 5, 7, 8, 8, 8, 9, 9, 8, 8, 8, 9, 11, 13, 14, 12, 8, 4)
WEEKDAY_FACTORS = (1.0, 0.95, 0.95, 1.0, 1.1, 1.25, 1.2)
TIER_RATES = ["0.05", "0.03", "0.02", "0.01"]


# --- The summary ----------------------------------------------------------------------


@dataclass
class SimulationSummary:
    seed: int
    days: int
    merchant_ids: list[int] = field(default_factory=list)
    merchants: int = 0
    programs: int = 0
    promoters: int = 0
    inactive_promoters: int = 0
    promoters_with_coupon: int = 0
    sponsor_depth: int = 0
    links: int = 0
    channels: list[str] = field(default_factory=list)
    visitors: int = 0
    clicks: int = 0
    customers: int = 0
    events: dict[str, int] = field(default_factory=dict)
    stages: dict[str, int] = field(default_factory=dict)
    coupon_only_purchases: int = 0
    revenue: dict[str, str] = field(default_factory=dict)
    refunded: dict[str, str] = field(default_factory=dict)
    rejected: int = 0
    processed: int = 0
    elapsed_seconds: float = 0.0

    @property
    def total_events(self) -> int:
        return sum(self.events.values())

    def numbers(self) -> dict:
        """Everything that depends on the seed and sizes alone (not ids, not timing)."""
        skip = {"merchant_ids", "elapsed_seconds"}
        return {name: getattr(self, name) for name in self.__dataclass_fields__ if name not in skip}

    def as_text(self) -> str:
        events = ", ".join(f"{kind} {self.events.get(kind, 0)}" for kind in ("registration", "purchase", "refund"))
        stages = ", ".join(f"{stage} {count}" for stage, count in sorted(self.stages.items()))
        money = lambda amounts: ", ".join(f"{cur} {amount}" for cur, amount in sorted(amounts.items())) or "0.00"  # noqa: E731
        lines = [
            f"Simulated {self.days} days of traffic (seed {self.seed}) in {self.elapsed_seconds:.1f} s",
            f"  merchants   {self.merchants} (ids {', '.join(map(str, self.merchant_ids))}), programs {self.programs}",
            f"  promoters   {self.promoters} ({self.inactive_promoters} inactive, {self.promoters_with_coupon} with a coupon;"
            f" sponsor tree depth {self.sponsor_depth})",
            f"  links       {self.links} on {len(self.channels)} channels ({', '.join(self.channels)})",
            f"  visitors    {self.visitors}",
            f"  clicks      {self.clicks}",
            f"  customers   {self.customers}",
            f"  events      {self.total_events}: {events}",
            f"  stages      {stages}",
            f"  coupon-only purchases {self.coupon_only_purchases}",
            f"  revenue     {money(self.revenue)} purchased, {money(self.refunded)} refunded",
            f"  processed   {self.processed} of {self.total_events} events; rejected {self.rejected}",
        ]
        return "\n".join(lines)


# --- The plan -------------------------------------------------------------------------


@dataclass
class _PromoterPlan:
    index: int
    name: str
    email: str
    sponsor: int | None
    depth: int
    status: str
    coupon: str | None
    customer_id: str | None
    weight: float
    links: list[tuple[str, str, dict]] = field(default_factory=list)  # (channel, destination, subs)
    link_weights: list[float] = field(default_factory=list)


@dataclass
class _Visitor:
    key: int
    user_agent: str
    ip: str


@dataclass
class _Click:
    key: int
    merchant: int
    promoter: int
    link: int
    visitor: _Visitor
    ip: str
    referrer: str
    subs: dict


@dataclass
class _Event:
    merchant: int
    payload: dict
    click: int | None = None  # the key of the click whose id goes into click_id
    coupon_only: bool = False


@dataclass
class _MerchantPlan:
    index: int
    name: str
    domain: str
    promoters: list[_PromoterPlan]


class _Planner:
    """Draws one merchant's promoters and traffic. Times are seconds from the window start."""

    def __init__(self, rng: random.Random, index: int, days: int, visitors_per_day: float, refund_rate: float,
                 timeline: list, counters: dict):
        self.rng = rng
        self.refund_rate = refund_rate
        self.index = index
        self.days = days
        self.end = days * DAY
        self.visitors_per_day = visitors_per_day
        self.timeline = timeline
        self.counters = counters
        self.promoters: list[_PromoterPlan] = []
        self.customer_seq = 0
        self.order_seq = 0

    # Keys shared by every merchant of the run, so that clicks and visitors never collide.
    def _next(self, name: str) -> int:
        self.counters[name] += 1
        return self.counters[name]

    def _at(self, offset: float, item) -> None:
        self.timeline.append((int(offset), len(self.timeline), item))

    # -- promoters and links --

    def plan_promoters(self, count: int, domain: str) -> list[_PromoterPlan]:
        rng = self.rng
        used_coupons: set[str] = set()
        recruits = Counter()
        for i in range(count):
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            if i == 0:
                sponsor, depth = None, 1
            elif i < MAX_DEPTH:
                sponsor, depth = i - 1, i + 1  # one deep line, so the tree reaches its full depth
            elif rng.random() < 0.08:
                sponsor, depth = None, 1
            else:
                candidates = [p for p in self.promoters if p.depth < MAX_DEPTH]
                weights = [(1 + recruits[p.index]) * (1 + 0.4 * p.depth) for p in candidates]
                chosen = rng.choices(candidates, weights)[0]
                sponsor, depth = chosen.index, chosen.depth + 1
            if sponsor is not None:
                recruits[sponsor] += 1
            status = "inactive" if i > 0 and rng.random() < 0.1 else "active"
            coupon = None
            if rng.random() < 0.3:
                coupon = f"{first.upper()}{rng.choice((5, 10, 15, 20))}"
                if coupon in used_coupons:
                    coupon = f"{coupon}X{i + 1}"
                used_coupons.add(coupon)
            customer_id = f"cust-p{i + 1:04d}" if rng.random() < 0.25 else None
            weight = min(rng.paretovariate(1.2), 40.0) * (0.25 if status == "inactive" else 1.0)
            promoter = _PromoterPlan(
                index=i, name=f"{first} {last}", email=f"{first}.{last}.{i + 1}@example.org".lower(),
                sponsor=sponsor, depth=depth, status=status, coupon=coupon, customer_id=customer_id, weight=weight,
            )
            slug = f"{first}{last}".lower()
            main = rng.choice(CHANNELS)
            channels = [main] + rng.sample([c for c in CHANNELS if c != main], rng.choice((0, 0, 1, 1, 2)))
            for n, channel in enumerate(channels):
                product = rng.randint(1, 60)
                destination = f"https://{domain}/p/{product}"
                if rng.random() < 0.3:
                    destination += f"?utm_source={channel}&utm_medium=affiliate"
                subs = {}
                if rng.random() < 0.5:
                    subs = {"sub1": rng.choice(CAMPAIGNS), "sub2": rng.choice(PLACEMENTS), "sub3": slug}
                promoter.links.append((channel, destination, subs))
                promoter.link_weights.append(3.0 if n == 0 else 1.0)
            self.promoters.append(promoter)
        self.cum_weights = list(itertools.accumulate(p.weight for p in self.promoters))
        self.with_coupon = [p for p in self.promoters if p.coupon]
        self.coupon_weights = [p.weight for p in self.with_coupon]
        self.own_customers = [p for p in self.promoters if p.customer_id]
        return self.promoters

    # -- traffic --

    def _poisson(self, lam: float) -> int:
        if lam <= 0:
            return 0
        if lam > 30:
            return max(0, round(self.rng.gauss(lam, math.sqrt(lam))))
        limit, k, product = math.exp(-lam), 0, self.rng.random()
        while product > limit:
            k += 1
            product *= self.rng.random()
        return k

    def _time_in_day(self, day: int) -> float:
        hour = self.rng.choices(range(24), HOUR_WEIGHTS)[0]
        return day * DAY + hour * 3600 + self.rng.uniform(0, 3600)

    def _new_visitor(self) -> _Visitor:
        rng = self.rng
        if rng.random() < 0.15:
            ip = f"2001:db8:{rng.randint(0, 0xFFFF):x}:{rng.randint(0, 0xFFFF):x}::{rng.randint(1, 0xFFFF):x}"
        else:
            ip = f"100.{rng.randint(64, 127)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        return _Visitor(self._next("visitor"), rng.choice(USER_AGENTS), ip)

    def _pick_promoter(self, exclude: int | None = None) -> _PromoterPlan:
        for _ in range(20):
            promoter = self.rng.choices(self.promoters, cum_weights=self.cum_weights)[0]
            if promoter.index != exclude:
                break
        return promoter

    def _click(self, offset: float, visitor: _Visitor, promoter: _PromoterPlan, *, link: int | None = None) -> int:
        rng = self.rng
        if link is None:
            link = rng.choices(range(len(promoter.links)), promoter.link_weights)[0]
        channel, _, subs = promoter.links[link]
        referrer = CHANNEL_REFERRERS[channel].format(slug=promoter.email.split("@")[0].replace(".", "-"))
        ip = visitor.ip
        if rng.random() < 0.2:  # a phone on another network
            ip = f"100.{rng.randint(64, 127)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        click = _Click(self._next("click"), self.index, promoter.index, link, visitor, ip, referrer, subs)
        self._at(offset, click)
        return click.key

    def _amount(self) -> Decimal:
        value = math.exp(self.rng.gauss(math.log(55), 0.6))
        return Decimal(str(min(max(value, 5.0), 2000.0))).quantize(CENT, rounding=ROUND_HALF_UP)

    def _new_customer(self) -> str:
        self.customer_seq += 1
        return f"cust-{self.customer_seq:06d}"

    def _purchase(self, offset: float, customer: str, *, click: int | None = None, coupon: str | None = None,
                  coupon_only: bool = False) -> bool:
        """Plan a purchase and perhaps its refunds; False when it would lie beyond now."""
        if offset > self.end:
            return False
        rng = self.rng
        self.order_seq += 1
        order_id = f"ORD-{self.index + 1}-{self.order_seq:06d}"
        amount = self._amount()
        payload = {"type": "purchase", "customer_id": customer, "order_id": order_id, "amount": str(amount)}
        if coupon:
            payload["coupon"] = coupon.lower() if rng.random() < 0.2 else coupon
        self._at(offset, _Event(self.index, payload, click, coupon_only))
        if rng.random() < self.refund_rate:
            refund_at = offset + 3600 + rng.expovariate(1 / (3 * DAY))
            if refund_at <= self.end:
                refund = {"type": "refund", "customer_id": customer, "order_id": order_id}
                if rng.random() < 0.5:  # a full refund, amount left out: the rest of the order
                    self._at(refund_at, _Event(self.index, refund))
                else:
                    part = (amount * Decimal(str(round(rng.uniform(0.1, 0.6), 2)))).quantize(CENT, rounding=ROUND_HALF_UP)
                    self._at(refund_at, _Event(self.index, {**refund, "refund_id": "R-1", "amount": str(max(part, CENT))}))
                    second_at = refund_at + 3600 + rng.expovariate(1 / (2 * DAY))
                    if rng.random() < 0.3 and second_at <= self.end:
                        self._at(second_at, _Event(self.index, {**refund, "refund_id": "R-2"}))
        return True

    def _repeat_purchases(self, offset: float, customer: str, visitor: _Visitor, promoter: _PromoterPlan) -> None:
        rng = self.rng
        if rng.random() >= 0.35:
            return
        for _ in range(rng.randint(1, 3)):
            offset += rng.expovariate(1 / (5 * DAY)) + 3600
            if offset > self.end:
                return
            mode = rng.random()
            click = None
            if mode < 0.35:  # back through a link, the same browser
                back = promoter if rng.random() < 0.6 else self._pick_promoter()
                click = self._click(offset - rng.uniform(120, 1800), visitor, back)
            elif mode < 0.5:  # back through a link on another device
                click = self._click(offset - rng.uniform(120, 1800), self._new_visitor(), promoter)
            # else: straight to the shop, the customer known by the merchant
            if not self._purchase(offset, customer, click=click):
                return

    def plan_day(self, day: int) -> None:
        rng = self.rng
        growth = 0.85 + 0.3 * day / max(self.days - 1, 1)
        for _ in range(self._poisson(self.visitors_per_day * WEEKDAY_FACTORS[day % 7] * growth)):
            self._plan_visitor(day)
        # Orders that only carry a promoter's coupon code: no click at all.
        with_coupon = self.with_coupon
        for _ in range(self._poisson(self.visitors_per_day * 0.01) if with_coupon else 0):
            promoter = rng.choices(with_coupon, self.coupon_weights)[0]
            customer = self._new_customer()
            offset = self._time_in_day(day)
            if self._purchase(offset, customer, coupon=promoter.coupon, coupon_only=True) and rng.random() < 0.2:
                self._purchase(offset + rng.uniform(DAY, 10 * DAY), customer)
        # Now and then a promoter buys through their own link: a self-referral.
        own = self.own_customers
        if own and rng.random() < 0.15:
            promoter = rng.choice(own)
            offset = self._time_in_day(day)
            click = self._click(offset, self._new_visitor(), promoter)
            self._purchase(offset + rng.uniform(300, 3600), promoter.customer_id, click=click)

    def _plan_visitor(self, day: int) -> None:
        rng = self.rng
        visitor = self._new_visitor()
        promoter = self._pick_promoter()
        offset = self._time_in_day(day)
        sessions = [(offset, self._click(offset, visitor, promoter), promoter)]
        if rng.random() < 0.3:  # a returning visitor, sometimes through another promoter
            for _ in range(rng.randint(1, 3)):
                offset += rng.expovariate(1 / (2 * DAY)) + 600
                if offset > self.end:
                    break
                back = promoter if rng.random() < 0.6 else self._pick_promoter(exclude=promoter.index)
                sessions.append((offset, self._click(offset, visitor, back), back))
        registers = rng.random() < 0.2
        buy_chance = min(0.05 + 0.06 * (len(sessions) - 1) + (0.12 if registers else 0.0), 0.6)
        buys = rng.random() < buy_chance
        if not (registers or buys):
            return
        customer = self._new_customer()
        if registers:
            at, click, _ = sessions[rng.randrange(len(sessions))]
            reg_at = at + rng.uniform(60, 1200)
            if reg_at <= self.end:
                self._at(reg_at, _Event(self.index, {"type": "registration", "customer_id": customer}, click))
        if buys:
            at, click, via = sessions[-1] if rng.random() < 0.7 else sessions[rng.randrange(len(sessions))]
            buy_at = at + rng.uniform(300, 3 * 3600)
            coupon = via.coupon if via.coupon and rng.random() < 0.2 else None
            if self._purchase(buy_at, customer, click=click, coupon=coupon):
                self._repeat_purchases(buy_at, customer, visitor, via)


# --- The run --------------------------------------------------------------------------


def simulate(
    *,
    merchants: int = 1,
    promoters: int = 50,
    days: int = 30,
    visitors_per_day: float = 100,
    refund_rate: float = 0.07,
    seed: int = 1,
    now: datetime | None = None,
    merchant_objects: Sequence[Merchant] | None = None,
    progress: Callable[[str], None] | None = None,
) -> SimulationSummary:
    """Create merchants (or use ``merchant_objects``), a default program each, promoters,
    links and ``days`` days of traffic ending at ``now``; return what was made.

    ``visitors_per_day`` is the mean of new visitors per merchant and day (returning visitors
    come on top); ``refund_rate`` the share of purchases that get a full or partial refund.
    """
    if promoters < 1 or days < 1 or visitors_per_day < 0 or not 0 <= refund_rate <= 1:
        raise ValueError("promoters and days must be at least 1, visitors_per_day at least 0, refund_rate in [0, 1]")
    started = time.monotonic()
    now = (now or timezone.now()).replace(microsecond=0)
    start = now - timedelta(days=days)
    say = progress or (lambda message: None)
    summary = SimulationSummary(seed=seed, days=days)

    # 1. The plan: pure data, drawn from the seed alone.
    timeline: list[tuple[int, int, object]] = []
    counters = Counter()
    count = len(merchant_objects) if merchant_objects is not None else merchants
    plans: list[_MerchantPlan] = []
    planners: list[_Planner] = []
    for m in range(count):
        rng = random.Random(f"{seed}:{m}")
        planner = _Planner(rng, m, days, visitors_per_day, refund_rate, timeline, counters)
        domain = merchant_objects[m].domains[0] if merchant_objects is not None else f"shop{m + 1}.example.com"
        plans.append(_MerchantPlan(m, f"Simulated Shop {m + 1}", domain, planner.plan_promoters(promoters, domain)))
        planners.append(planner)
    for day in range(days):
        for planner in planners:
            planner.plan_day(day)
    timeline.sort(key=lambda item: (item[0], item[1]))

    # 2. Merchants, programs, promoters and links, through the services.
    merchant_rows: list[Merchant] = []
    promoter_rows: list[list] = []
    targets: list[list[list[services.LinkTarget]]] = []
    channels: set[str] = set()
    for plan in plans:
        with transaction.atomic():
            if merchant_objects is not None:
                merchant = merchant_objects[plan.index]
            else:
                merchant = merchant_services.merchant_create(name=plan.name, domains=[plan.domain]).merchant
            program = merchant_services.default_program(merchant.pk)
            if program is None:
                program = merchant_services.program_create(
                    merchant=merchant, name="Default", tier_rates=TIER_RATES, registration_bounty="1.00"
                )
                summary.programs += 1
            rows, link_targets = [], []
            for p in plan.promoters:
                row = promoter_create(
                    merchant=merchant, email=p.email, name=p.name, program=program,
                    sponsor=rows[p.sponsor] if p.sponsor is not None else None,
                    customer_id=p.customer_id, coupon_code=p.coupon, status=p.status,
                )
                rows.append(row)
                mine = []
                for channel, destination, _ in p.links:
                    link = services.link_create(merchant=merchant, promoter=row, destination_url=destination, channel=channel)
                    mine.append(services.link_target(link.code))
                    channels.add(channel)
                link_targets.append(mine)
        merchant_rows.append(merchant)
        promoter_rows.append(rows)
        targets.append(link_targets)
        summary.merchant_ids.append(merchant.pk)
        summary.merchants += 1
        summary.promoters += len(rows)
        summary.inactive_promoters += sum(1 for p in plan.promoters if p.status == "inactive")
        summary.promoters_with_coupon += sum(1 for p in plan.promoters if p.coupon)
        summary.sponsor_depth = max([summary.sponsor_depth, *(p.depth for p in plan.promoters)])
        summary.links += sum(len(t) for t in link_targets)
        say(f"merchant {plan.index + 1}/{count} (id {merchant.pk}): {len(rows)} promoters, "
            f"{sum(len(t) for t in link_targets)} links")
    summary.channels = sorted(channels)

    # 3. The traffic, in time order. A run of clicks shares one transaction; each event is
    # committed on its own, as the API does, so it is processed before the next one arrives.
    click_ids: dict[int, str] = {}
    visitor_ids: dict[int, object] = {}
    customers: set[tuple[int, str]] = set()
    events, stages = Counter(), Counter()
    revenue = Counter()
    refunded = Counter()

    def record_click(item: _Click, at: datetime) -> None:
        click = services.click_record(
            target=targets[item.merchant][item.promoter][item.link],
            visitor_id=visitor_ids.get(item.visitor.key),
            ip=item.ip,
            user_agent=item.visitor.user_agent,
            referrer=item.referrer,
            subs=item.subs,
            at=at,
        )
        visitor_ids[item.visitor.key] = click.visitor_id
        click_ids[item.key] = click.id.hex

    def record_event(item: _Event, at: datetime) -> bool:
        payload = dict(item.payload, occurred_at=at.isoformat())
        if item.click is not None:
            payload["click_id"] = click_ids[item.click]
        try:
            result = event_ingest(merchant=merchant_rows[item.merchant], payload=payload, source="internal")
        except (ServiceValidationError, ApiError):
            summary.rejected += 1
            return False
        if not result.created:
            return False
        event = result.event
        events[event.type] += 1
        stages[event.stage] += 1
        customers.add((item.merchant, payload["customer_id"]))
        if event.type == "purchase":
            revenue[event.currency] += event.amount
            summary.coupon_only_purchases += item.coupon_only
        elif event.type == "refund":
            refunded[event.currency] += event.amount
        return True

    position = 0
    for day in range(days):
        day_end = (day + 1) * DAY if day < days - 1 else days * DAY + 1
        first = position
        while position < len(timeline) and timeline[position][0] < day_end:
            position += 1
        day_clicks = day_events = 0
        for is_click, run in itertools.groupby(timeline[first:position], key=lambda entry: isinstance(entry[2], _Click)):
            if is_click:
                with transaction.atomic():
                    for offset, _, item in run:
                        record_click(item, start + timedelta(seconds=offset))
                        day_clicks += 1
            else:
                for offset, _, item in run:
                    day_events += record_event(item, start + timedelta(seconds=offset))
        summary.clicks += day_clicks
        say(f"day {day + 1}/{days} {(start + timedelta(days=day)).date()}: {day_clicks} clicks, {day_events} events")

    summary.visitors = len(visitor_ids)
    summary.customers = len(customers)
    summary.events = {kind: events[kind] for kind in ("registration", "purchase", "refund")}
    summary.stages = dict(sorted(stages.items()))
    summary.revenue = {cur: str(amount) for cur, amount in revenue.items()}
    summary.refunded = {cur: str(amount) for cur, amount in refunded.items()}
    summary.processed = ConversionEvent.objects.filter(
        merchant_id__in=summary.merchant_ids, status=ConversionEvent.Status.PROCESSED
    ).count()
    summary.elapsed_seconds = time.monotonic() - started
    return summary
