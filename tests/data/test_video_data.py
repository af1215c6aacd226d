"""The video data stage: folders of clips (video files or folders of frames), tables of clip paths, uniform
frame sampling, and the gate's video rules (a corrupt clip named, frame counts and durations, duplicates by
the decoded frames). Clips are written by PyAV (MPEG-4 Part 2 in AVI, H.264 in MP4)."""

from __future__ import annotations

import shutil

import av
import numpy as np
import pytest
from PIL import Image

from danlu.data import DataConfig, QualityConfig, check_quality, enforce, load_splits
from danlu.data.sources import read_source
from danlu.data.video import clip_facts, decode, load_clip, sample_indices
from danlu.errors import DataError


def moving_square(direction: str, frames: int = 6, side: int = 32, shift: int = 0) -> np.ndarray:
    """(frames, side, side, 3) uint8: a white square sliding left or right."""
    out = np.zeros((frames, side, side, 3), dtype=np.uint8)
    for t in range(frames):
        col = 2 + 3 * t + shift if direction == "right" else side - 10 - 3 * t - shift
        out[t, 8:16, col:col + 8] = 255
    return out


def write_clip(path, frames: np.ndarray, codec: str = "mpeg4", fps: int = 12) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def class_folder(root, per_class: int = 3, suffix: str = ".avi", codec: str = "mpeg4"):
    for label in ("left", "right"):
        for i in range(per_class):
            write_clip(root / label / f"{i}{suffix}", moving_square(label, shift=i), codec)
    return root


def train_only(**data) -> dict:
    return {**data, "split": {"test": 0, "validation": 0}}


def test_a_folder_of_class_folders_of_clips_reads_as_video_and_label(tmp_path):
    class_folder(tmp_path / "clips")
    (tmp_path / "clips" / "left" / "notes.txt").write_text("not a clip")
    frame = load_splits(DataConfig(**train_only(source="clips")), ["video", "label"], tmp_path).frames["train"]
    assert sorted(frame["label"]) == ["left"] * 3 + ["right"] * 3
    assert all(p.endswith(".avi") for p in frame["video"])


def test_split_folders_of_class_folders_read_as_their_splits(tmp_path):
    class_folder(tmp_path / "clips" / "train", suffix=".mp4", codec="libx264")
    class_folder(tmp_path / "clips" / "test", per_class=1, suffix=".mp4", codec="libx264")
    got = read_source("clips", DataConfig(), tmp_path)
    assert set(got) == {"train", "test"} and len(got["train"]) == 6 and len(got["test"]) == 2


def test_an_image_folder_is_still_an_image_folder(image_folder, tmp_path):
    root = image_folder({"cat": 2, "dog": 2})
    frame = read_source(str(root), DataConfig(), tmp_path)
    assert "image" in frame and "video" not in frame


def test_a_folder_of_frame_images_is_one_clip_read_in_name_order(tmp_path):
    for label in ("left", "right"):
        for i in range(2):
            clip = tmp_path / "frames" / label / f"clip{i}"
            clip.mkdir(parents=True)
            for t, frame in enumerate(moving_square(label, shift=i)):
                Image.fromarray(frame).save(clip / f"{t:03d}.png")
    frame = load_splits(DataConfig(**train_only(source="frames")), ["video", "label"], tmp_path).frames["train"]
    assert len(frame) == 4 and sorted(set(frame["label"])) == ["left", "right"]
    frames, fps, codec = decode(frame["video"].iloc[0])
    np.testing.assert_array_equal(np.stack(frames), moving_square("left"))  # PNG is lossless, order kept
    assert (fps, codec) == (0.0, "images")


def test_a_csv_of_clip_paths_resolves_them_beside_the_csv(tmp_path):
    class_folder(tmp_path / "clips", per_class=2)
    (tmp_path / "clips" / "index.csv").write_text("clip,label\nleft/0.avi,left\nright/1.avi,right\n")
    frame = load_splits(DataConfig(**train_only(source="clips/index.csv", columns={"video": "clip"})),
                        ["video", "label"], tmp_path).frames["train"]
    assert frame["video"].tolist() == [str(tmp_path / "clips" / "left" / "0.avi"),
                                       str(tmp_path / "clips" / "right" / "1.avi")]


def test_frames_are_sampled_uniformly_and_resized():
    assert sample_indices(16, 4).tolist() == [2, 6, 10, 14]  # the centre of each quarter
    assert sample_indices(3, 6).tolist() == [0, 0, 1, 1, 2, 2]  # a short clip repeats frames
    clip = load_clip(moving_square("right", frames=8), 4, 16)
    assert clip.shape == (4, 16, 16, 3) and clip.dtype == np.uint8


def gate(tmp_path, source="clips", **quality):
    splits = load_splits(DataConfig(**train_only(source=source)), ["video", "label"], tmp_path)
    return splits, check_quality(splits, QualityConfig(**quality), ["video", "label"], classification=True)


def test_a_corrupt_video_is_dropped_and_ends_the_run_with_one_message_naming_it(tmp_path):
    class_folder(tmp_path / "clips")
    bad = tmp_path / "clips" / "left" / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    splits, report = gate(tmp_path)
    assert str(bad) not in set(splits.frames["train"]["video"])  # never trained on
    rule = next(r for r in report.rules if r.name == "unreadable")
    assert not rule.passed and rule.count == 1 and "broken.mp4" in rule.message
    with pytest.raises(DataError) as caught:
        enforce(report, "stop")
    assert str(caught.value).count("broken.mp4") == 1 and "cannot be read as video" in str(caught.value)


def test_decoding_a_corrupt_or_missing_clip_names_the_file(tmp_path):
    (tmp_path / "x.mp4").write_bytes(b"not a video at all")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(DataError, match=r"x\.mp4: cannot be read as video"):
        decode(str(tmp_path / "x.mp4"))
    with pytest.raises(DataError, match=r"empty\.mp4: the file is empty"):
        decode(str(tmp_path / "empty.mp4"))
    with pytest.raises(DataError, match=r"gone\.mp4: no such video file"):
        decode(str(tmp_path / "gone.mp4"))


def test_the_gate_reports_frame_counts_durations_and_formats(tmp_path):
    class_folder(tmp_path / "clips")
    write_clip(tmp_path / "clips" / "left" / "long.avi", np.concatenate([moving_square("left")] * 4), fps=12)
    _, report = gate(tmp_path, max_seconds=1.0)
    rules = {r.name: r for r in report.rules}
    assert "6 / 6 / 24" in rules["frames"].message
    assert not rules["duration"].passed and rules["duration"].count == 1  # 24 frames at 12 fps = 2 s
    assert "32x32" in rules["video_format"].message and "12 fps" in rules["video_format"].message
    assert "mpeg4" in rules["video_format"].message


def test_a_clip_copied_under_another_name_is_a_duplicate(tmp_path):
    class_folder(tmp_path / "clips")
    shutil.copy(tmp_path / "clips" / "left" / "0.avi", tmp_path / "clips" / "left" / "copy.avi")
    _, report = gate(tmp_path, max_duplicates=0.0)
    duplicates = next(r for r in report.rules if r.name == "duplicates")
    assert duplicates.count == 1 and not duplicates.passed


def test_facts_of_a_clip_in_two_containers_agree(tmp_path):
    frames = moving_square("right")
    write_clip(tmp_path / "a.avi", frames)
    write_clip(tmp_path / "b.mp4", frames, codec="libx264")
    a, b = clip_facts(str(tmp_path / "a.avi"))[0], clip_facts(str(tmp_path / "b.mp4"))[0]
    assert (a.frames, a.width, a.height, a.fps) == (b.frames, b.width, b.height, b.fps) == (6, 32, 32, 12.0)
    assert (a.codec, b.codec) == ("mpeg4", "h264")
    assert a.seconds == pytest.approx(0.5)
