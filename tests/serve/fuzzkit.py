"""Schemathesis against a danlu app's own OpenAPI schema, in-process: every operation, requests that fit the
schema and requests that do not, a bounded number of cases, the same cases on every run. Used by
test_schema_fuzz.py and benchmarks/serve_fuzz.py (which runs many more).

Schemathesis writes strict JSON, so a third kind is added for each JSON body: a valid one with one value
swapped for what JSON parsers accept but strict JSON has not (NaN, Infinity), a lone surrogate escape, or
a number no float holds: the values that once got 500s."""

from __future__ import annotations

import copy
import json
import math
from collections import Counter

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.python import asgi

DROPPED = 599  # counted for an exception out of the app (a real server: a 500 and a dropped connection)
HOSTILE = (math.nan, math.inf, -math.inf, 1e308, 10 ** 399, "", "abc", "\ud800", "a\udc00b")


def fuzz(app, key: str | None = None, examples: int = 20, fail_on_5xx: bool = True) -> Counter:
    """Status codes of `examples` generated cases per operation and kind (valid, invalid, hostile); with a
    `key`, each case is sent with it and again as generated (mostly without one). `fail_on_5xx`: an
    AssertionError at the first answer of 500 or more, naming the request, and an exception out of the app
    raised as it is; else both are counted, the exceptions as DROPPED."""
    auth = {"Authorization": f"Bearer {key}"} if key else {}
    statuses: Counter = Counter()
    try:
        schema = schemathesis.openapi.from_asgi("/openapi.json", app, headers=auth)
        for result in schema.get_all_operations():
            operation = result.ok()
            for kind in _kinds(operation):
                _run(operation, kind, [auth, {}] if key else [{}], examples, statuses, fail_on_5xx)
    finally:
        asgi.shutdown_lifespans()  # from_asgi started the app (its batcher); stop it with the run
    return statuses


def _kinds(operation) -> tuple[str, ...]:
    # A request to GET /healthz has nothing in it to get wrong: there are no invalid ones to make.
    if not any(True for _ in operation.iter_parameters()) and not list(operation.body):
        return ("valid",)
    return ("valid", "invalid", "hostile") if list(operation.body) else ("valid", "invalid")


def _run(operation, kind: str, header_sets: list[dict], examples: int, statuses: Counter, fail_on_5xx: bool):
    mode = GenerationMode.NEGATIVE if kind == "invalid" else GenerationMode.POSITIVE

    # derandomize: the cases come from a seed fixed per test function, the same on every run.
    @settings(max_examples=examples, derandomize=True, database=None, deadline=None, print_blob=False,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(mode), data=st.data())
    def send(case, data):
        raw = _hostile_body(case.body, data) if kind == "hostile" else None
        for headers in header_sets:
            response = _call(case, headers, raw, statuses, fail_on_5xx)
            if response is None:
                continue
            statuses[response.status_code] += 1
            assert response.status_code < 500 or not fail_on_5xx, (
                f"{response.status_code} for a {kind} request: {case.as_curl_command(headers=headers)}"
                + (f"\nbody sent instead: {raw[:300]!r}" if raw else "") + f"\n{response.text[:500]}")

    send()


def _call(case, headers: dict, raw: bytes | None, statuses: Counter, fail_on_5xx: bool):
    extra = {} if raw is None else {"data": raw}
    try:
        return case.call(headers={**headers, **({"Content-Type": "application/json"} if raw else {})}, **extra)
    except Exception:
        if fail_on_5xx:
            raise
        statuses[DROPPED] += 1
        return None


def _hostile_body(body, data) -> bytes:
    """`body` as JSON text with one value, drawn by hypothesis, swapped for one of HOSTILE."""
    leaves = list(_leaves(body, ()))
    path = data.draw(st.sampled_from(leaves))
    value = data.draw(st.sampled_from(HOSTILE))
    # allow_nan writes NaN and Infinity as Python's parser reads them; ensure_ascii writes a surrogate as \\ud800.
    return json.dumps(_replaced(body, path, value), allow_nan=True, ensure_ascii=True).encode()


def _leaves(value, path: tuple):
    """Paths to every value in `value` that is not itself an object or list (the root, when it is one)."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else None
    if items is None:
        yield path
        return
    found = False
    for key, child in items:
        found = True
        yield from _leaves(child, (*path, key))
    if not found:
        yield path  # an empty object or list: swapped whole


def _replaced(body, path: tuple, value):
    if not path:
        return value
    out = copy.deepcopy(body)
    holder = out
    for key in path[:-1]:
        holder = holder[key]
    holder[path[-1]] = value
    return out
