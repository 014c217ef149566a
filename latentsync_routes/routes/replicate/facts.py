"""Replicate's behaviour this route relies on, each with its source and the day it was checked.

``documented=False`` marks our reading where Replicate's docs are silent; the fake (``fake.py``)
implements that cautious reading.
"""

from __future__ import annotations

from datetime import date

from ..kit import Fact

CHECKED = date(2026, 12, 2)
LIFECYCLE = "https://replicate.com/docs/topics/predictions/lifecycle"
MODEL = "https://replicate.com/bytedance/latentsync"
HTTP_API = "https://replicate.com/docs/reference/http"
CLIENT = "https://pypi.org/project/replicate/1.0.7/"

FILES = "https://sdks.replicate.com/resources/files"
FILES_CHECKED = date(2026, 12, 7)

WEBHOOKS = "https://replicate.com/docs/topics/webhooks/verify-webhook"
WEBHOOKS_CHECKED = date(2026, 12, 7)

FACTS: tuple[Fact, ...] = (
    Fact(
        "create",
        "POST /v1/predictions with {version, input} creates a prediction of a community model at a "
        "pinned version; no idempotency key is documented.",
        HTTP_API,
        CHECKED,
    ),
    Fact("auth", "Every call takes Authorization: Bearer <REPLICATE_API_TOKEN>.", HTTP_API, CHECKED),
    Fact(
        "version-schema",
        "A version's input schema is its OpenAPI Input (GET /v1/models/{owner}/{name}/versions/"
        "{id}); the January 2025 version takes guidance_scale 0-10 and seed, later ones add inference_steps "
        "20-50 with guidance_scale 1-3.",
        MODEL,
        CHECKED,
    ),
    Fact(
        "invalid-input",
        "An input outside the version's schema is refused at create with HTTP 422 and "
        "invalid_fields; no prediction is created.",
        HTTP_API,
        CHECKED,
    ),
    Fact(
        "model-failure",
        "A model failure is not an HTTP error: the prediction ends status failed with error and logs.",
        CLIENT,
        CHECKED,
    ),
    Fact(
        "price",
        "Public models bill active processing time on their hardware: gpu-l40s at $0.000975/s; the model "
        "page says runs typically complete within 133 seconds.",
        "https://replicate.com/pricing",
        date(2026, 11, 23),
    ),
    Fact(
        "predict-time",
        "metrics.predict_time on a prediction is the processing time billed.",
        "https://replicate.com/docs/topics/billing",
        CHECKED,
    ),
    Fact(
        "cancel-billed",
        "A canceled prediction is billed for the time it ran before it was canceled.",
        LIFECYCLE,
        CHECKED,
    ),
    Fact("aborted-free", "An aborted prediction (never started) is not charged.", LIFECYCLE, CHECKED),
    Fact(
        "failed-billing",
        "Whether a failed prediction is billed is not stated for public models; we read it as "
        "billed for its metrics.predict_time.",
        LIFECYCLE,
        CHECKED,
        documented=False,
    ),
    Fact(
        "data-retention",
        "Prediction inputs and outputs made through the API are removed one hour after the prediction ends.",
        "https://replicate.com/docs/topics/predictions/data-retention",
        CHECKED,
    ),
    Fact(
        "files-expire",
        "Uploaded files expire after 24 hours (expires_at in the files API answer).",
        "https://replicate.com/docs/topics/predictions/create-a-prediction#file-inputs",
        CHECKED,
    ),
    Fact(
        "files-metadata",
        "POST /v1/files (multipart: content, and metadata, any JSON, default {}) creates a file and "
        "answers it with its id, checksums, created_at, expires_at, metadata and urls.get; the replicate "
        "package's files.create(..., metadata=...) sends it.",
        FILES,
        FILES_CHECKED,
    ),
    Fact(
        "files-list",
        "GET /v1/files is a paginated list (results, next) of every file the token's account made, the "
        "most recent first, each with its metadata.",
        FILES,
        FILES_CHECKED,
    ),
    Fact(
        "files-delete",
        "DELETE /v1/files/{file_id} deletes a file; later requests for it answer 404.",
        FILES,
        FILES_CHECKED,
    ),
    Fact(
        "files-interrupted",
        "Whether a file whose upload was cut off after Replicate received it is listed is not documented: "
        "we read it as listed (it was made; only its answer was lost), and a run after a crash lists the "
        "files, deletes any carrying a tag the journal holds, and records it. A file not found is taken as "
        "never made; if it was, it expires after 24 hours (files-expire).",
        FILES,
        FILES_CHECKED,
        documented=False,
    ),
    Fact(
        "retry-after",
        "A 429 carries retry_after (seconds) in its body and Retry-After in its headers.",
        CLIENT,
        CHECKED,
    ),
    Fact(
        "listing",
        "GET /v1/predictions lists recent predictions, newest first, with their version and input "
        "(while the input is retained).",
        HTTP_API,
        CHECKED,
    ),
    Fact(
        "webhook",
        "A prediction created with webhook=URL and webhook_events_filter=[completed] is POSTed to URL "
        "when it ends, the body being the prediction (id, status, output, metrics); completed is a terminal "
        "state: succeeded, failed or canceled, so a canceled prediction is delivered too.",
        "https://replicate.com/docs/topics/webhooks",
        WEBHOOKS_CHECKED,
    ),
    Fact(
        "webhook-signature",
        "Each delivery carries webhook-id (the same when a delivery is retried), "
        "webhook-timestamp (seconds) and webhook-signature (space-separated v1,<base64> entries): HMAC-SHA256 over "
        "'{id}.{timestamp}.{body}' keyed with the base64 part of the account's whsec_ secret from GET "
        "/v1/webhooks/default/secret; check the timestamp against replays.",
        WEBHOOKS,
        WEBHOOKS_CHECKED,
    ),
)
