"""Run the app under uvicorn, with a graceful SIGTERM.

On SIGTERM (or Ctrl-C) uvicorn closes its listening sockets, lets open requests finish (they wait
on the batcher, which keeps running), then runs the app's shutdown, which drains the queue.
"""

from __future__ import annotations

import signal
import threading

from danlu.errors import DanluError


def serve(app, settings) -> None:
    import uvicorn

    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                            access_log=settings.access_log, lifespan="on",
                            timeout_graceful_shutdown=settings.graceful_timeout_s)
    server = uvicorn.Server(config)
    main = threading.current_thread() is threading.main_thread()
    # After a clean shutdown uvicorn re-raises the signal it caught; with SIGTERM's default action
    # that kills the process (exit -15) although nothing went wrong. A no-op handler makes the
    # re-raise harmless, so a drained server exits 0.
    previous = signal.signal(signal.SIGTERM, lambda *_: None) if main else None
    try:
        server.run()
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
    if not server.started:
        raise DanluError(f"the server did not start on {settings.host}:{settings.port} (see the log above)")
