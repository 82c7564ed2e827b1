"""The in-process worker: chat work that may outlast Slack's 3 seconds, posted to `response_url`.

A slash command or a button press is answered at once; what it asked for (a run's diagnostics, an
action) runs here, on a small thread pool of this process, and its messages go to the request's
`response_url` through slack_sdk's webhook client. Each worker process has its own pool (created on
first use, so a pool built before gunicorn forks is never shared). Several processes or hosts may hold
work for the same run: the run store's claim decides which one executes a step (the others get 409),
so a step runs once wherever the work landed.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable

from slack_sdk.webhook import WebhookClient

log = logging.getLogger("kb")
THREADS = 4
POST_TIMEOUT = 10  # seconds per response_url request


class Poster:
    """Posts messages to one `response_url` (Slack allows five posts per URL within 30 minutes)."""

    def __init__(self, url: str):
        self.url = url
        self.sent = 0

    def post(self, message: dict) -> bool:
        """Send `message`; False (and a log line, never an exception) when the chat server refuses it."""
        if not self.url:
            return False
        self.sent += 1
        try:
            resp = WebhookClient(self.url, timeout=POST_TIMEOUT).send_dict(message)
        except Exception as exc:  # noqa: BLE001 - a chat server that is down must not end the run's work
            log.warning("chat: posting to response_url failed: %s", type(exc).__name__)
            return False
        if resp.status_code >= 300:
            log.warning("chat: response_url answered %s: %s", resp.status_code, (resp.body or "")[:200])
            return False
        return True


class Worker:
    """A thread pool of this process for chat work; `submit` never blocks the request."""

    def __init__(self, threads: int = THREADS):
        self.threads = threads
        self._pool: ThreadPoolExecutor | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()

    def _executor(self) -> ThreadPoolExecutor:
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():  # a pool inherited across fork has no threads: start our own
                    self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="kb-chat")
                    self._pid = os.getpid()
        return self._pool

    def submit(self, fn: Callable, *args) -> Future:
        """Run `fn(*args)` on the pool; its exceptions are logged, not raised anywhere."""
        future = self._executor().submit(fn, *args)
        future.add_done_callback(_log_failure)
        return future

    def close(self) -> None:
        """Wait for the work in hand (tests and shutdown)."""
        if self._pool is not None and self._pid == os.getpid():
            self._pool.shutdown(wait=True)
            self._pool = None
            self._pid = None


def _log_failure(future: Future) -> None:
    exc = future.exception()
    if exc is not None:
        log.error("chat: background work failed", exc_info=exc)
