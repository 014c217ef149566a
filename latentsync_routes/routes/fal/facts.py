"""fal's behaviour this route relies on, each with its source and the day it was checked.

``documented=False`` marks our reading where fal's docs are silent; the fake (``fake.py``) implements
that cautious reading.
"""

from __future__ import annotations

from datetime import date

from ..kit import Fact

CHECKED = date(2026, 12, 2)
CARD = "https://fal.ai/models/fal-ai/latentsync/llms.txt"
PRICING = "https://docs.fal.ai/documentation/model-apis/pricing"
FAQ = "https://docs.fal.ai/faq"
PAYLOADS = "https://docs.fal.ai/model-apis/payloads"
CLIENT = "https://pypi.org/project/fal-client/1.0.3/"

BILLING_EVENTS = "https://fal.ai/docs/platform-apis/v1/models/billing-events"
BILLING_EVENTS_CHECKED = date(2026, 12, 7)

WEBHOOKS = "https://docs.fal.ai/model-apis/model-endpoints/webhooks"
WEBHOOKS_CHECKED = date(2026, 12, 7)

FACTS: tuple[Fact, ...] = (
    Fact(
        "endpoint",
        "The endpoint is fal-ai/latentsync on the queue host https://queue.fal.run/; it takes "
        "video_url, audio_url, guidance_scale (1-2, default 1), seed and loop_mode (pingpong | loop).",
        CARD,
        date(2026, 11, 23),
    ),
    Fact("output", "The result is {video: {url, content_type, file_name, file_size}}.", CARD, date(2026, 11, 23)),
    Fact("auth", "Every call takes Authorization: Key <FAL_KEY>.", CLIENT, CHECKED),
    Fact(
        "client-retries-posts",
        "fal-client 1.0.3 retries a submit POST on 408/409/429, connection errors and "
        "read timeouts, which can create a second billed request; the route sends its own single POST.",
        CLIENT,
        CHECKED,
    ),
    Fact(
        "price", "$0.20 for videos up to 40 seconds, then $0.005 per second of output video.", CARD, date(2026, 11, 23)
    ),
    Fact(
        "billable-units",
        "The result fetch carries x-fal-billable-units; cost = units x the endpoint's unit "
        "price from GET /v1/models/pricing. What one unit is for fal-ai/latentsync is not documented.",
        "https://docs.fal.ai/platform-apis/v1/models/pricing",
        CHECKED,
        documented=False,
    ),
    Fact(
        "failure-billing",
        "You pay only for successful outputs; server errors (HTTP 5xx) and time spent waiting "
        "in the queue are never charged.",
        PRICING,
        CHECKED,
    ),
    Fact(
        "invalid-input-billing",
        "Client errors such as invalid inputs (HTTP 422) may be charged if a runner spent "
        "GPU time before the error was detected.",
        FAQ,
        CHECKED,
    ),
    Fact(
        "cancel",
        "A queued request is removed by a cancel; a running one gets a cancel signal and, without "
        "cancellation handling in the app, keeps consuming GPU time and may be billed.",
        "https://docs.fal.ai/documentation/development/handle-cancellations",
        CHECKED,
    ),
    Fact(
        "store-io", "X-Fal-Store-IO: 0 on a request makes fal store no request or response payloads.", PAYLOADS, CHECKED
    ),
    Fact(
        "lifecycle",
        "Generated media and uploads follow X-Fal-Object-Lifecycle-Preference sent on the request "
        "that made them; without it CDN media lasts at least 7 days on public URLs.",
        "https://docs.fal.ai/documentation/model-apis/media-expiration",
        CHECKED,
    ),
    Fact(
        "listing",
        "GET /v1/models/requests/by-endpoint (Authorization: Key) lists an endpoint's requests, "
        "filtered by start/end (ISO 8601; start defaults to 24 h ago), status and request_id, sorted by end time; "
        "each item has request_id, endpoint_id, sent_at, started_at, ended_at, status_code and duration; payloads "
        "(json_input) only with expand=payloads. Whether unfinished requests are listed is not documented: "
        "assume they are not, so a request is seen only once it has ended.",
        "https://docs.fal.ai/platform-apis/v1/models/requests/by-endpoint",
        CHECKED,
        documented=False,
    ),
    Fact(
        "listing-no-payloads",
        "A request sent with X-Fal-Store-IO: 0 has no stored payloads, so the listing "
        "has no json_input for it even with expand=payloads: an ambiguous submit is decided by sent_at, not input.",
        PAYLOADS,
        CHECKED,
    ),
    Fact(
        "request-timeout-504",
        "Past X-Fal-Request-Timeout before any runner starts, the request ends with 504 "
        "and X-Fal-Request-Timeout-Type: user; it never ran, so it is not billed (queue time is never charged).",
        "https://docs.fal.ai/documentation/model-apis/common-parameters",
        CHECKED,
    ),
    Fact(
        "longest-run",
        "fal documents no limit on how long a started fal-ai/latentsync request runs; we take one "
        "hour (LONGEST_RUN_S) as the bound after which a request sent in an ambiguous submit's window has surely "
        "ended and been listed. Our reading: a longer bound only keeps a submit undecided longer.",
        "https://docs.fal.ai/documentation/model-apis/common-parameters",
        CHECKED,
        documented=False,
    ),
    Fact(
        "platform-errors",
        "fal's Platform API answers errors as {error: {type, message}}.",
        "https://docs.fal.ai/platform-apis",
        CHECKED,
    ),
    Fact(
        "delete-payloads",
        "DELETE /v1/models/requests/{id}/payloads deletes a request's payloads and CDN output "
        "files (it needs an admin key).",
        "https://docs.fal.ai/platform-apis/v1/models/requests",
        CHECKED,
    ),
    Fact(
        "uploads-no-delete",
        "No fal call lists or deletes an uploaded input (Delete Request Payloads removes a request's "
        "payloads and output files only); an upload expires as the lifecycle sent with it asks. A file an "
        "interrupted upload made therefore cannot be found again: the record lists it as possibly left.",
        "https://docs.fal.ai/platform-apis/v1/models/requests",
        BILLING_EVENTS_CHECKED,
        documented=False,
    ),
    Fact(
        "request-timeout",
        "X-Fal-Request-Timeout bounds the time to start (queue wait, runner acquisition, "
        "retries; default: no timeout); a started request runs as long as it needs. The submit sends the job's "
        "remaining deadline.",
        "https://docs.fal.ai/documentation/model-apis/common-parameters",
        CHECKED,
    ),
    Fact(
        "server-retries",
        "fal re-queues a request whose runner fails with 503/504 or a connection error up to "
        "10 times; 500/502 and 4xx are not retried.",
        "https://docs.fal.ai/documentation/serverless/reliability",
        CHECKED,
    ),
    Fact(
        "billing-events",
        "GET /v1/models/billing-events (Authorization: Key with an admin API key) lists billing events, "
        "filtered by request_id and endpoint_id (1-50 each, comma-separated or repeated), start (default 24 h "
        "ago), end (exclusive), limit and cursor; a range is capped at 90 days. It answers {billing_events: "
        "[{request_id, endpoint_id, timestamp, output_units, unit_price, percent_discount, "
        "cost_estimate_nano_usd}], next_cursor, has_more}: the charge per request id, in integer nano-dollars.",
        BILLING_EVENTS,
        BILLING_EVENTS_CHECKED,
    ),
    Fact(
        "billing-events-refused",
        "What a key without the admin scope is answered is not documented: we read it as 401 or 403 with "
        "the Platform API's {error: {type, message}}; the route then keeps the charge it had (the price "
        "book's rule, the result's x-fal-billable-units, or the worst case) and records why.",
        BILLING_EVENTS,
        BILLING_EVENTS_CHECKED,
        documented=False,
    ),
    Fact(
        "billing-events-lag",
        "How soon a request's billing event is listed, and whether a request that cost nothing has one, is "
        "not documented: we assume an event may be missing right after the request ends and that an unbilled "
        "request has none, so a missing event never counts as $0 (the charge stays the estimate or worst case).",
        BILLING_EVENTS,
        BILLING_EVENTS_CHECKED,
        documented=False,
    ),
    Fact(
        "webhook",
        "A queue submit with ?fal_webhook=URL (fal-client: webhook_url) makes fal POST {request_id, "
        "gateway_request_id, status: OK | ERROR, payload, error} to URL when the request ends; a failed delivery is "
        "retried 10 times over 2 hours.",
        WEBHOOKS,
        WEBHOOKS_CHECKED,
    ),
    Fact(
        "webhook-signature",
        "Each delivery carries X-Fal-Webhook-Request-Id, -User-Id, -Timestamp and -Signature: "
        "a hex ED25519 signature over request id, user id, timestamp and the hex sha256 of the raw body, joined "
        "by newlines, by one of the keys at https://rest.alpha.fal.ai/.well-known/jwks.json (cache them at most "
        "24 h); the timestamp must be within 300 s of now.",
        WEBHOOKS,
        WEBHOOKS_CHECKED,
    ),
    Fact(
        "webhook-on-cancel",
        "fal's webhook page says a delivery is made once the request is done processing and is silent on "
        "cancels; we read a cancelled request (its result answers 499) as done, delivered with status ERROR. "
        "A receiver accepts it and changes nothing; the package never waits for it (a cancel is followed by polls).",
        WEBHOOKS,
        WEBHOOKS_CHECKED,
        documented=False,
    ),
)
