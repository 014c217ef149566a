from __future__ import annotations

import subprocess
import sys

import latentsync_routes

EXPECTED = {
    "AmbiguousSubmit",
    "AsyncLipSyncClient",
    "Attempt",
    "AuthenticationError",
    "BudgetExceeded",
    "CheckResult",
    "ConfigurationError",
    "Cost",
    "CostEstimate",
    "DeadlineExceeded",
    "DownloadError",
    "InputError",
    "InvalidParameter",
    "JobAlreadyFailed",
    "JobCancelled",
    "JobFailed",
    "JobStillRunning",
    "OutputGone",
    "JobRecord",
    "LatentSyncError",
    "LipSyncClient",
    "LipSyncRequest",
    "LipSyncResult",
    "LocalRouteError",
    "MediaError",
    "MediaInfo",
    "MediaLimitExceeded",
    "MediaNotFound",
    "MediaSource",
    "MissingCredentials",
    "MissingStream",
    "NotAMediaFile",
    "PolicySettings",
    "PolicyViolation",
    "ProviderError",
    "ProviderInputRejected",
    "Route",
    "RouteError",
    "RouteInfo",
    "RouteNotInstalled",
    "Settings",
    "UnknownRoute",
    "UnsupportedCodec",
    "UnsupportedParameter",
    "UnsupportedSource",
    "ZeroDuration",
    "load_settings",
    "output_duration",
    "output_frame_count",
    "probe",
    "BatchJob",
    "BatchReport",
    "ManifestError",
    "StopSignal",
    "SyncQuality",
    "SyncQualityFailed",
    "SyncWeightsMissing",
    "DummyCredentialRefused",
    "InvalidConsent",
    "AsyncJob",
    "Job",
    "WaitTimeout",
    "WebhookRejected",
    "WebhookReplayed",
    "WebhookSignatureInvalid",
    "WebhookStale",
}


def test_public_names_are_exactly_these() -> None:
    assert set(latentsync_routes.__all__) == EXPECTED
    for name in EXPECTED:
        assert getattr(latentsync_routes, name) is not None, name


def test_the_type_checking_imports_match_the_export_table() -> None:
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(latentsync_routes))
    guarded = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.If)
        for stmt in node.body
        if isinstance(stmt, ast.ImportFrom)
        for alias in stmt.names
    }
    assert guarded == set(latentsync_routes.__all__)


def test_unknown_attribute_raises() -> None:
    try:
        latentsync_routes.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_import_pulls_no_heavy_modules() -> None:
    code = (
        "import sys, latentsync_routes\n"
        "from latentsync_routes import LipSyncClient, probe\n"
        "LipSyncClient(route='fal').routes()\n"
        "heavy = [m for m in ('torch', 'fal_client', 'replicate', 'diffusers', 'numpy') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""


def test_errors_form_one_tree() -> None:
    for name in EXPECTED:
        value = getattr(latentsync_routes, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, latentsync_routes.LatentSyncError), name
