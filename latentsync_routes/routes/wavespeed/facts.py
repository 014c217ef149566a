"""WaveSpeed's behaviour this route relies on, each with its source and the day it was checked.

``documented=False`` marks our reading where WaveSpeed's docs are silent; the fake (``fake.py``)
implements that cautious reading. The long-form research notes are in docs/wavespeed.md.
"""

from __future__ import annotations

from datetime import date

from ..kit import Fact

CHECKED = date(2026, 12, 1)
API_PAGE = "https://wavespeed.ai/docs/docs-api/bytedance/bytedance-latentsync"
PREDICTIONS = "https://wavespeed.ai/docs/what-are-predictions"
REFUNDS = "https://wavespeed.ai/docs/refund-policy"
SDK = "https://pypi.org/project/wavespeed/2.0.5/"
CLI = "https://github.com/WaveSpeedAI/wavespeed-cli"

UPLOADS = "https://wavespeed.ai/docs/upload-files"
UPLOADS_CHECKED = date(2026, 12, 7)

WEBHOOKS = "https://wavespeed.ai/docs/docs-api/verifying_webhook"
WEBHOOKS_CHECKED = date(2026, 12, 7)

FACTS: tuple[Fact, ...] = (
    Fact("base-url", "The API origin is https://api.wavespeed.ai; every path is under /api/v3/.", API_PAGE, CHECKED),
    Fact(
        "auth",
        "Every /api/v3 call takes Authorization: Bearer <WAVESPEED_API_KEY>; a bad key gets HTTP 401.",
        API_PAGE,
        CHECKED,
    ),
    Fact(
        "submit",
        "POST /api/v3/bytedance/latentsync with a JSON body of audio and video URLs creates a "
        "prediction; the answer is the {code, message, data} envelope with data.id.",
        API_PAGE,
        CHECKED,
    ),
    Fact("inputs", "The model takes audio and video only: no guidance scale, seed or loop mode.", API_PAGE, CHECKED),
    Fact(
        "unknown-fields",
        "A submit with fields the model does not declare is refused with HTTP 400 and no prediction is created.",
        API_PAGE,
        CHECKED,
        documented=False,
    ),
    Fact(
        "poll",
        "GET /api/v3/predictions/{id}/result answers the prediction; a failed task is still HTTP 200, "
        "with data.status failed, data.error and data.code.",
        "https://wavespeed.ai/docs/get-result",
        CHECKED,
    ),
    Fact(
        "statuses",
        "A prediction goes created -> processing -> completed or failed; the server also knows "
        "cancelled, timeout and deleted.",
        CLI,
        CHECKED,
    ),
    Fact(
        "upload",
        "Uploads go through the wavespeed package's ticket + PUT protocol (POST /api/v3/media/uploads, "
        "then a PUT without Authorization); the package never retries an upload.",
        SDK,
        CHECKED,
    ),
    Fact(
        "listing-no-inputs",
        "POST /api/v3/predictions lists the last 7 days of predictions (id, model, status, "
        "created_at), filtered by created_after/created_before, without their inputs: an ambiguous submit is "
        "decided by creation time, not identity.",
        "https://wavespeed.ai/docs/docs-common-api/predictions",
        CHECKED,
    ),
    Fact(
        "listing-bound",
        "Whether a prediction is listed from its creation is not documented, so no listing miss "
        "proves that a submit created nothing: such a submit stays ambiguous until the user decides.",
        "https://wavespeed.ai/docs/docs-common-api/predictions",
        CHECKED,
        documented=False,
    ),
    Fact(
        "delete-code",
        "The official clients judge a delete by the body's code == 200, not only the HTTP status.",
        CLI,
        date(2026, 12, 2),
    ),
    Fact(
        "runs-on",
        "With no cancel, a prediction stopped at our deadline or cancelled runs on and, if it "
        "completes, is billed; the job is left resumable after a deadline so its paid output is fetched.",
        REFUNDS,
        date(2026, 12, 2),
        documented=False,
    ),
    Fact(
        "no-cancel",
        "WaveSpeed publishes no cancel endpoint: a submitted prediction runs to its end.",
        API_PAGE,
        CHECKED,
    ),
    Fact(
        "delete",
        "POST /api/v3/predictions/delete with {ids: [...]} deletes predictions and their outputs "
        "(in the official CLI and desktop code, not in the docs).",
        CLI,
        CHECKED,
        documented=False,
    ),
    Fact("retention", "Uploads, predictions and their outputs are kept 7 days.", PREDICTIONS, CHECKED),
    Fact(
        "upload-no-delete",
        "The upload pages document POST /api/v3/media/upload/binary and POST /api/v3/upload, each answering "
        "the file's URL, and that uploads are deleted after 7 days; no call lists or deletes an upload. So a "
        "file an interrupted upload made cannot be found or deleted: the route journals each upload before "
        "it leaves and records a left-over one in not_deleted, to expire after 7 days.",
        UPLOADS,
        UPLOADS_CHECKED,
    ),
    Fact(
        "price",
        "$0.15 per 5 seconds of video generation; read as each started 5 s of output, at least one.",
        API_PAGE,
        CHECKED,
    ),
    Fact(
        "refunds",
        "Failed requests caused by the system, system errors and timeouts are refunded "
        "automatically within 3 hours; invalid parameters (codes 1400-1402) are not.",
        REFUNDS,
        date(2026, 12, 2),
    ),
    Fact(
        "refund-other-codes",
        "Failures with other codes are not covered by the refund policy: the route records "
        "them at their worst case (billed_unknown), and invalid-parameter failures at the job's price.",
        REFUNDS,
        date(2026, 12, 2),
        documented=False,
    ),
    Fact(
        "no-retry-after",
        "No Retry-After is documented; the package retries 429 and 5xx on result polls.",
        SDK,
        CHECKED,
        documented=False,
    ),
    Fact(
        "webhook",
        "A submit with the query parameter webhook=URL makes WaveSpeed POST {id, model, input, outputs, "
        "urls, status: completed | failed, created_at, error} to URL when the task ends. (Its submit page also "
        "names a webhook_url body field; the two webhook pages name the query parameter, which the route sends.)",
        "https://wavespeed.ai/docs/how-to-use-webhooks",
        WEBHOOKS_CHECKED,
    ),
    Fact(
        "webhook-signature",
        "WaveSpeed signs deliveries: webhook-id, webhook-timestamp and webhook-signature "
        "v3,<hex HMAC-SHA256 over '{id}.{timestamp}.{body}'>, keyed with the secret from GET /api/v3/webhook/secret "
        "without its whsec_ prefix and not base64-decoded; deliveries older than 300 s are to be refused. The "
        "secret's response shape is not shown: the route reads data.secret, else secret.",
        WEBHOOKS,
        WEBHOOKS_CHECKED,
        documented=False,
    ),
)
