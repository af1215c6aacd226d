"""`danlu check` / `danlu train` on bad audio: one clear message naming the file, and nothing else."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import yaml
from typer.testing import CliRunner

from danlu.cli import app


def clips(tmp_path, count=6):
    rows = ["path,transcript"]
    for i in range(count):
        t = np.arange(2400) / 8000
        sf.write(tmp_path / f"c{i}.wav", 0.3 * np.sin(2 * np.pi * (300 + 90 * i) * t), 8000)
        rows.append(f"c{i}.wav,word {i % 3}")
    return rows


def check(tmp_path, rows):
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    body = {"name": "t", "task": "speech-recognition",
            "data": {"source": "list.csv", "columns": {"audio": "path"}, "split": {"validation": 1, "test": 1}}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(body))
    result = CliRunner().invoke(app, ["check", str(tmp_path / "r.yaml")])
    return result, result.output


def broken(tmp_path, name, content):
    (tmp_path / name).write_bytes(content)


@pytest.mark.parametrize("what,make,says", [
    ("a corrupt wav", lambda p: broken(p, "bad.wav", b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 6), "bad.wav: cannot be read"),
    ("a zero-length file", lambda p: broken(p, "bad.wav", b""), "bad.wav: the file is empty"),
    ("a text file renamed .wav", lambda p: broken(p, "bad.wav", b"just some notes\n" * 40), "bad.wav: cannot be read"),
    ("a transcript with no audio", lambda p: None, "bad.wav: no such audio file"),
])
def test_a_bad_clip_stops_the_check_naming_it(tmp_path, what, make, says):
    rows = clips(tmp_path)
    make(tmp_path)
    result, text = check(tmp_path, rows + ["bad.wav,word 1"])
    assert result.exit_code != 0, what
    assert "unreadable" in text and says in text, text
    assert "Traceback" not in text


def test_an_audio_file_with_no_transcript_is_named(tmp_path):
    rows = clips(tmp_path)
    result, text = check(tmp_path, rows + ["c1.wav,"])
    assert result.exit_code != 0
    assert "transcript" in text and "c1.wav" in text and "Traceback" not in text, text
