"""Bad requests to real trained runs (a table and a text classifier): each a 4xx that says what was wrong
and where, none a 5xx, none dropping its connection or hanging it."""

import http.client
import json
import socket
from urllib.parse import urlsplit

import numpy as np
import pytest

from danlu.inference import Forward
from danlu.serve.app import ServeSettings, create_app
from danlu.serve.runner import TaskRunner
from servekit import PATIENCE_S, client_for, live_server, run

GOOD_ROW = '{"age": 41, "income in k\\u20ac": 50, "job": "A173"}'
BIG = "1" + "0" * 399  # a 400-digit integer


def row(**values: str) -> str:
    """GOOD_ROW with some values replaced by raw JSON text (NaN and Infinity included, which JSON lacks)."""
    fields = {"age": "41", "income in k\\u20ac": "50", "job": '"A173"'}
    fields.update({("income in k\\u20ac" if k == "income" else k): v for k, v in values.items()})
    return "{" + ", ".join(f'"{k}": {v}' for k, v in fields.items()) + "}"


# (case, raw body, the loc the 422 names: a union's errors add the member tried, ["...", "job", "int"])
TABLE_CASES = [
    ("text for a number", f'{{"inputs": {row(age=chr(34) + "abc" + chr(34))}}}', ["body", "inputs", 0, "age"]),
    ("empty text for a number", f'{{"inputs": {row(age=chr(34) * 2)}}}', ["body", "inputs", 0, "age"]),
    ("Infinity", f'{{"inputs": [{GOOD_ROW}, {row(age="Infinity")}]}}', ["body", "inputs", 1, "age"]),
    ("-Infinity", f'{{"inputs": {row(income="-Infinity")}}}', ["body", "inputs", 0, "income in k€"]),
    ("NaN", f'{{"inputs": {row(age="NaN")}}}', ["body", "inputs", 0, "age"]),
    ("1e308", f'{{"inputs": {row(age="1e308")}}}', ["body", "inputs", 0, "age"]),
    ("a 400-digit integer", f'{{"inputs": {row(age=BIG)}}}', ["body", "inputs", 0, "age"]),
    ("NaN in an otherwise invalid row", f'{{"inputs": {row(age="NaN", job="[1]")}}}', ["body", "inputs", 0, "age"]),
    ("NaN as a category", f'{{"inputs": {row(job="NaN")}}}', ["body", "inputs", 0, "job"]),
    ("NaN beside the inputs", f'{{"inputs": {GOOD_ROW}, "extra": NaN}}', ["body", "extra"]),
    ("a lone surrogate", f'{{"inputs": {row(job=chr(34) + "A17" + chr(92) + "ud800" + chr(34))}}}',
     ["body", "inputs", 0, "job"]),
]
TEXT_CASES = [
    ("NaN", '{"inputs": NaN}', ["body", "inputs", 0]),
    ("Infinity in a list", '{"inputs": ["i loved it", Infinity]}', ["body", "inputs", 1]),
    ("1e308", '{"inputs": 1e308}', ["body", "inputs", 0]),
    ("a 400-digit integer", f'{{"inputs": {BIG}}}', ["body", "inputs", 0]),
    ("NaN beside the inputs", '{"inputs": "i loved it", "extra": NaN}', ["body", "extra"]),
    ("a lone surrogate", '{"inputs": ["fine", "a \\ud800 film"]}', ["body", "inputs", 1]),
    ("a lone low surrogate", '{"inputs": "\\udc00"}', ["body", "inputs", 0]),
]
VALID = {"table": f'{{"inputs": [{GOOD_ROW}, {row(job=BIG)}, {row(age="null", job=chr(34) * 2)}]}}',
         "text": '{"inputs": ["", "abc", "\\ud83d\\ude00 a film", "i loved it"]}'}


def strict_json(text: str):
    """The body as strict JSON reads it: NaN and Infinity are not JSON."""
    def refuse(constant):
        raise AssertionError(f"{constant} in a response body")

    return json.loads(text, parse_constant=refuse)


def post_raw(app, *bodies: str):
    async def go():
        async with client_for(app) as client:
            return [await client.post("/v1/predict", content=b.encode(), headers={"content-type": "application/json"})
                    for b in bodies]

    return run(go())


@pytest.mark.parametrize("kind, case, body, loc",
                         [("table", *c) for c in TABLE_CASES] + [("text", *c) for c in TEXT_CASES],
                         ids=lambda v: v if isinstance(v, str) and len(v) < 40 else None)
def test_a_bad_value_is_a_422_naming_its_field(runners, kind, case, body, loc):
    (reply,) = post_raw(create_app(runners[kind], ServeSettings()), body)
    assert reply.status_code == 422, reply.text
    errors = strict_json(reply.text)["detail"]
    assert any(e["loc"][:len(loc)] == loc for e in errors), errors
    assert all(isinstance(e["msg"], str) and e["msg"] for e in errors)


@pytest.mark.parametrize("kind", ["table", "text"])
def test_odd_but_valid_inputs_are_answered(runners, kind):
    (reply,) = post_raw(create_app(runners[kind], ServeSettings()), VALID[kind])
    assert reply.status_code == 200, reply.text
    predictions = strict_json(reply.text)["predictions"]
    assert len(predictions) in (3, 4) and all(p["label"] for p in predictions)


class _NonFiniteForLargeInputs(Forward):
    """The real model, but NaN for a row with any preprocessed feature beyond 100 (standardised: far out)."""

    def __init__(self, inner: Forward):
        self.inner, self.model = inner, inner.model

    def __call__(self, batch):
        out = np.array(self.inner(batch), dtype=np.float32)
        out[np.abs(np.asarray(batch["inputs"])).max(axis=1) > 100] = np.nan
        return out


def test_non_finite_model_outputs_are_a_422_never_nan_scores(runners):
    real = runners["table"]
    app = create_app(TaskRunner(real.task, _NonFiniteForLargeInputs(real.forward), real.info), ServeSettings())
    far = row(age="1e6")
    broken, fine = post_raw(app, f'{{"inputs": [{GOOD_ROW}, {far}]}}', f'{{"inputs": {GOOD_ROW}}}')
    assert broken.status_code == 422
    detail = strict_json(broken.text)["detail"]
    assert "not finite" in detail and "input 1" in detail, detail
    assert fine.status_code == 200 and strict_json(fine.text)["predictions"][0]["label"] in ("good", "bad")


# -- on the wire: a real uvicorn -------------------------------------------------------------

def connection(url: str) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=PATIENCE_S)


def exchange(conn: http.client.HTTPConnection, body: bytes) -> tuple[int, bytes]:
    conn.request("POST", "/v1/predict", body=body, headers={"Content-Type": "application/json"})
    reply = conn.getresponse()
    return reply.status, reply.read()


@pytest.mark.parametrize("kind", ["table", "text"])
def test_after_each_bad_body_the_same_connection_still_serves(runners, kind):
    cases = TABLE_CASES if kind == "table" else TEXT_CASES
    with live_server(create_app(runners[kind], ServeSettings())) as url:
        conn = connection(url)
        try:
            for case, body, _ in cases:
                status, _ = exchange(conn, body.encode())
                good, answer = exchange(conn, VALID[kind].encode())
                assert (status, good) == (422, 200), (case, status, good, answer[:300])
        finally:
            conn.close()


def test_a_body_shorter_than_its_content_length_gets_408_instead_of_hanging(runners):
    with live_server(create_app(runners["text"], ServeSettings(body_timeout_s=0.5))) as url:
        parts = urlsplit(url)
        with socket.create_connection((parts.hostname, parts.port), timeout=PATIENCE_S) as sock:
            sock.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100\r\n\r\n" + b'{"inputs": "i lov')
            answer = _read_response(sock)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.lower().startswith(b"http/1.1 408") and b"connection: close" in head.lower(), answer[:300]
    assert "Content-Length" in json.loads(body)["detail"]


def _read_response(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection; a server that hangs fails the test."""
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except socket.timeout:
        raise AssertionError(f"no complete answer in {PATIENCE_S:.0f} s: {b''.join(chunks)[:200]!r}") from None
    return b"".join(chunks)


def test_huge_or_many_headers_on_the_wire_get_431(runners):
    with live_server(create_app(runners["text"], ServeSettings())) as url:
        answers = {}
        for case, headers in (("1 MB", [("X-Big", "a" * 2**20)]), ("300", [(f"X-H{i}", "1") for i in range(300)]),
                              ("fine", [("X-Small", "a")])):
            conn = connection(url)
            try:
                conn.putrequest("GET", "/healthz")
                for name, value in headers:
                    conn.putheader(name, value)
                conn.endheaders()
                answers[case] = conn.getresponse().status
            finally:
                conn.close()
    assert answers == {"1 MB": 431, "300": 431, "fine": 200}
