"""Talking-face clips for the sync-quality tests: a real face (scikit-image's public-domain astronaut
photo) whose drawn mouth opens with the energy of a speech-like audio track, written as a real mp4."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

FPS = 25
RATE = 16_000
SIZE = 448  # the face is then ~130 px, over the official 100 px minimum
MOUTH = (183, 176)  # (x, y) of the mouth in the resized photo (MediaPipe's mouth keypoint)


def speech_like(seconds: float, seed: int) -> np.ndarray:
    """int16 mono 16 kHz: 3-6 syllables a second, each a harmonic voice at 100-160 Hz under a sine envelope."""
    rng = np.random.default_rng(seed)
    total = int(seconds * RATE)
    t = np.arange(total) / RATE
    envelope = np.zeros(total)
    start = rng.uniform(0.0, 0.1)
    while start < seconds:
        length = rng.uniform(0.12, 0.25)
        a, b = int(start * RATE), min(total, int((start + length) * RATE))
        envelope[a:b] = np.sin(np.pi * np.arange(b - a) / max(1, b - a)) * rng.uniform(0.6, 1.0)
        start += length + rng.uniform(0.05, 0.2)
    f0 = rng.uniform(100, 160)
    voice = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6.28)) / k for k in range(1, 16))
    signal = envelope * voice + 0.01 * rng.standard_normal(total)
    return np.asarray(np.clip(signal / np.max(np.abs(signal)) * 9000, -32768, 32767).astype(np.int16))


def frame_energy(audio: np.ndarray, frames: int) -> np.ndarray:
    """Per video frame RMS of the audio, scaled to 0..1."""
    per = RATE // FPS
    padded = np.zeros(frames * per)
    n = min(len(audio), len(padded))
    padded[:n] = audio[:n]
    rms = np.sqrt(np.mean(padded.reshape(frames, per) ** 2, axis=1))
    return np.asarray(rms / max(float(rms.max()), 1e-9))


def face_frames(openness: np.ndarray, seed: int = 0) -> np.ndarray:
    """``[T, SIZE, SIZE, 3]`` RGB: the astronaut, with a dark mouth opening by ``openness`` (0..1) per frame."""
    import cv2
    from skimage import data

    photo = cv2.resize(np.ascontiguousarray(data.astronaut()[:384, 64:448]), (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng(seed)
    frames = np.empty((len(openness), SIZE, SIZE, 3), np.uint8)
    for k, amount in enumerate(openness):
        image = photo.copy()
        x, y = MOUTH
        cv2.ellipse(image, (x, y), (20, int(3 + 13 * amount)), 0, 0, 360, (150, 70, 70), -1)  # lips
        cv2.ellipse(image, (x, y), (15, int(1 + 10 * amount)), 0, 0, 360, (35, 10, 15), -1)  # the opening
        if amount > 0.6:
            cv2.rectangle(
                image, (x - 10, y - int(10 * amount)), (x + 10, y - int(10 * amount) + 3), (230, 230, 225), -1
            )
        noise = rng.integers(-3, 4, image.shape)
        frames[k] = np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    return frames


def write_clip(path: Path, frames_rgb: np.ndarray, audio: np.ndarray | None) -> Path:
    """An H.264 mp4 at 25 fps, with the int16 audio as AAC at 16 kHz if given."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = frames_rgb.shape[2], frames_rgb.shape[1], "yuv420p"
        video.options = {"crf": "18"}
        sound = container.add_stream("aac", rate=RATE) if audio is not None else None
        for frame in frames_rgb:
            for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if sound is not None and audio is not None:
            chunk = 1024
            for start in range(0, len(audio), chunk):
                piece = audio[start : start + chunk].reshape(1, -1)
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(piece), format="s16", layout="mono")
                frame.sample_rate, frame.pts, frame.time_base = RATE, start, Fraction(1, RATE)
                for packet in sound.encode(frame):
                    container.mux(packet)
            for packet in sound.encode():
                container.mux(packet)
    return path


def write_wav(path: Path, audio: np.ndarray) -> Path:
    """A 16-bit PCM mono 16 kHz WAV."""
    import wave

    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(audio.astype("<i2").tobytes())
    return path


def talking_clip(path: Path, seconds: float = 3.0, *, seed: int = 1) -> tuple[Path, np.ndarray]:
    """A clip whose mouth follows its own audio; returns the path and the audio."""
    audio = speech_like(seconds, seed)
    frames = int(round(seconds * FPS))
    return write_clip(path, face_frames(frame_energy(audio, frames), seed), audio), audio
