"""The `serve` command and the real server process: options, errors, variants, graceful SIGTERM."""

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pytest
import typer
from typer.testing import CliRunner

from danlu.serve import commands
from servekit import client_for, run, wait_for

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
                   "--max-body-kb", "--workers-threads", "--max-header-kb", "--max-headers", "--body-timeout"):
        assert option in text


def test_a_missing_run_is_one_clear_message(tmp_path):
    result, text = invoke("serve", tmp_path / "nope")
    assert result.exit_code == 1 and "no such run directory" in text and "Traceback" not in text


def test_options_reach_the_server_and_the_app_serves(text_run, monkeypatch):
    seen = {}
    monkeypatch.setattr("danlu.serve.server.serve", lambda app, settings: seen.update(app=app, settings=settings))
    result, text = invoke("serve", text_run, "--port", 9123, "--max-batch", 4, "--max-wait-ms", 2,
                          "--max-queue", 16, "--max-body-kb", 8, "--workers-threads", 2, "--no-access-log",
                          "--max-header-kb", 4, "--max-headers", 20, "--body-timeout", 2.5, env={"DANLU_API_KEY": "k"})
    assert result.exit_code == 0, text
    s = seen["settings"]
    assert (s.host, s.port, s.max_batch, s.max_wait_ms, s.max_queue, s.max_body_kb, s.workers_threads,
            s.api_key, s.access_log) == ("127.0.0.1", 9123, 4, 2, 16, 8, 2, "k", False)
    assert (s.max_header_kb, s.max_headers, s.body_timeout_s) == (4, 20, 2.5)

    async def go():
        async with client_for(seen["app"]) as client:
            return await client.post("/v1/predict", json={"inputs": ["i loved it", "i hated it"]},
                                     headers={"Authorization": "Bearer k"})

    reply = run(go())
    assert reply.status_code == 200 and len(reply.json()["predictions"]) == 2


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


# The real command, with each model call held at a gate: the call announces itself with a file and
# waits for the test to create `release`, so requests are certainly in flight when SIGTERM arrives,
# however slow the machine.
GATED_SERVER = """
    import sys
    import time
    from pathlib import Path

    import danlu.serve.runner as runners

    gate = Path(sys.argv.pop(1))

    class Gated:
        def __init__(self, inner):
            self.inner, self.info, self.task, self.forward = inner, inner.info, inner.task, inner.forward
            self.model, self.encode_lock = inner.model, inner.encode_lock
        def predict(self, frame):
            (gate / f"entered-{time.monotonic_ns()}-{len(frame)}").write_text("")
            while not (gate / "release").exists():  # a bounded wait: the test releases it or fails
                time.sleep(0.01)
            return self.inner.predict(frame)

    real = runners.load_runner
    runners.load_runner = lambda *args, **kwargs: Gated(real(*args, **kwargs))
    from danlu.cli import main
    sys.argv = ["danlu", "serve", *sys.argv[1:]]
    main()
"""


def refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def test_sigterm_lets_in_flight_requests_finish_then_exits_0(text_run, tmp_path):
    script, gate = tmp_path / "gated_server.py", tmp_path / "gate"
    script.write_text(textwrap.dedent(GATED_SERVER))
    gate.mkdir()
    port = free_port()
    proc = start([script, gate, text_run, "--port", port, "--max-batch", 2, "--max-wait-ms", 0,
                  "--no-access-log"], tmp_path, port)
    url = f"http://127.0.0.1:{port}/v1/predict"
    replies = [None] * 6

    def send(i):
        try:
            replies[i] = httpx.post(url, json={"inputs": f"i loved it {i}"}, timeout=120)
        except httpx.HTTPError as exc:
            replies[i] = exc

    threads = [threading.Thread(target=send, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()

    def held() -> int:  # inputs held at the gate, plus inputs queued behind it
        entered = sum(int(p.name.rsplit("-", 1)[1]) for p in gate.glob("entered-*"))
        return entered + httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).json().get("queue", 0)

    try:
        try:
            wait_for(lambda: held() == 6, "all six requests inside the server", timeout=60)
            proc.send_signal(signal.SIGTERM)
            wait_for(lambda: refuses(port), "refusing new connections while draining", timeout=60)
            assert all(r is None for r in replies)  # held at the gate: all six are still in flight
        finally:
            (gate / "release").write_text("")  # a failed assertion must not leave the server held forever
        for t in threads:
            t.join(timeout=120)
        assert [getattr(r, "status_code", r) for r in replies] == [200] * 6
        assert all(len(r.json()["predictions"]) == 1 for r in replies)
        assert stop(proc) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "serving reviews (text-classification) on http://127.0.0.1" in (tmp_path / f"server-{port}.log").read_text()
