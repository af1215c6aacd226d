"""Who may use the studio: local by default; a key on any other address (refused at start without one, 401
without it); path traversal refused, sent raw over a socket as a hostile client would."""

import http.client

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from danlu.cli import app as cli
from danlu.studio.access import COOKIE, is_local
from danlu.studio.app import create_studio
from studiokit import live_server, write_run

KEY = "s3cret-key"


@pytest.fixture
def runs(tmp_path):
    write_run(tmp_path / "runs", "a-run")
    return tmp_path / "runs"


@pytest.mark.parametrize("host, local", [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True),
                                         ("localhost", True), ("0.0.0.0", False), ("::", False),
                                         ("192.168.1.5", False), ("studio.example", False)])
def test_only_loopback_addresses_count_as_local(host, local):
    assert is_local(host) is local


def test_a_non_local_bind_without_a_key_is_refused_at_start(runs, monkeypatch):
    monkeypatch.delenv("DANLU_API_KEY", raising=False)
    result = CliRunner().invoke(cli, ["studio", "--runs", str(runs), "--host", "0.0.0.0"])
    assert result.exit_code == 1
    assert "without a key" in result.output and "DANLU_API_KEY" in result.output


def test_with_a_key_it_starts_and_says_the_key_is_required(runs, monkeypatch):
    started = {}
    monkeypatch.setenv("DANLU_API_KEY", KEY)
    monkeypatch.setattr("danlu.serve.server.serve", lambda app, settings: started.update(app=app, settings=settings))
    result = CliRunner().invoke(cli, ["studio", "--runs", str(runs), "--host", "0.0.0.0", "--port", "9999"])
    assert result.exit_code == 0, result.output
    assert "API key required" in result.output and ":9999" in result.output
    assert started["settings"].host == "0.0.0.0"
    answer = TestClient(started["app"], base_url="http://studio.example").get("/")
    assert answer.status_code == 401  # the app it started asks for the key, and takes any Host name


def test_a_missing_runs_folder_is_an_error(tmp_path):
    result = CliRunner().invoke(cli, ["studio", "--runs", str(tmp_path / "nowhere")])
    assert result.exit_code == 1 and "no runs folder" in result.output


@pytest.fixture
def keyed(runs):
    return TestClient(create_studio(runs, api_key=KEY, local_only=False), base_url="http://studio.example")


def test_without_the_key_every_page_and_route_is_401(keyed):
    for path in ("/", "/runs/a-run", "/api/runs/a-run/progress", "/runs/a-run/files/state.json", "/compare"):
        answer = keyed.get(path)
        assert answer.status_code == 401, path
        assert answer.headers["www-authenticate"] == "Bearer"
    assert keyed.post("/serve/a-run/v1/predict", json={"inputs": ["x"]}).status_code == 401
    assert keyed.get("/", headers={"Authorization": "Bearer wrong"}).status_code == 401
    page = keyed.get("/runs/a-run", headers={"Accept": "text/html"})
    assert page.status_code == 401 and 'action="/login"' in page.text and "a-run" not in page.text.split("value=")[0]


def test_the_key_as_a_bearer_header_opens_it(keyed):
    assert keyed.get("/", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200


def test_a_browser_logs_in_once_and_carries_a_cookie_that_is_not_the_key(keyed):
    assert keyed.get("/static/studio.css").status_code == 200  # the login page's style, nothing of the runs
    wrong = keyed.post("/login", data={"key": "guess", "next": "/runs/a-run"}, follow_redirects=False)
    assert wrong.status_code == 401 and COOKIE not in wrong.cookies
    right = keyed.post("/login", data={"key": KEY, "next": "/runs/a-run"}, follow_redirects=False)
    assert right.status_code == 303 and right.headers["location"] == "/runs/a-run"
    cookie = right.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and KEY not in cookie
    assert keyed.get("/runs/a-run").status_code == 200  # the client keeps the cookie
    away = keyed.post("/login", data={"key": KEY, "next": "//elsewhere.example/"}, follow_redirects=False)
    assert away.headers["location"] == "/"  # never sent off the studio


def test_a_local_studio_answers_only_requests_addressed_to_localhost(runs):
    studio = create_studio(runs)
    assert TestClient(studio, base_url="http://localhost:8765").get("/").status_code == 200
    assert TestClient(studio, base_url="http://127.0.0.1:8765").get("/").status_code == 200
    assert TestClient(studio, base_url="http://[::1]:8765").get("/").status_code == 200
    assert TestClient(studio, base_url="http://127.0.0.2:8765").get("/").status_code == 200  # all of 127/8
    assert TestClient(studio, base_url="http://rebound.example:8765").get("/").status_code == 400


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    root = tmp_path_factory.mktemp("traversal")
    runs = root / "runs"
    run = write_run(runs, "a-run")
    (root / "secret.txt").write_text("SECRET outside the runs folder")
    (run / "plots").mkdir()
    (run / "plots" / "outside.png").symlink_to(root / "secret.txt")
    outside = write_run(root, "elsewhere")
    (outside / "report.md").write_text("SECRET report of a run outside")
    (runs / "linked").symlink_to(outside, target_is_directory=True)
    with live_server(create_studio(runs)) as url:
        yield url.rpartition(":")[2]


@pytest.mark.parametrize("path", [
    "/runs/../secret.txt",
    "/runs/a-run/files/../../secret.txt",
    "/runs/a-run/files/..%2f..%2fsecret.txt",
    "/runs/a-run/files/%2e%2e/%2e%2e/secret.txt",
    "/runs/a-run/files/%2e%2e%2f%2e%2e%2fsecret.txt",
    "/runs/a-run/files/%252e%252e%252f%252e%252e%252fsecret.txt",
    "/runs/a-run/files/..%5c..%5csecret.txt",
    "/runs/a-run/files/%2fetc%2fhosts",
    "/runs/a-run/files//etc/hosts",
    "/runs/a-run/files/plots/outside.png",
    "/runs/..%2fsecret.txt",
    "/runs/linked",
    "/runs/linked/files/report.md",
    "/runs/a-run/files/plots%00.png",
    "/serve/..%2f..%2f/v1/predict",
    "/serve/linked/v1/models",
])
def test_path_traversal_is_refused(hostile, path):
    connection = http.client.HTTPConnection("127.0.0.1", int(hostile), timeout=30)
    connection.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)  # sent as written, unnormalised
    connection.putheader("Host", "localhost")
    connection.endheaders()
    answer = connection.getresponse()
    body = answer.read()
    connection.close()
    assert answer.status in (403, 404), (path, answer.status)
    assert b"SECRET" not in body and b"127.0.0.1" not in body
