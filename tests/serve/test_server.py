"""The `serve` command and the real server process: options, errors, variants, graceful SIGTERM."""

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import types
from pathlib import Path

import httpx
import pytest
import typer
from typer.testing import CliRunner

from danlu.serve import commands
from servekit import StubRunner, client_for, run

REPO = Path(__file__).resolve().parents[2]
cli = typer.Typer()
commands.register(cli)


@cli.callback()
def _group():
    """A group, as in danlu's app: `serve` stays a subcommand."""


def invoke(*args, env=None):
    result = CliRunner().invoke(cli, [str(a) for a in args], env=env)
    return result, result.output


def test_help_lists_the_options():
    result, text = invoke("serve", "--help")
    assert result.exit_code == 0
    for option in ("--variant", "--host", "--port", "--max-batch", "--max-wait-ms", "--max-queue",
                   "--max-body-kb", "--workers-threads"):
        assert option in text


def test_a_missing_run_is_one_clear_message(tmp_path):
    result, text = invoke("serve", tmp_path / "nope")
    assert result.exit_code == 1 and "no such run directory" in text and "Traceback" not in text


def test_options_reach_the_server_and_the_app_serves(text_run, monkeypatch):
    seen = {}
    monkeypatch.setattr("danlu.serve.server.serve", lambda app, settings: seen.update(app=app, settings=settings))
    result, text = invoke("serve", text_run, "--port", 9123, "--max-batch", 4, "--max-wait-ms", 2,
                          "--max-queue", 16, "--max-body-kb", 8, "--workers-threads", 2, "--no-access-log",
                          env={"DANLU_API_KEY": "k"})
    assert result.exit_code == 0, text
    s = seen["settings"]
    assert (s.host, s.port, s.max_batch, s.max_wait_ms, s.max_queue, s.max_body_kb, s.workers_threads,
            s.api_key, s.access_log) == ("127.0.0.1", 9123, 4, 2, 16, 8, 2, "k", False)

    async def go():
        async with client_for(seen["app"]) as client:
            return await client.post("/v1/predict", json={"inputs": ["i loved it", "i hated it"]},
                                     headers={"Authorization": "Bearer k"})

    reply = run(go())
    assert reply.status_code == 200 and len(reply.json()["predictions"]) == 2


def test_variant_without_danlu_compress_is_a_clear_error(text_run, monkeypatch):
    monkeypatch.setitem(sys.modules, "danlu.compress", None)  # as if the module did not exist
    result, text = invoke("serve", text_run, "--variant", "int8")
    assert result.exit_code == 1 and "--variant int8" in text and "danlu.compress" in text


def test_variant_loads_through_danlu_compress(text_run, monkeypatch):
    from danlu.serve.runner import load_runner

    asked = []
    stub = StubRunner()
    fake = types.ModuleType("danlu.compress")
    fake.load_variant = lambda run_dir, name: asked.append((Path(run_dir), name)) or stub
    monkeypatch.setitem(sys.modules, "danlu.compress", fake)
    runner = load_runner(text_run, "int8")
    assert asked == [(text_run, "int8")]
    assert runner.info.variant == "int8" and runner.info.name == "reviews"
    import pandas as pd

    assert runner.predict(pd.DataFrame({"text": ["a"]}))[0]["label"] == "pos"


# -- a real process -----------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(args: list, tmp_path: Path, port: int) -> subprocess.Popen:
    log_path = tmp_path / f"server-{port}.log"
    log = open(log_path, "wb")
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(REPO)}
    env.pop("DANLU_API_KEY", None)
    proc = subprocess.Popen([sys.executable, *map(str, args)], stdout=log, stderr=subprocess.STDOUT, env=env,
                            cwd=REPO)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    pytest.fail("server did not become ready in 60 s")


def stop(proc: subprocess.Popen) -> int:
    try:
        return proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()


# The real command (`python -m danlu.serve` does the same), with each model call slowed so that
# requests are still in flight when SIGTERM arrives.
SLOW_SERVER = """
    import sys, time
    import danlu.serve.runner as runners

    class Slow:
        def __init__(self, inner):
            self.inner, self.info = inner, inner.info
        def predict(self, frame):
            time.sleep(0.4)
            return self.inner.predict(frame)

    real = runners.load_runner
    runners.load_runner = lambda *args, **kwargs: Slow(real(*args, **kwargs))
    from danlu.serve.commands import main
    main()
"""


def test_sigterm_lets_in_flight_requests_finish_then_exits_0(text_run, tmp_path):
    script = tmp_path / "slow_server.py"
    script.write_text(textwrap.dedent(SLOW_SERVER))
    port = free_port()
    proc = start([script, text_run, "--port", port, "--max-batch", 2, "--max-wait-ms", 0, "--no-access-log"],
                 tmp_path, port)
    url = f"http://127.0.0.1:{port}/v1/predict"
    replies = [None] * 6

    def send(i):
        try:
            replies[i] = httpx.post(url, json={"inputs": f"i loved it {i}"}, timeout=30)
        except httpx.HTTPError as exc:
            replies[i] = exc

    threads = [threading.Thread(target=send, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    time.sleep(0.3)  # all six are in: 3-4 model calls of 0.4 s still to go
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    with pytest.raises(httpx.ConnectError):  # no longer accepting, while still draining
        httpx.post(url, json={"inputs": "late"}, timeout=5)
    assert any(r is None for r in replies), "requests finished before SIGTERM: nothing was tested"
    for t in threads:
        t.join(timeout=30)
    assert [getattr(r, "status_code", r) for r in replies] == [200] * 6
    assert all(len(r.json()["predictions"]) == 1 for r in replies)
    assert stop(proc) == 0
    assert "serving reviews (text-classification) on http://127.0.0.1" in (tmp_path / f"server-{port}.log").read_text()


def test_variant_with_predict_logits_runs_through_the_runs_task(text_run, monkeypatch):
    import numpy as np
    import pandas as pd

    from danlu.serve.runner import load_runner
    from danlu.tasks import load_task

    task, _ = load_task(text_run / "model")
    batches = []

    class Variant:  # danlu.compress's shape: .task and predict_logits(batch) -> logits
        def __init__(self):
            self.task = task

        def predict_logits(self, batch):
            batches.append(batch["input_ids"].shape)
            return np.tile([[0.0, 1.0]], (batch["input_ids"].shape[0], 1))

    fake = types.ModuleType("danlu.compress")
    fake.load_variant = lambda run_dir, name, threads=None: Variant()
    monkeypatch.setitem(sys.modules, "danlu.compress", fake)
    runner = load_runner(text_run, "onnx-int8")
    preds = runner.predict(pd.DataFrame({"text": ["i loved it", "truly awful"]}))
    assert [p["label"] for p in preds] == ["pos", "pos"] and runner.info.variant == "onnx-int8"
    assert batches and batches[0][1] % 8 == 0  # the run's own collate padded the batch
