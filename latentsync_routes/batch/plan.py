"""Before a batch runs: every job probed, checked and priced, the route of each chosen, the total held
against the budget. Nothing is uploaded here, and a plan with any bad row is refused whole.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import money
from ..choice import CHEAPEST, explain, rank_routes
from ..consent import checked_consent
from ..errors import (
    BudgetExceeded,
    ConfigurationError,
    InvalidParameter,
    LatentSyncError,
    ManifestError,
    PolicyViolation,
)
from ..journal import TERMINAL_OK
from ..outputs import resolve_output
from ..types import CostEstimate
from .executor import BatchItem
from .manifest import BatchJob

#: a row's scoring options: they do not change its job (sync_gate.py)
SCORING = ("evaluate", "min_sync_confidence", "syncnet_weights")

if TYPE_CHECKING:
    from .executor import BatchClient


@dataclass
class RouteTotal:
    """The price range of a batch's jobs on one route."""

    jobs: int = 0
    low: float = 0.0
    expected: float = 0.0
    high: float = 0.0
    expected_seconds: float = 0.0


@dataclass
class BatchPlan:
    """The checked, priced jobs of a batch and their totals per route."""

    items: list[BatchItem]
    totals: dict[str, RouteTotal] = field(default_factory=dict)

    @property
    def low(self) -> float:
        return money.total(t.low for t in self.totals.values())

    @property
    def expected(self) -> float:
        return money.total(t.expected for t in self.totals.values())

    @property
    def high(self) -> float:
        return money.total(t.high for t in self.totals.values())


def _finished_outputs(client: BatchClient) -> set[str]:
    """Outputs written by finished jobs of the journal: a re-run of the batch may find them in place."""
    return {r.output_path for r in client.journal.list(limit=1_000_000, state=TERMINAL_OK) if r.output_path}


@dataclass(frozen=True)
class FallbackRule:
    """How a batch's ``cheapest`` jobs may move to their next usable route after a failure (``run``'s
    ``fallback``, ``fallback_after_billed_failure`` and ``fallback_on_quality``); jobs whose row names a
    route run there only."""

    enabled: bool = False
    after_billed_failure: bool = False
    #: move on after a job under its quality gate too: that job was made and is paid
    on_quality: bool = False

    @property
    def every_route_paid(self) -> bool:
        """Whether a job may be paid on each route it tries (a billed or a failed-quality job moves on)."""
        return self.after_billed_failure or self.on_quality


def _choose(
    client: BatchClient, job: BatchJob, options: dict[str, Any], among: Sequence[str] | None
) -> tuple[str, str, list[CostEstimate]]:
    """The cheapest usable route for ``job``, why, and the estimates of the other usable routes in order."""
    parameters = {k: v for k, v in options.items() if k != "consent"}
    ranked = rank_routes(client, job.video, job.audio, consent=options.get("consent"), candidates=among, **parameters)
    usable = [o.estimate for o in ranked if o.usable and o.estimate is not None]
    if not usable:
        raise ConfigurationError("no route can take this job: " + "; ".join(f"{o.route}: {o.refused}" for o in ranked))
    return usable[0].route, explain(ranked), usable[1:]


def worst_case(estimate: CostEstimate | None, backups: Sequence[CostEstimate], every_route_paid: bool) -> float:
    """What one job may cost at most over every route it may run on. A failure that costs nothing is the
    only one followed by default, so then one route is paid at most (the dearest); when billed (or
    failed-quality) jobs are followed too, every route tried may be paid (their sum)."""
    highs = [e.high for e in ([estimate] if estimate is not None else []) + list(backups)]
    if every_route_paid:
        return money.total(highs)
    return max(highs, key=money.micros, default=0.0)


def _plan_one(
    client: BatchClient,
    job: BatchJob,
    index: int,
    route: str | None,
    consent: str | None,
    among: Sequence[str] | None,
    fallback: FallbackRule,
) -> BatchItem:
    name = job.route or route or client.settings.route
    options: dict[str, Any] = {**job.run_options()}
    if consent and "consent" not in options:
        options["consent"] = consent
    parameters = {k: v for k, v in options.items() if k not in ("consent", *SCORING)}
    choice: str | None = None
    backups: list[CostEstimate] = []
    if name == CHEAPEST:
        name, choice, backups = _choose(client, job, options, among)
        backups = backups if fallback.enabled else []
    why_not = client.route(name).availability()
    if why_not:
        raise LatentSyncError(f"route {name} is not usable here: {why_not}", route=name)
    checks, estimate = client.assess(job.video, job.audio, route=name, consent=options.get("consent"), **parameters)
    stops = [c for c in checks if not c.passed]
    if stops:
        raise PolicyViolation(stops, route=name)
    if backups:
        options.update(
            routes=[name, *(b.route for b in backups)],
            fallback=True,
            fallback_after_billed_failure=fallback.after_billed_failure,
            fallback_on_quality=fallback.on_quality,
        )
    output = resolve_output(job.output, route=name)
    return BatchItem(
        index=index,
        line=job.line,
        video=job.video,
        audio=job.audio,
        output=output,
        route=name,
        options=options,
        estimate=estimate,
        choice=choice,
        high=worst_case(estimate, backups, fallback.every_route_paid) if backups else None,
    )


def plan_batch(
    client: BatchClient,
    jobs: Sequence[BatchJob],
    *,
    route: str | None = None,
    consent: str | None = None,
    budget: float | None = None,
    among: Sequence[str] | None = None,
    fallback: FallbackRule | None = None,
) -> BatchPlan:
    """Check and price every job; :class:`ManifestError` names every bad row, :class:`BudgetExceeded` a plan
    whose worst case is over ``budget``. Both before anything leaves the machine. ``among`` limits the
    routes ``cheapest`` may choose from; with ``fallback`` a job's worst case counts the routes it may
    move on to (:func:`worst_case`)."""
    consent = checked_consent(consent, where="consent")
    items: list[BatchItem] = []
    problems: list[tuple[int, str]] = []
    policy_only = True
    for index, job in enumerate(jobs):
        try:
            items.append(_plan_one(client, job, index, route, consent, among, fallback or FallbackRule()))
        except LatentSyncError as exc:
            policy_only = policy_only and isinstance(exc, PolicyViolation)
            problems.append((job.line, f"{type(exc).__name__}: {exc}"))
    outputs = Counter(str(item.output) for item in items)
    finished = _finished_outputs(client) if any(item.output.exists() for item in items) else set()
    for item in items:
        if item.output.is_dir():
            continue
        if outputs[str(item.output)] > 1:
            policy_only = False
            problems.append((item.line, f"output {item.output} is also the output of another row"))
        elif item.output.exists() and str(item.output) not in finished:
            policy_only = False
            problems.append((item.line, f"output {item.output} exists and no finished job of the journal wrote it"))
    if problems:
        raise ManifestError(sorted(problems), exit_code=3 if policy_only else 2)
    plan = BatchPlan(items)
    for item in items:
        total = plan.totals.setdefault(item.route, RouteTotal())
        estimate = item.estimate
        total.jobs += 1
        if estimate is not None:
            total.low = money.total([total.low, estimate.low])
            total.expected = money.total([total.expected, estimate.amount])
            total.high = money.total([total.high, estimate.high if item.high is None else item.high])
            total.expected_seconds += estimate.expected_wall_seconds or 0.0
    if budget is not None and money.exceeds(plan.high, budget):
        raise BudgetExceeded(
            f"the batch may cost up to ${plan.high:.4f} (expected ${plan.expected:.4f}, {len(items)} jobs), "
            f"over the budget of ${budget:.4f}; nothing was run",
            amount=plan.high,
            cap=budget,
        )
    return plan


def concurrency_limits(client: BatchClient, plan: BatchPlan, given: Mapping[str, int] | None) -> dict[str, int]:
    """Per-route limits: the route's declared default, overridden by ``given`` (``--concurrency ROUTE=N``)."""
    limits: dict[str, int] = {}
    for name in plan.totals:
        limits[name] = max(1, int(client.route(name).info().default_concurrency))
    for name, value in (given or {}).items():
        if value < 1:
            raise ManifestError([(0, f"--concurrency {name}={value}: must be at least 1")])
        limits[name] = value
    return limits


def parse_concurrency(values: Sequence[str]) -> dict[str, int]:
    """``["fal=8", "replicate=2"]`` as a dict; a malformed value is a usage error naming it."""
    limits: dict[str, int] = {}
    for value in values:
        name, _, number = value.partition("=")
        try:
            limit = int(number)
        except ValueError:
            limit = 0
        if not name.strip() or limit < 1:
            raise InvalidParameter(
                "--concurrency",
                f"{value!r} is not ROUTE=N (N whole jobs at once, at least 1), e.g. --concurrency fal=4",
            ) from None
        limits[name.strip()] = limit
    return limits
