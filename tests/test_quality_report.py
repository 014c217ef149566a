"""The report over several face tracks: the weighted summary, the official average beside it, the verdict."""

from __future__ import annotations

import pytest

pytest.importorskip("numpy")

from latentsync_routes.quality.evaluate import MAX_OFFSET, MIN_CONFIDENCE, TrackScore, _summarise, verdict  # noqa: E402


def track(number: int, windows: int, offset: int, lse_c: float, lse_d: float) -> TrackScore:
    return TrackScore(track=number, first_frame=0, frames=windows + 5, start_s=0.0, end_s=(windows + 5) / 25,
                      windows=windows, av_offset=offset, lse_d=lse_d, lse_c=lse_c, face_size=150.0)  # fmt: skip


def test_summary_weighs_tracks_by_windows_and_the_official_average_does_not() -> None:
    report = _summarise([track(0, 300, 2, 8.0, 6.0), track(1, 100, -3, 4.0, 9.0)], 500, {})
    assert report.lse_c == pytest.approx((300 * 8.0 + 100 * 4.0) / 400)
    assert report.lse_d == pytest.approx((300 * 6.0 + 100 * 9.0) / 400)
    assert report.av_offset == 2  # the longest track's
    assert report.official_lse_c == pytest.approx(6.0)  # unweighted
    assert report.official_av_offset == 0  # int(fmean([2, -3])) = int(-0.5): truncated toward zero
    data = report.to_dict()
    assert data["summary"]["official_average"]["lse_c"] == pytest.approx(6.0)
    assert [t["track"] for t in data["tracks"]] == [0, 1] and data["frames"] == 500
    assert data["thresholds"] == {"min_lse_c": 3.0, "max_abs_offset": 6, "source": data["thresholds"]["source"]}
    assert "preprocess/sync_av.py" in data["thresholds"]["source"]


@pytest.mark.parametrize(("lse_c", "offset", "passed", "words"), [
    (MIN_CONFIDENCE, MAX_OFFSET, True, ["in sync", "LSE-C 3.00 >= 3", "+6"]),
    (2.99, 0, False, ["out of sync", "LSE-C 2.99 < 3"]),
    (7.5, -MAX_OFFSET - 1, False, ["out of sync", "offset -7 frames beyond +-6"]),
    (1.0, 9, False, ["LSE-C 1.00 < 3 and offset +9"]),
])  # fmt: skip
def test_verdict_boundaries_and_its_cited_source(lse_c: float, offset: int, passed: bool, words: list[str]) -> None:
    ok, line = verdict(lse_c, offset)
    assert ok is passed and "\n" not in line
    for word in words + ["bytedance/LatentSync@a229c39 preprocess/sync_av.py"]:
        assert word in line, line
