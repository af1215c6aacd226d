"""The audio data stage: folders and tables of clips, decoding and resampling, grouped splits, and the
gate's audio rules. Clips are synthesised (sines written by soundfile; spoken words by espeak-ng where
Debian's package is installed, as `make test` does)."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf

from danlu.data import DataConfig, QualityConfig, check_quality, load_splits
from danlu.data.audio import clip_facts, decode, load_audio, resample
from danlu.errors import DataError


def tone(path, freq=440.0, seconds=0.3, rate=8000, amplitude=0.4, channels=1, subtype="PCM_16"):
    t = np.arange(int(seconds * rate)) / rate
    wave = amplitude * np.sin(2 * np.pi * freq * t)
    sf.write(path, np.stack([wave] * channels, axis=1) if channels > 1 else wave, rate, subtype=subtype)
    return path


def class_folder(root, per_class=4):
    for label, freq in (("low", 300.0), ("high", 1500.0)):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            tone(root / label / f"{i}.wav", freq * (1 + 0.01 * i), seconds=0.2 + 0.05 * i)
    return root


def splits_of(tmp_path, roles, **data):
    return load_splits(DataConfig(**data), roles, tmp_path)


def test_a_folder_of_class_folders_reads_as_audio_and_label(tmp_path):
    class_folder(tmp_path / "clips")
    (tmp_path / "clips" / "low" / "notes.txt").write_text("not a clip")
    frame = splits_of(tmp_path, ["audio", "label"], source="clips", split={"test": 0, "validation": 0}).frames["train"]
    assert sorted(frame["label"].unique()) == ["high", "low"] and len(frame) == 8
    assert all(p.endswith(".wav") for p in frame["audio"])


def test_clips_with_a_metadata_table_beside_them_read_with_their_transcripts(tmp_path):
    root = tmp_path / "clips"
    root.mkdir()
    for name in ("a.wav", "b.flac"):
        tone(root / name)
    (root / "metadata.csv").write_text("file_name,transcript\na.wav,hello\nb.flac,good bye\n")
    frame = splits_of(tmp_path, ["audio", "transcript"], source="clips",
                      split={"test": 0, "validation": 0}).frames["train"]
    assert frame["transcript"].tolist() == ["hello", "good bye"]
    assert frame["audio"].tolist() == [str(root / "a.wav"), str(root / "b.flac")]
    assert frame["_row"].tolist() == [2, 3]


def test_an_audio_file_with_no_transcript_is_named(tmp_path):
    root = tmp_path / "clips"
    root.mkdir()
    tone(root / "a.wav")
    tone(root / "stray.wav")
    (root / "metadata.csv").write_text("file_name,transcript\na.wav,hello\n")
    with pytest.raises(DataError, match=r"stray\.wav: an audio file with no transcript"):
        splits_of(tmp_path, ["audio", "transcript"], source="clips")


def test_paths_in_a_csv_are_resolved_beside_it(tmp_path):
    (tmp_path / "audio").mkdir()
    tone(tmp_path / "audio" / "x.wav")
    (tmp_path / "list.csv").write_text("path,transcript\naudio/x.wav,one\n")
    frame = splits_of(tmp_path, ["audio", "transcript"], source="list.csv", columns={"audio": "path"},
                      split={"test": 0, "validation": 0}).frames["train"]
    assert frame["audio"].iloc[0] == str(tmp_path / "audio" / "x.wav")


def test_decoding_makes_mono_and_resampling_keeps_the_pitch(tmp_path):
    path = tone(tmp_path / "stereo.wav", freq=500.0, seconds=1.0, rate=8000, channels=2)
    samples, rate = decode(str(path))
    assert samples.shape == (8000, 2) and rate == 8000
    wave = load_audio(str(path), 16_000)
    assert wave.shape == (16_000,) and wave.dtype == np.float32
    peak_hz = np.argmax(np.abs(np.fft.rfft(wave))) * 16_000 / len(wave)
    assert abs(peak_hz - 500.0) <= 2.0
    assert resample(wave, 16_000, 16_000) is not None and len(resample(wave, 16_000, 8_000)) == 8_000


@pytest.mark.parametrize("fmt,subtype", [("flac", "PCM_16"), ("ogg", "VORBIS"), ("mp3", "MPEG_LAYER_III")])
def test_flac_ogg_and_mp3_decode(tmp_path, fmt, subtype):
    if fmt.upper() not in sf.available_formats():
        pytest.skip(f"this libsndfile ({sf.__libsndfile_version__}) has no {fmt} support")
    path = tone(tmp_path / f"x.{fmt}", seconds=0.5, subtype=subtype)
    assert abs(len(load_audio(str(path), 8000)) - 4000) < 1200  # mp3 pads its frames


@pytest.mark.parametrize("content,why", [
    (b"", "the file is empty"),
    (b"hello, I am a text file\n" * 20, "cannot be read as audio"),
    (None, "cannot be read as audio"),  # a wav cut off inside its header
])
def test_bad_files_are_named_with_what_is_wrong(tmp_path, content, why):
    path = tmp_path / "bad.wav"
    if content is None:
        tone(path)
        content = path.read_bytes()[:30]
    path.write_bytes(content)
    with pytest.raises(DataError, match=rf"bad\.wav: {why}"):
        decode(str(path))
    facts, error = clip_facts(str(path))
    assert facts is None and why in error


def test_the_gate_drops_unreadable_clips_and_names_the_first(tmp_path):
    class_folder(tmp_path / "clips")
    (tmp_path / "clips" / "low" / "9.wav").write_text("not audio")
    splits = splits_of(tmp_path, ["audio", "label"], source="clips", split={"test": 0, "validation": 0})
    report = check_quality(splits, QualityConfig(), ["audio", "label"], classification=True)
    rule = next(r for r in report.rules if r.name == "unreadable")
    assert not rule.passed and rule.count == 1 and "9.wav: cannot be read as audio" in rule.message
    assert len(splits.frames["train"]) == 8


def test_the_gate_reports_durations_rates_silence_and_duplicates(tmp_path):
    root = class_folder(tmp_path / "clips")
    tone(root / "low" / "quiet.wav", amplitude=0.0005)
    shutil.copy(root / "high" / "0.wav", root / "high" / "copy.wav")
    tone(root / "high" / "long.wav", seconds=3.0, rate=16000)
    splits = splits_of(tmp_path, ["audio", "label"], source="clips", split={"test": 0, "validation": 0})
    report = check_quality(splits, QualityConfig(max_seconds=2.0, max_duplicates=0.5), ["audio", "label"],
                           classification=True)
    rules = {r.name: r for r in report.rules}
    assert not rules["silent"].passed and rules["silent"].count == 1
    assert not rules["duration"].passed and rules["duration"].count == 1 and "3.00 s" in rules["duration"].message
    assert "8,000 Hz (10)" in rules["audio_format"].message and "16,000 Hz (1)" in rules["audio_format"].message
    assert rules["duplicates"].count == 1  # the copy: the same samples


def test_held_out_transcripts_with_unseen_characters_are_reported(tmp_path):
    for name in ("a", "b", "c"):
        tone(tmp_path / f"{name}.wav", freq=300 + 100 * ord(name))
    (tmp_path / "t.csv").write_text("audio,transcript,split\na.wav,abc,train\nb.wav,cab,train\nc.wav,abz,test\n")
    splits = splits_of(tmp_path, ["audio", "transcript"], source="t.csv", split_column="split")
    rules = {r.name: r for r in check_quality(splits, QualityConfig(), ["audio", "transcript"], False).rules}
    assert not rules["transcript_chars"].passed and "'z'" in rules["transcript_chars"].message


def speakers_table(tmp_path, speakers=("ann", "bob", "cid", "dan"), per=5):
    rows = ["audio,label,speaker"]
    for s, speaker in enumerate(speakers):
        for i in range(per):
            name = f"{speaker}_{i}.wav"
            tone(tmp_path / name, freq=200 + 40 * s + 7 * i)
            rows.append(f"{name},{i % 2},{speaker}")
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")


def test_a_grouped_split_keeps_each_speaker_on_one_side(tmp_path):
    speakers_table(tmp_path)
    splits = splits_of(tmp_path, ["audio", "label"], source="t.csv",
                       split={"group": "speaker", "test": 1, "validation": 1, "seed": 3})
    sides = {name: set(frame["_group"]) for name, frame in splits.frames.items()}
    assert len(sides["test"]) == 1 and len(sides["validation"]) == 1 and len(sides["train"]) == 2
    assert not (sides["train"] & sides["test"]) and not (sides["train"] & sides["validation"])
    assert any("test: the speaker" in note and "whole groups" in note for note in splits.notes)
    rules = {r.name: r for r in check_quality(splits, QualityConfig(max_duplicates=1), ["audio", "label"], True).rules}
    assert rules["group_leakage"].passed


def test_given_splits_that_share_a_speaker_fail_the_group_rule(tmp_path):
    speakers_table(tmp_path, speakers=("ann", "bob"))
    text = (tmp_path / "t.csv").read_text().splitlines()
    text = [text[0] + ",split"] + [line + (",test" if line.endswith("bob") or line.endswith("ann_4.wav,0,ann") else ",train")
                                   for line in text[1:]]
    (tmp_path / "t.csv").write_text("\n".join(text) + "\n")
    splits = splits_of(tmp_path, ["audio", "label"], source="t.csv", split_column="split",
                       split={"group": "speaker", "validation": 0})
    rules = {r.name: r for r in check_quality(splits, QualityConfig(max_duplicates=1), ["audio", "label"], True).rules}
    assert not rules["group_leakage"].passed and "ann" in rules["group_leakage"].message


def test_a_missing_group_column_is_named(tmp_path):
    speakers_table(tmp_path)
    with pytest.raises(DataError, match=r"no column 'speakr' \(data.split.group\).*did you mean 'speaker'"):
        splits_of(tmp_path, ["audio", "label"], source="t.csv", split={"group": "speakr"})


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng (Debian package espeak-ng) is not installed")
def test_spoken_words_from_espeak_decode_with_speech_like_facts(tmp_path):
    path = tmp_path / "seven.wav"
    subprocess.run(["espeak-ng", "-w", str(path), "seven"], check=True, capture_output=True)
    facts, error = clip_facts(str(path))
    assert error is None and 0.2 < facts.seconds < 2.0 and facts.sample_rate == 22050 and facts.channels == 1
    assert facts.peak_dbfs > -40  # speech, not silence
