"""How long the studio takes to serve its runs page over a folder of many runs (issue 14: 200 runs, under 1 s).

The folder holds copies of one real run (the quickstart's files: state, metrics, history, recipe, report,
plots, two checkpoints, the model), each with its own name, status and accuracy, so the page reads what
real runs hold. The studio runs under uvicorn in this process on a loopback port; the page is fetched
over HTTP, first with the studio's row cache empty (a fresh start), then again and again (the cache
filled; what a user refreshing the page waits).

    python benchmarks/studio_runs_page.py [--runs 200] [--repeat 20] [--from RUN]

Without --from it trains the quickstart first (about 8 s on 2 idle cores).
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import socket
import statistics
import tempfile
import threading
import time
from importlib import resources
from pathlib import Path


def quickstart(folder: Path) -> Path:
    from danlu.pipeline import train
    from danlu.recipe import load_recipe

    with resources.as_file(resources.files("danlu.starters").joinpath("quickstart.yaml")) as recipe:
        return train(load_recipe(recipe), folder / "quickstart").root


def fill(runs: Path, source: Path, count: int) -> None:
    statuses = ("done", "done", "done", "failed", "interrupted")
    for i in range(count):
        target = runs / f"quickstart-{i:04d}"
        shutil.copytree(source, target, symlinks=True)
        state = json.loads((target / "state.json").read_text())
        state.update(status=statuses[i % len(statuses)], name=target.name)
        (target / "state.json").write_text(json.dumps(state))
        metrics = json.loads((target / "metrics.json").read_text())
        metrics["test"]["accuracy"] = 0.5 + 0.5 * i / count
        (target / "metrics.json").write_text(json.dumps(metrics))


def fetch(port: int) -> tuple[float, int, int]:
    start = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request("GET", "/", headers={"Host": "localhost"})
    answer = connection.getresponse()
    body = answer.read()
    connection.close()
    return time.perf_counter() - start, answer.status, body.count(b'<tr data-run="')


def main() -> None:
    import uvicorn

    from danlu.studio.app import create_studio

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--from", dest="source", type=Path, help="a finished run to copy (default: train the quickstart)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        source = args.source or quickstart(tmp)
        runs = tmp / "runs"
        runs.mkdir()
        fill(runs, source, args.runs)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(create_studio(runs), log_level="warning", access_log=False))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 60
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise SystemExit("the studio did not start")
            time.sleep(0.01)
        try:
            cold, status, rows = fetch(port)
            assert status == 200 and rows == args.runs, (status, rows)
            warm = [fetch(port)[0] for _ in range(args.repeat)]
        finally:
            server.should_exit = True
            thread.join(timeout=30)
    print(f"runs page, {args.runs} runs: first request (empty cache) {cold * 1000:.0f} ms; "
          f"then over {args.repeat} requests median {statistics.median(warm) * 1000:.0f} ms, "
          f"max {max(warm) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
