"""Fuzzing `danlu serve` with schemathesis: the cases of tests/serve/test_schema_fuzz.py, many more of them.

Every operation of the app's own OpenAPI schema gets N generated requests that fit the schema, N that do
not, and (with a JSON body) N valid ones with one value swapped for NaN, Infinity, a lone surrogate or a
number no float holds (tests/serve/fuzzkit.py), in-process (the app with its batcher and model, no
sockets), with an API key and without; with a key each request goes once with it and once as generated. Prints the cases sent and the count of each
status code; any 5xx is a bug (the tests fail at the first one, this counts them all; 599 stands for an
exception out of the app, which a real server answers with a 500 and a dropped connection). Derandomized:
the same N gives the same cases.

    .venv/bin/python benchmarks/serve_fuzz.py                       # tiny table and text runs, N = 200
    .venv/bin/python benchmarks/serve_fuzz.py --examples 1000 --run runs/credit-...   # your own runs
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "benchmarks"), str(REPO / "tests" / "serve")]


def runs(given: list[str], scratch: Path) -> list[Path]:
    if given:
        return [Path(r) for r in given]
    from servekit import train_table_run, train_text_run

    (scratch / "table").mkdir()
    (scratch / "text").mkdir()
    return [train_table_run(scratch / "table"), train_text_run(scratch / "text")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=200, help="cases per operation and kind")
    parser.add_argument("--run", action="append", default=[], help="a finished run (repeatable); "
                        "default: a tiny table and a tiny text classifier, trained first")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from danlu.serve.app import ServeSettings, create_app
    from danlu.serve.runner import load_runner
    from fuzzkit import fuzz
    from startup import cpu

    print(f"{cpu()}; {args.examples} cases per operation and kind (valid, invalid, hostile)", flush=True)
    failures = 0
    with tempfile.TemporaryDirectory() as scratch:
        for run in runs(args.run, Path(scratch)):
            runner = load_runner(run)
            for key in (None, "fuzz-key"):
                began = time.perf_counter()
                statuses = fuzz(create_app(runner, ServeSettings(api_key=key)), key, args.examples, fail_on_5xx=False)
                seconds = time.perf_counter() - began
                errors = sum(n for code, n in statuses.items() if code >= 500)
                failures += errors
                counts = "  ".join(f"{code}: {n}" for code, n in sorted(statuses.items()))
                print(f"{runner.info.name} ({runner.info.task}), {'key' if key else 'no key'}: "
                      f"{sum(statuses.values())} requests in {seconds:.1f} s  |  {counts}  |  5xx: {errors}",
                      flush=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
