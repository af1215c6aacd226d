"""The playground: try a run's model in the page, through the same app `danlu serve` runs.

Each run gets the serve app itself (danlu.serve.app.create_app over danlu.serve.runner.load_runner: the
variant `danlu match` chose when there is a plan, else the PyTorch model), loaded on first use, kept for
the next requests and reached under /serve/<run>/v1/... So the page posts to the very /v1/predict and
/v1/chat/completions routes a client of `danlu serve` would, with their validation, batching and
streaming. The studio's own key check stands in front of them, so the inner app has no key of its own.

What the page shows for input comes from the task, never from its name: a task that writes text gets a
chat box (the OpenAI routes stream it); otherwise the JSON schema of the task's request item decides: a
string is a text box, an object's bytes fields (base64 in JSON: an image, a sound) are file inputs, its
number and text fields a form, anything else a JSON box.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections import OrderedDict
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

from danlu.errors import DanluError, RunError
from danlu.studio.access import reply
from danlu.studio.folder import NotFound, RunsFolder

log = logging.getLogger("danlu.studio")
MEDIA = ("image", "audio", "video")  # a bytes field named so takes files of that type
MAX_UPLOAD_KB = 32 * 1024  # base64 of about 24 MB: a minute of 16-bit stereo 44.1 kHz audio fits


@dataclass
class Widget:
    kind: str  # chat | text | files | form | json
    fields: list[dict] = field(default_factory=list)  # files / form: {name, input: file|number|text, accept}

    def to_json(self) -> dict:
        return {"kind": self.kind, "fields": self.fields}


def widget_for(spec, request_item, can_sample: bool) -> Widget:
    """The input widget of a task: `spec` its registry entry, `request_item` the type of one input of
    POST /v1/predict, `can_sample`: the served model can write text (a PyTorch model, not an ONNX one)."""
    if spec.capabilities.generate and can_sample:
        return Widget("chat")
    from pydantic import TypeAdapter

    return from_schema(TypeAdapter(request_item).json_schema(by_alias=True))


def from_schema(schema: dict) -> Widget:
    if _is_text(schema) or any(_is_text(s) for s in schema.get("anyOf", ())):
        return Widget("text")
    properties = schema.get("properties") if schema.get("type") == "object" else None
    if not properties:
        return Widget("json")
    fields = []
    for name, prop in properties.items():
        if _is_bytes(prop):
            accept = f"{name}/*" if name in MEDIA else ""
            fields.append({"name": name, "input": "file", "accept": accept})
        elif _types(prop) and _types(prop) <= {"number", "integer", "null"}:
            fields.append({"name": name, "input": "number", "accept": ""})
        elif _types(prop) and _types(prop) <= {"string", "number", "integer", "boolean", "null"}:
            fields.append({"name": name, "input": "text", "accept": ""})
        else:
            return Widget("json")
    return Widget("files" if any(f["input"] == "file" for f in fields) else "form", fields)


def _types(prop: dict) -> set[str]:
    found = {prop["type"]} if isinstance(prop.get("type"), str) else set()
    for option in prop.get("anyOf", ()):
        if "type" not in option:
            return set()  # a reference or a nested shape: not a plain field
        found.add(option["type"])
    return found


def _is_bytes(prop: dict) -> bool:
    return prop.get("type") == "string" and (prop.get("format") in ("binary", "base64")
                                            or prop.get("contentEncoding") == "base64")


def _is_text(schema: dict) -> bool:
    return schema.get("type") == "string" and not _is_bytes(schema)


@dataclass
class Loaded:
    app: object  # the serve app
    runner: object
    widget: Widget
    stamp: tuple
    stack: AsyncExitStack


class ServeApps:
    """The serve apps of the runs tried lately (at most `keep`, the least recently used closed first)."""

    def __init__(self, folder: RunsFolder, keep: int = 2):
        self.folder, self.keep = folder, keep
        self._apps: OrderedDict[str, Loaded] = OrderedDict()
        self._lock = asyncio.Lock()

    def _stamp(self, run) -> tuple:
        # A retrained model or a new `danlu match` plan changes what serve would load.
        stamps = []
        for path in (run.model_dir / "config.json", run.deployment_path):
            try:
                stamps.append(os.stat(path).st_mtime_ns)
            except OSError:
                stamps.append(None)
        return tuple(stamps)

    async def get(self, name: str) -> Loaded:
        """The run's serve app, started; NotFound, or RunError for a run without a finished model."""
        from starlette.concurrency import run_in_threadpool

        run = self.folder.run(name)
        loaded = self._apps.get(name)
        if loaded is not None and loaded.stamp == self._stamp(run):  # no lock: a model loading for another
            self._apps.move_to_end(name)                             # run holds it for seconds
            return loaded
        async with self._lock:
            stamp = self._stamp(run)
            loaded = self._apps.get(name)
            if loaded is not None and loaded.stamp == stamp:  # loaded while this request waited
                self._apps.move_to_end(name)
                return loaded
            if loaded is not None:
                await self._close(name)
            loaded = await run_in_threadpool(self._load, run, stamp)
            await loaded.stack.enter_async_context(loaded.app.router.lifespan_context(loaded.app))
            self._apps[name] = loaded
            while len(self._apps) > self.keep:
                await self._close(next(iter(self._apps)))
            return loaded

    def _load(self, run, stamp) -> Loaded:
        from danlu.serve.app import ServeSettings, create_app
        from danlu.serve.runner import load_runner

        runner = load_runner(run.root)
        # Serve's settings, but for the body size: a playground upload is a whole image or sound clip.
        app = create_app(runner, ServeSettings(access_log=False, log_level="warning", max_body_kb=MAX_UPLOAD_KB))
        return Loaded(app, runner, widget_for(runner.task.spec, runner.task.request_item(),
                                              runner.model is not None), stamp, AsyncExitStack())

    async def _close(self, name: str) -> None:
        loaded = self._apps.pop(name)
        await loaded.stack.aclose()

    async def close(self) -> None:
        async with self._lock:
            while self._apps:
                await self._close(next(iter(self._apps)))


class ServeRoutes:
    """ASGI: /serve/<run>/v1/... goes to that run's serve app (its path without the prefix); anything
    else to `inner`."""

    PREFIX = "/serve/"

    def __init__(self, inner, apps: ServeApps):
        self.inner, self.apps = inner, apps

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(self.PREFIX):
            return await self.inner(scope, receive, send)
        name, _, rest = path[len(self.PREFIX):].partition("/")
        if not rest.startswith("v1/"):
            return await _answer(send, 404, "the playground reaches a run's /v1 routes only")
        try:
            loaded = await self.apps.get(name)
        except NotFound:
            return await _answer(send, 404, "no such run")
        except RunError as exc:
            return await _answer(send, 409, str(exc))
        except DanluError as exc:
            return await _answer(send, 422, str(exc))
        except Exception:
            log.exception("loading the model of %s failed", name)
            return await _answer(send, 500, "loading the model failed; see the studio's log")
        inner = {**scope, "path": "/" + rest, "raw_path": ("/" + rest).encode(),
                 "root_path": scope.get("root_path", "") + self.PREFIX + name}
        await loaded.app(inner, receive, send)


async def _answer(send, status: int, detail: str) -> None:
    await reply(send, status, "application/json", json.dumps({"detail": detail}).encode())
