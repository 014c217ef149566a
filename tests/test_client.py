from __future__ import annotations

from pathlib import Path

import pytest

from latentsync_routes import (
    BudgetExceeded,
    ConfigurationError,
    InvalidParameter,
    LipSyncClient,
    UnknownRoute,
    UnsupportedParameter,
    load_settings,
)
from latentsync_routes.routes.base import route_names
from latentsync_routes.testing import write_test_audio, write_test_video


@pytest.fixture
def media(tmp_path: Path) -> tuple[Path, Path]:
    return write_test_video(tmp_path / "clip.mp4", 1.0), write_test_audio(tmp_path / "voice.wav", 60.0)


def test_overrides_apply_on_top_of_given_settings(tmp_path: Path) -> None:
    client = LipSyncClient(route="replicate", budget_per_call=0.1, settings=load_settings(home=tmp_path))
    assert client.settings.route == "replicate"
    assert client.settings.budget_per_call == 0.1
    assert client.settings.home == tmp_path


def test_unsupported_parameter_refused_before_probing(tmp_path: Path) -> None:
    client = LipSyncClient(route="fal", settings=load_settings(home=tmp_path))
    # The inputs do not even exist: the parameter check must come first and name the parameter.
    with pytest.raises(UnsupportedParameter, match="inference_steps") as info:
        client.estimate(tmp_path / "absent.mp4", tmp_path / "absent.wav", inference_steps=30)
    assert info.value.parameter == "inference_steps" and info.value.route == "fal"
    with pytest.raises(UnsupportedParameter, match="loop_mode"):
        LipSyncClient(route="replicate", settings=load_settings(home=tmp_path)).estimate(
            tmp_path / "a.mp4", tmp_path / "a.wav", loop_mode="loop"
        )
    with pytest.raises(UnsupportedParameter, match="'style'"):
        client.estimate(tmp_path / "a.mp4", tmp_path / "a.wav", extras={"style": "x"})


def test_out_of_range_values(tmp_path: Path, media: tuple[Path, Path]) -> None:
    client = LipSyncClient(route="fal", settings=load_settings(home=tmp_path))
    with pytest.raises(InvalidParameter, match="above the maximum 2"):
        client.estimate(*media, guidance_scale=2.5)
    with pytest.raises(InvalidParameter, match="integer"):
        client.estimate(*media, seed=1.5)  # type: ignore[arg-type]
    assert client.estimate(*media, guidance_scale=1.5, seed=3, loop_mode="loop").amount == pytest.approx(0.30)


def test_budget_total_is_checked_before_any_job(tmp_path: Path, media: tuple[Path, Path]) -> None:
    client = LipSyncClient(
        route="fal", credentials={"fal": "k"}, budget_total=0.25, settings=load_settings(home=tmp_path)
    )
    with pytest.raises(BudgetExceeded, match=r"budget_total of \$0\.2500") as caught:
        client.run(*media, tmp_path / "out.mp4", consent="test", seed=1)
    assert caught.value.exit_code == 5 and client.journal.list() == []  # refused before the job was recorded


def test_route_errors(tmp_path: Path, media: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REPLICATE_API_TOKEN", raising=False)
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.null.Keyring")
    with pytest.raises(UnknownRoute, match=f"known routes: {', '.join(route_names())}"):
        LipSyncClient(route="nope", settings=load_settings(home=tmp_path)).route()
    client = LipSyncClient(route="replicate", settings=load_settings(home=tmp_path))
    with pytest.raises(ConfigurationError, match="REPLICATE_API_TOKEN"):
        client.run(*media, tmp_path / "out.mp4", consent="test")
    assert [info.name for info in client.routes()] == route_names()


def test_estimate_all_is_not_held_to_the_default_route_s_limits(
    tmp_path: Path, media: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default route's limit marks that route only; the others are priced as usual."""
    from latentsync_routes.routes.replicate import route as replicate

    monkeypatch.setattr(replicate, "INFO", replicate.INFO.model_copy(update={"max_audio_seconds": 30.0}))
    client = LipSyncClient(route="replicate", settings=load_settings(home=tmp_path))
    estimates = client.estimate_all(*media)  # 60 s of audio
    assert [e.route for e in estimates] == route_names()
    assert {e.route for e in estimates if e.refused} == {"replicate"}
    assert "takes at most 30 s" in (client.estimate(*media).refused or "")


def test_budget_total_counts_what_finished_jobs_cost(tmp_path: Path) -> None:
    from latentsync_routes.testing import FakeFal

    video = write_test_video(tmp_path / "clip.mp4", 1.0)
    audios = [write_test_audio(tmp_path / f"voice{i}.wav", 2.0, hz=300 + 50 * i) for i in range(3)]
    with FakeFal(expected_key="k", billable_units=40) as fal:
        settings = load_settings(home=tmp_path, route_settings={"fal": {"base_url": fal.url}}, poll_interval=0.01)
        client = LipSyncClient(
            route="fal", credentials={"fal": "k"}, consent="test", budget_total=0.45, settings=settings
        )
        for i in range(2):
            assert client.run(video, audios[i], tmp_path / f"out{i}.mp4").cost.actual == pytest.approx(0.20)
        with pytest.raises(BudgetExceeded, match=r"committed to \$0\.4000 of the budget_total of \$0\.4500"):
            client.run(video, audios[2], tmp_path / "out2.mp4")
        assert len(fal.jobs) == 2


@pytest.mark.parametrize(
    "cls_path",
    [
        "latentsync_routes.client.LipSyncClient",
        "latentsync_routes.async_client.AsyncLipSyncClient",
        "latentsync_routes.journal.Journal",
        "latentsync_routes.journal.Claim",
    ],
)
def test_every_public_method_says_what_it_does(cls_path: str) -> None:
    import importlib
    import inspect

    module, _, name = cls_path.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    missing = [
        attr
        for attr, value in vars(cls).items()
        if not attr.startswith("_")
        and (inspect.isfunction(value) or isinstance(value, property))
        and not (value.__doc__ or "").strip()
    ]
    assert missing == []
