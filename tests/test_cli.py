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
        "run", str(files["clip"]), str(files["voice30"]), "-o", str(out), "--route", "fal",
        "--inference-steps", "30", "--consent", "test", "--json", home=tmp_path,
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
    assert infos["replicate"]["retention_days"] == pytest.approx(1 / 24)
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
        return subprocess.run([sys.executable, "-c", BLOCK_LOCAL_EXTRA, *args], capture_output=True, text=True,
                              env=clean_env(tmp_path), timeout=120)

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
    refused = without_local("run", str(files["clip"]), str(files["voice30"]), "-o", str(tmp_path / "o.mp4"),
                            "--route", "local")
    assert refused.returncode == 2
    assert "pip install 'latentsync-routes[local]'" in " ".join(refused.stderr.split())  # rich wraps lines


def test_human_output_shows_brackets_as_written(files: dict[str, Path], tmp_path: Path) -> None:
    """Rich markup must not eat '[...]' from messages, paths or consent texts."""
    done = cli("check", str(files["clip"]), str(files["voice30"]), "--route", "fal", "--consent", "release [signed]",
               home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "[signed]" in done.stdout
