"""``LipSyncClient.handle_webhook``: a verified delivery carries its job on, once.

The delivery is verified first (:mod:`.webhooks`); a forged, tampered, stale or replayed one raises a
:class:`~.errors.WebhookRejected` and nothing is read from the journal or written anywhere. A verified one
names a provider job; its journalled job is then carried on exactly as a ``wait`` would: one poll (which
records how it ended and what it cost), and, when it succeeded, the output fetched under the job's claim. A
duplicate delivery, or one that races a ``wait`` in another process, finds the job fetched and changes
nothing. The delivery id is remembered only once its job is handled, so a delivery whose handling failed
(the output could not be fetched) is handled again when the provider retries it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from .errors import WebhookRejected, WebhookReplayed
from .handles import Job, JobClient, poll_once
from .job_runner import JobInputs, RunControls
from .journal import Journal
from .journal_db import connect
from .types import JobRecord
from .webhooks import SeenDeliveries, scheme_of

if TYPE_CHECKING:
    from collections.abc import Callable

    from .config import Credential
    from .webhooks import WebhookKeys

#: How long a delivery waits for another caller holding its job (a submit finishing, a wait fetching);
#: past it the delivery fails, and the provider's retry comes back to a job that caller has finished.
CLAIM_WAIT_S = 30.0


class WebhookClient(JobClient, Protocol):
    """What a delivery needs of the client (``LipSyncClient`` is one): what a :class:`Job` needs, plus the
    keys a delivery is verified with and the credential they are fetched with."""

    @property
    def webhook_keys(self) -> WebhookKeys: ...

    def credential(self, route: str) -> Credential | None: ...


def receive(client: WebhookClient, route: str, headers: Mapping[str, str], body: bytes) -> Job:
    scheme = scheme_of(route)
    delivery = scheme.verify(headers, body, client.webhook_keys(route), time.time())
    seen = SeenDeliveries(client.settings.journal_path.with_name("webhooks.sqlite3"))  # shared by every process
    if seen.seen(route, delivery.delivery_id):
        raise WebhookReplayed(
            f"{route} delivery {delivery.delivery_id[:24]} was handled already; nothing done again",
            route=route,
            request_id=delivery.request_id,
        )
    record = job_with_request(client.journal, route, delivery.request_id)
    if record is None:
        raise WebhookRejected(
            f"no job in the journal has {route} request {delivery.request_id!r}; nothing recorded",
            route=route,
            request_id=delivery.request_id,
        )
    if delivery.state != "running":
        carry_on(client, record.job_id)
    seen.remember(route, delivery.delivery_id)
    return Job(client, record.job_id)


def job_with_request(journal: Journal, route: str, request_id: str) -> JobRecord | None:
    """The newest job of ``route`` whose provider job is ``request_id`` (a delivery names only that)."""
    with connect(journal.path) as db:
        row = db.execute(
            "SELECT record FROM jobs WHERE route = ? AND provider_request_id = ? ORDER BY created_at DESC LIMIT 1",
            (route, request_id),
        ).fetchone()
    return JobRecord.model_validate_json(row[0]) if row else None


def carry_on(client: WebhookClient, job_id: str) -> None:
    """Poll the job once and fetch its output when it succeeded, as its claim's owner; a job already ended
    (fetched, failed, cancelled) is left as it is."""
    claim, record = client.journal.claim_job(job_id, wait_s=CLAIM_WAIT_S)
    try:
        if record.state == "submitted" and record.provider_request_id:
            poll_once(client, claim, record)
            record = client.journal.get(job_id) or record
        if record.state == "completed":
            output = Path(record.output_path or f"{record.job_id}.mp4")
            client.runner.drive(
                client.route(record.route),
                claim,
                record,
                JobInputs.from_record(record, need_inputs=False),
                output,
                deadline=client.settings.deadline_seconds,
                controls=RunControls(overwrite=True),
            )
    finally:
        claim.release()


def key_source(client: WebhookClient) -> Callable[[str], tuple[str | None, str | None]]:
    """Where a route's webhook keys are fetched from: its base URL override and its credential."""

    def source(route: str) -> tuple[str | None, str | None]:
        credential = client.credential(route)
        return client.settings.base_url_for(route), credential.value.get_secret_value() if credential else None

    return source
