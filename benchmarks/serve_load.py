"""Load test: `danlu serve` (micro-batching) against a minimal per-request server.

The baseline is what one would write first: a FastAPI app whose endpoint calls a transformers
`pipeline("text-classification", model=RUN/model)` once per request (a plain `def`, so FastAPI
runs it in its thread pool; no batching). Both servers run as subprocesses on 127.0.0.1 under
uvicorn with access logs off, get the same SST-2 sentences, one per request, and are measured
alternately at each concurrency (a shared machine drifts; alternating keeps the ratio fair).
Only ratios within one run of this script mean anything. On a machine shared with other jobs
throughput also measures how much CPU each server wins from the scheduler (a server with dozens
of busy threads wins more), so the server's CPU time per request is printed as well: it is
the efficiency figure that other load does not skew.

    .venv/bin/python benchmarks/serve_load.py                      # concurrency 1, 8, 32; 10 s each
    .venv/bin/python benchmarks/serve_load.py --duration 5 --concurrency 32
    .venv/bin/python benchmarks/serve_load.py --soak               # danlu only: 64 clients for 120 s

--soak counts 5xx answers (must be 0) and samples the server's RSS (must stay bounded).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def baseline_server(model_dir: str, port: int, threads: int) -> None:
    import torch
    import uvicorn
    from fastapi import FastAPI
    from transformers import pipeline

    if threads:
        torch.set_num_threads(threads)
    classify = pipeline("text-classification", model=model_dir, device=-1)
    app = FastAPI()

    @app.post("/v1/predict")
    def predict(body: dict):
        return {"predictions": classify(body["inputs"])}

    @app.get("/readyz")
    def ready():
        return {"status": "ready"}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# -- driving ------------------------------------------------------------------------------

def sentences(limit: int = 2000) -> list[str]:
    root = Path(os.environ.get("DANLU_DATA", REPO.parent / "shared" / "datasets"))
    path = root / "sst2" / "dev.tsv"
    if path.exists():
        with path.open(newline="", encoding="utf-8") as handle:
            rows = [r.get("content") or r.get("sentence") for r in csv.DictReader(handle, delimiter="\t")]
        return [r for r in rows if r][:limit]
    words = "a film that is funny moving dull long bright awful great slow quiet loud".split()
    return [" ".join(words[(i * 7 + j) % len(words)] for j in range(5 + i % 20)) for i in range(limit)]


async def drive(url: str, texts: list[str], concurrency: int, seconds: float, on_sample=None) -> dict:
    """`concurrency` clients in a closed loop for `seconds`: latencies and statuses."""
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    latencies, statuses, errors = [], {}, 0
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        began = time.perf_counter()
        end = began + seconds

        async def client_loop(k: int) -> None:
            nonlocal errors
            i = k
            while time.perf_counter() < end:
                text = texts[i % len(texts)]
                i += concurrency
                t0 = time.perf_counter()
                try:
                    reply = await client.post(url, json={"inputs": text})
                except httpx.HTTPError:
                    errors += 1
                    continue
                statuses[reply.status_code] = statuses.get(reply.status_code, 0) + 1
                if reply.status_code == 200:
                    latencies.append(time.perf_counter() - t0)

        async def sampler() -> None:
            while time.perf_counter() < end:
                on_sample()
                await asyncio.sleep(2)

        extra = [sampler()] if on_sample else []
        await asyncio.gather(*(client_loop(k) for k in range(concurrency)), *extra)
        elapsed = time.perf_counter() - began
    return {"latencies": latencies, "elapsed": elapsed, "statuses": statuses, "errors": errors}


def summarise(parts: list[dict]) -> dict:
    """Rounds of one server and concurrency -> throughput over their total time, latency percentiles."""
    latencies = sorted(x for p in parts for x in p["latencies"])
    statuses: dict[int, int] = {}
    for p in parts:
        for code, n in p["statuses"].items():
            statuses[code] = statuses.get(code, 0) + n
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else float("nan")
    cpu = sum(p.get("cpu", 0.0) for p in parts)
    return {"ok": len(latencies), "rps": len(latencies) / sum(p["elapsed"] for p in parts),
            "p50": pick(0.50), "p95": pick(0.95), "statuses": statuses, "errors": sum(p["errors"] for p in parts),
            "cpu_ms": cpu * 1000 / max(len(latencies), 1)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(args: list[str], port: int, name: str) -> subprocess.Popen:
    import httpx

    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(REPO)}
    env.pop("DANLU_API_KEY", None)
    proc = subprocess.Popen([sys.executable, *args], env=env, cwd=REPO)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{name} server exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    sys.exit(f"{name} server not ready after 120 s")


def batch_stats(port: int) -> tuple[float, float]:
    import httpx

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    values = dict(line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("danlu_batch_size_"))
    return float(values.get("danlu_batch_size_sum", 0)), float(values.get("danlu_batch_size_count", 0))


def cpu_seconds(proc: subprocess.Popen) -> float:
    """CPU time the server process has used, all its threads."""
    import psutil

    times = psutil.Process(proc.pid).cpu_times()
    return times.user + times.system


def show(name: str, c: int, r: dict, extra: str = "") -> None:
    bad = sum(n for s, n in r["statuses"].items() if s != 200) + r["errors"]
    print(f"{name:9} c={c:<3} {r['ok']:6d} ok {r['rps']:8.1f} req/s  p50 {r['p50']:8.1f} ms  "
          f"p95 {r['p95']:8.1f} ms  CPU {r['cpu_ms']:6.1f} ms/req  non-200 {bad}{extra}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default="/tmp/sst/minilm", help="a finished text-classification run")
    parser.add_argument("--duration", type=float, help="seconds per server and concurrency (default 10; soak 120)")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each measurement")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per concurrency")
    parser.add_argument("--soak", action="store_true", help="danlu only, 64 clients for 120 s (see --duration)")
    parser.add_argument("--torch-threads", type=int, default=0,
                        help="intra-op threads for both servers (0: each server's default)")
    parser.add_argument("--serve-args", default="", help="extra `danlu serve` options, e.g. '--max-batch 64'")
    parser.add_argument("--baseline-server", metavar="MODEL_DIR", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_server:
        return baseline_server(args.baseline_server, args.port, args.torch_threads)

    texts = sentences()
    print(f"{len(texts)} sentences, mean {statistics.mean(len(t.split()) for t in texts):.1f} words; "
          f"run {args.run}; {os.cpu_count()} CPUs; torch threads {args.torch_threads or 'default'}; "
          f"danlu options: {args.serve_args or 'defaults'}", flush=True)
    port = free_port()
    procs = {"danlu": start(["-m", "danlu.cli", "serve", args.run, "--port", str(port), "--no-access-log",
                             "--log-level", "warning", "--torch-threads", str(args.torch_threads),
                             *args.serve_args.split()], port, "danlu")}
    ports = {"danlu": port}
    try:
        if args.soak:
            return soak(procs["danlu"], port, texts, 64, args.duration or 120.0)
        ports["baseline"] = free_port()
        procs["baseline"] = start([__file__, "--baseline-server", str(Path(args.run) / "model"),
                                   "--port", str(ports["baseline"]), "--torch-threads", str(args.torch_threads)],
                                  ports["baseline"], "baseline")
        ratios = {}
        for c in args.concurrency:
            parts = {"danlu": [], "baseline": []}
            inputs = calls = 0.0  # danlu's model calls during measurement, for the mean batch size
            for r in range(args.rounds):
                # Alternate servers in short rounds, the order flipping each round: the machine's
                # other load then falls on both alike.
                for name in (("danlu", "baseline") if r % 2 == 0 else ("baseline", "danlu")):
                    url = f"http://127.0.0.1:{ports[name]}/v1/predict"
                    asyncio.run(drive(url, texts, c, args.warmup))
                    mark, cpu = batch_stats(port), cpu_seconds(procs[name])
                    parts[name].append(asyncio.run(drive(url, texts, c, (args.duration or 10.0) / args.rounds)))
                    parts[name][-1]["cpu"] = cpu_seconds(procs[name]) - cpu
                    if name == "danlu":
                        now = batch_stats(port)
                        inputs, calls = inputs + now[0] - mark[0], calls + now[1] - mark[1]
            results = {name: summarise(p) for name, p in parts.items()}
            show("danlu", c, results["danlu"], f"  mean batch {inputs / max(calls, 1):.1f}")
            show("baseline", c, results["baseline"])
            ratios[c] = results["danlu"]["rps"] / max(results["baseline"]["rps"], 1e-9)
            cpu_ratio = results["baseline"]["cpu_ms"] / max(results["danlu"]["cpu_ms"], 1e-9)
            print(f"{'ratio':9} c={c:<3} danlu/baseline throughput {ratios[c]:.2f}x, "
                  f"requests per CPU-second {cpu_ratio:.2f}x", flush=True)
        print("summary: " + ", ".join(f"c={c} {r:.2f}x" for c, r in ratios.items()))
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            proc.wait(timeout=60)


def soak(proc: subprocess.Popen, port: int, texts: list[str], concurrency: int, seconds: float) -> None:
    import psutil

    server = psutil.Process(proc.pid)
    rss: list[tuple[float, float]] = []
    began = time.monotonic()
    record = lambda: rss.append((time.monotonic() - began, server.memory_info().rss / 2**20))
    record()
    cpu = cpu_seconds(proc)
    part = asyncio.run(drive(f"http://127.0.0.1:{port}/v1/predict", texts, concurrency, seconds, record))
    part["cpu"] = cpu_seconds(proc) - cpu
    result = summarise([part])
    record()
    show("danlu", concurrency, result)
    fives = sum(n for s, n in result["statuses"].items() if s >= 500)
    warm = [m for t, m in rss if t >= seconds * 0.2] or [rss[-1][1]]
    growth = rss[-1][1] / warm[0] - 1
    print(f"soak: {seconds:.0f} s at c={concurrency}: 5xx {fives}, transport errors {result['errors']}, "
          f"RSS start {rss[0][1]:.0f} MiB, after warm-up {warm[0]:.0f}, max {max(m for _, m in rss):.0f}, "
          f"end {rss[-1][1]:.0f} ({growth:+.1%} since warm-up)")
    passed = fives == 0 and result["errors"] == 0 and growth < 0.10
    print(f"soak {'PASS' if passed else 'FAIL'}: no 5xx, no transport errors, RSS growth after warm-up under 10%")
    if not passed:
        sys.exit(1)


if __name__ == "__main__":
    main()
