"""A newcomer's first hour: every dead end says what to install or choose, in one line, with exit 2.

The commands run as a person runs them: the console script in a clean environment, and, for a machine
without the optional extras, with torch, huggingface_hub, ray and MediaPipe made unimportable.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.cli_helpers import clean_env, run_cli
from tests.mediafactory import make_video, make_wav

BLOCK_EXTRAS = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'numpy', 'diffusers', 'cv2', 'mediapipe', 'huggingface_hub', 'ray'):
            raise ModuleNotFoundError(name)
        return None
sys.meta_path.insert(0, Block())
sys.argv = ['latentsync-routes', *sys.argv[1:]]
from latentsync_routes.cli import main
main()
"""


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("first")
    return {
        "clip": make_video(root / "clip.mp4", 2.0, with_audio=True),
        "voice": make_wav(root / "voice.wav", 30.0),
        "root": root,
    }


def _bare(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI on a machine with none of the optional extras (the quick start's `[fal]` install)."""
    return subprocess.run(
        [sys.executable, "-c", BLOCK_EXTRAS, *args],
        capture_output=True,
        text=True,
        env=clean_env(home, env),
        timeout=120,
    )


def _one_line(text: str) -> str:
    return " ".join(text.split())  # rich wraps long lines at the terminal's width


DEADLINE_ON = {"LATENTSYNC_ROUTES_POLICY__DEADLINE_CHECK": "true"}


def test_run_on_the_default_route_without_torch_says_what_to_install(media: dict[str, Path], tmp_path: Path) -> None:
    done = _bare(
        tmp_path,
        "run",
        str(media["clip"]),
        str(media["voice"]),
        "-o",
        str(tmp_path / "out.mp4"),
        "--consent",
        "test",
        env=DEADLINE_ON,
    )
    assert done.returncode == 2, done.stderr
    said = _one_line(done.stderr)
    assert "pip install 'latentsync-routes[local]'" in said and "--route" in said
    assert "deadline" not in said and "Traceback" not in said


def test_check_shows_an_availability_stop_and_does_not_judge_the_deadline(
    media: dict[str, Path], tmp_path: Path
) -> None:
    done = _bare(
        tmp_path, "check", str(media["clip"]), str(media["voice"]), "--route", "local", "--json", env=DEADLINE_ON
    )
    assert done.returncode == 2, done.stderr
    rows = json.loads(done.stdout)
    assert rows[0]["check"] == "availability" and rows[0]["outcome"] == "STOP"
    assert "pip install 'latentsync-routes[local]'" in rows[0]["reason"]
    deadline = next(r for r in rows if r["check"] == "deadline")
    assert deadline["passed"] and deadline["outcome"] == "skipped"
    assert [r["check"] for r in rows if not r["passed"]] == ["availability"]


def test_download_without_huggingface_hub_is_exit_2_with_the_install_line(tmp_path: Path) -> None:
    done = _bare(tmp_path, "download", "--version", "1.5")
    assert done.returncode == 2, done.stderr
    said = _one_line(done.stderr)
    assert "pip install 'latentsync-routes[local]'" in said and "huggingface_hub" in said
    assert "ModuleNotFoundError" not in said and "Traceback" not in said


def _manifest(media: dict[str, Path], folder: Path) -> Path:
    manifest = folder / "jobs.csv"
    manifest.write_text(f"video,audio,output\n{media['clip']},{media['voice']},{folder / 'o.mp4'}\n")
    return manifest


def test_ray_executor_without_ray_is_refused_with_the_install_line(media: dict[str, Path], tmp_path: Path) -> None:
    done = _bare(tmp_path, "batch", str(_manifest(media, tmp_path)), "--route", "fal", "--executor", "ray")
    assert done.returncode == 2, done.stderr
    assert "pip install 'latentsync-routes[ray]'" in _one_line(done.stderr)
    assert not (tmp_path / "o.mp4").exists()


def test_ray_executor_without_ray_is_refused_in_python_too(monkeypatch: pytest.MonkeyPatch) -> None:
    from latentsync_routes.batch import runner
    from latentsync_routes.errors import ConfigurationError
    from latentsync_routes.routes import base

    monkeypatch.setattr(base, "module_available", lambda name: name != "ray")
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as on a machine without it
    with pytest.raises(ConfigurationError, match=r"latentsync-routes\[ray\]"):
        runner.make_executor("ray")


@pytest.mark.parametrize("value", ["fal=abc", "fal=0", "=3", "fal"])
def test_a_bad_concurrency_is_a_usage_error_naming_the_option(
    value: str, media: dict[str, Path], tmp_path: Path
) -> None:
    done = run_cli(
        "batch", str(_manifest(media, tmp_path)), "--route", "fal", "--concurrency", value, "--json", home=tmp_path
    )
    assert done.returncode == 2, done.stderr
    error = json.loads(done.stdout)["error"]
    assert error["type"] == "InvalidParameter" and "--concurrency" in error["message"] and value in error["message"]
    assert "line 0" not in error["message"]


def test_an_unknown_default_route_is_refused_naming_its_variable(tmp_path: Path) -> None:
    done = run_cli("routes", "--json", home=tmp_path, env={"LATENTSYNC_ROUTES_ROUTE": "nosuch"})
    assert done.returncode == 2, done.stdout
    error = json.loads(done.stdout)["error"]
    assert error["type"] == "UnknownRoute" and "LATENTSYNC_ROUTES_ROUTE" in error["message"]
    assert "'nosuch'" in error["message"] and "fal" in error["message"]
    assert run_cli("routes", "--json", home=tmp_path, env={"LATENTSYNC_ROUTES_ROUTE": "cheapest"}).returncode == 0


def test_an_unknown_setting_variable_is_warned_about_naming_the_closest(tmp_path: Path) -> None:
    done = run_cli("routes", "--json", home=tmp_path, env={"LATENTSYNC_ROUTES_ROUT": "fal"})
    assert done.returncode == 0, done.stderr
    json.loads(done.stdout)  # the warning goes to stderr, never into the JSON
    said = _one_line(done.stderr)
    assert "LATENTSYNC_ROUTES_ROUT is not a latentsync-routes setting" in said
    assert "did you mean LATENTSYNC_ROUTES_ROUTE?" in said
    assert said.count("LATENTSYNC_ROUTES_ROUT is not") == 1  # once per process, however many settings load
    # a misspelt policy key is refused outright (policy settings forbid extra keys), and the warning says which
    nested = run_cli("routes", "--json", home=tmp_path, env={"LATENTSYNC_ROUTES_POLICY__FACE_CHEK": "false"})
    assert nested.returncode == 2
    assert "did you mean LATENTSYNC_ROUTES_POLICY__FACE_CHECK?" in _one_line(nested.stderr)


def test_every_variable_the_package_names_is_a_known_one() -> None:
    import re

    from latentsync_routes.config import known_names
    from latentsync_routes.env_check import unknown

    root = Path(__file__).resolve().parents[1]
    named = set()
    for path in [*root.joinpath("latentsync_routes").rglob("*.py"), root / "README.md", *root.glob("docs/*.md")]:
        named |= set(re.findall(r"LATENTSYNC_ROUTES_[A-Z0-9]+(?:_[A-Z0-9]+)*(?:__[A-Z0-9_]+)?", path.read_text()))
    named -= {"LATENTSYNC_ROUTES_X", "LATENTSYNC_ROUTES_ROUT"}  # a placeholder and the typo env_check.py shows
    # docs/quality.md names it under "Not yet in the product": until it is read, setting it is warned about
    named -= {"LATENTSYNC_ROUTES_MIN_SYNC_CONFIDENCE"}
    known = known_names()
    assert {
        "LATENTSYNC_ROUTES_ROUTE",
        "LATENTSYNC_ROUTES_POLICY__FACE_CHECK",
        "LATENTSYNC_ROUTES_FAL_BASE_URL",
    } <= known
    assert [name for name, _ in unknown(dict.fromkeys(named, ""), known)] == []


def test_demo_removes_its_folder_unless_kept(tmp_path: Path) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {"TMPDIR": str(temp)}
    done = run_cli("demo", "--json", home=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["kept"] is False and not Path(summary["folder"]).exists()
    assert list(temp.glob("latentsync-demo-*")) == []
    kept = run_cli("demo", "--keep", "--json", home=tmp_path, env=env)
    assert kept.returncode == 0, kept.stderr
    folder = Path(json.loads(kept.stdout)["folder"])
    assert folder.parent == temp and (folder / "out.mp4").is_file()
    assert tempfile.gettempdir() != str(temp)  # this process's own temp folder was never touched


def test_a_face_check_that_did_not_look_is_skipped_and_the_policy_can_require_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from latentsync_routes import face_check
    from latentsync_routes.config import PolicySettings
    from latentsync_routes.routes.fal import route as fal
    from latentsync_routes.routes.local import route as local
    from latentsync_routes.types import MediaSource

    monkeypatch.setattr(face_check, "mediapipe_installed", lambda: False)
    clip = MediaSource.of(b"not decoded: the check does not run")
    row = face_check.face_row(fal.INFO, PolicySettings(), clip)
    assert (row.passed, row.skipped, row.outcome) == (True, True, "skipped")
    assert "MediaPipe is not installed" in row.reason and "skipped" not in row.reason  # said once, by the outcome
    required = PolicySettings(require_face_check=True)
    row = face_check.face_row(fal.INFO, required, clip)
    assert row.outcome == "STOP" and "require_face_check" in row.reason
    monkeypatch.setattr(face_check, "mediapipe_installed", lambda: True)
    url = face_check.face_row(fal.INFO, required, MediaSource.of("https://example.com/clip.mp4"))
    assert url.outcome == "STOP" and "URL" in url.reason
    off = face_check.face_row(fal.INFO, required, clip, enabled=False)
    assert off.outcome == "STOP"
    nothing_uploaded = face_check.face_row(local.INFO, required, clip)
    assert nothing_uploaded.outcome == "skipped"  # the local route uploads nothing: no provider to bill it


def test_skipped_is_shown_as_skipped_on_the_page_and_in_the_table(media: dict[str, Path], tmp_path: Path) -> None:
    from latentsync_routes.policy import CheckResult
    from latentsync_routes.ui.state import check_rows

    rows = check_rows([CheckResult(check="face", passed=True, skipped=True, reason="MediaPipe is not installed")])
    assert rows[0].outcome == "skipped"
    done = _bare(
        tmp_path,
        "check",
        str(media["clip"]),
        str(media["voice"]),
        "--route",
        "fal",
        "--consent",
        "test",
        "--face-check",
        env={"COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stderr
    face = next(line for line in done.stdout.splitlines() if " face " in f" {line} ")
    assert "skipped" in face and "pass" not in face


def test_mediapipe_log_lines_never_reach_the_terminal() -> None:
    pytest.importorskip("mediapipe.python.solutions.face_detection", reason="the faces extra (mediapipe)")
    code = (
        "import sys, numpy as np\n"
        "from latentsync_routes.face_check import count_faces\n"
        "print(count_faces([np.zeros((64, 64, 3), np.uint8)] * 2))\n"
        "print('still heard', file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0"
    assert done.stderr.strip() == "still heard"  # no TensorFlow Lite, absl or glog lines; stderr restored


def test_the_page_speaks_to_people(tmp_path: Path) -> None:
    from latentsync_routes.config import PolicySettings
    from latentsync_routes.policy import evaluate
    from latentsync_routes.routes.fal import route as fal
    from latentsync_routes.ui import render, state
    from latentsync_routes.ui.history import _deleted_note

    row = next(r for r in evaluate(fal.INFO, PolicySettings(), consent=None) if r.check == "consent")
    assert "consent='...'" in row.reason  # the Python and CLI words the library gives ...
    said = render.for_people(row.check, row.reason)
    assert said.startswith("Do the people in this video agree") and said.rstrip().endswith(".")
    assert "consent='" not in said and "--consent" not in said and fal.INFO.upload_destination in said
    assert render.for_people("retention", "kept 7 days") == "kept 7 days"  # other reasons are said as they are
    gate = render.gate_html(state.Gate(False, "fal", f"STOP on fal: consent: {row.reason}; face: no face"))
    assert "--consent" not in gate and "Do the people in this video agree" in gate and "face: no face" in gate
    view = state.RouteView("fal", fal.INFO.upload_destination)
    view.checks = [state.CheckRow("consent", "STOP", row.reason), state.CheckRow("face", "skipped", "no MediaPipe")]
    html = render.checklist_html(view)
    assert "--consent" not in html and 'class="ls-skipped"' in html
    assert _deleted_note([]) == ""
    assert _deleted_note(["https://v3.fal.media/files/x.mp4"]) == " · uploads removed from the provider"
    assert _deleted_note(["local output /tmp/o.mp4", "https://x"]) == " · job deleted"
    upload = tmp_path / "gradio" / "My holiday clip.MP4"
    upload.parent.mkdir()
    upload.write_bytes(b"not a video")
    voice = make_wav(tmp_path / "gradio" / "voice take 2.wav", 1.0)
    inputs = state.stage(tmp_path / "home", str(upload), str(voice))
    assert inputs.video != str(upload)  # the page works on its own copy ...
    message = inputs.in_words(f"NotAMediaFile: {inputs.video} is not a video; {inputs.audio} fine")
    assert message == "NotAMediaFile: My holiday clip.MP4 is not a video; voice take 2.wav fine"  # ... named as given


def test_the_pages_buttons_are_enabled_only_when_they_do_something(tmp_path: Path) -> None:
    pytest.importorskip("gradio", reason="the ui extra")
    from latentsync_routes import LipSyncClient, Settings
    from latentsync_routes.ui.app import Page, build

    page = Page(LipSyncClient(settings=Settings(home=str(tmp_path))), served=tmp_path / "served")
    config = build(page, fakes=False).config
    components = {c["props"].get("elem_id"): c for c in config["components"] if c["props"].get("elem_id")}
    for elem_id in ("ls-run", "ls-cancel", "ls-resume", "ls-job-cancel", "ls-delete"):
        assert components[elem_id]["props"]["interactive"] is False, elem_id
    assert components["ls-cancel"]["props"]["variant"] != "stop"  # not red while nothing runs
    ids = {elem_id: c["id"] for elem_id, c in components.items()}
    turned_on = [
        d
        for d in config["dependencies"]
        if [ids["ls-run"], "click"] in [list(t) for t in d["targets"]] and d["outputs"] == [ids["ls-cancel"]]
    ]
    assert turned_on, "a click on Run enables Cancel"
    picked = [d for d in config["dependencies"] if [ids["ls-job"], "change"] in [list(t) for t in d["targets"]]]
    assert picked and set(picked[0]["outputs"]) == {ids["ls-resume"], ids["ls-job-cancel"], ids["ls-delete"]}


def test_routes_reads_at_80_columns(tmp_path: Path) -> None:
    from latentsync_routes.routes import REGISTRY

    shown = run_cli("routes", home=tmp_path, env={"COLUMNS": "80"})
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert all(len(line.rstrip()) <= 80 for line in lines)
    assert [line for line in lines if line.strip() in REGISTRY] == list(REGISTRY)  # a block per route, by name
    words = " ".join(shown.stdout.split())
    assert "failure billing" in words and "never charged" in words  # whole sentences, never cut to '…'
    assert "…" not in shown.stdout
