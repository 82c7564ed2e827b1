"""`kb serve`: the app under gunicorn (threads, since steps wait on databases), built once before forking."""

from __future__ import annotations

import functools
import logging
import sys

from kb.settings import Config

log = logging.getLogger("kb")


def serve(cfg: Config, host: str, port: int, workers: int) -> None:
    """Validate content, build the index, then serve; exits 1 with every problem on invalid content."""
    import click

    from kb.errors import ContentInvalid
    from kb.web.app import create_app

    logging.basicConfig(level=cfg.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        app = create_app(cfg.__class__(dict(cfg.values, host=host, port=port), cfg.targets, cfg.users,
                                       cfg.chat_users, cfg.source))
    except ContentInvalid as exc:
        click.echo("kb: content is invalid; not starting:", err=True)
        for p in exc.problems:
            click.echo(str(p), err=True)
        sys.exit(1)
    svc = app.extensions["kb"]
    click.echo(f"kb: {len(svc.catalog.entries)} entries, {len(svc.catalog.runbooks)} runbooks; "
               f"serving on http://{host}:{port}/", err=True)
    if workers <= 0:
        svc.warm_in_background()
        app.run(host=host, port=port, threaded=True)
        return
    from gunicorn.app.base import BaseApplication

    class _Gunicorn(BaseApplication):
        def load_config(self):
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("worker_class", "kb.web.server.Worker")
            self.cfg.set("threads", 8)
            self.cfg.set("timeout", 120)
            self.cfg.set("accesslog", None)
            self.cfg.set("loglevel", "warning")

        def load(self):
            return app

    _Gunicorn().run()


@functools.cache
def _worker_class():
    import json

    from gunicorn.http.errors import LimitRequestHeaders, LimitRequestLine
    from gunicorn.workers.gthread import ThreadWorker

    from kb.web.app import SECURITY_HEADERS
    from kb.web.errors import error_body

    too_large = {
        LimitRequestLine: (414, "URI Too Long", "the URL is too long; send long text, such as a pasted log, "
                                                "in a POST body (POST /api/v1/search, or the search form)"),
        LimitRequestHeaders: (431, "Request Header Fields Too Large", "a request header is too long, or there are "
                                                                      "too many"),
    }

    class Worker(ThreadWorker):
        """gunicorn's threaded worker, answering its own 414 and 431 in kb's one error shape."""

        def init_process(self):
            # after the fork: the search patterns are warmed here, in the worker that searches
            self.app.wsgi().extensions["kb"].warm_in_background()
            super().init_process()

        def handle_error(self, req, client, addr, exc):
            for kind, (status, reason, error) in too_large.items():
                if isinstance(exc, kind):
                    self.log.warning("refused from %s: %s", (addr or ("",))[0], exc)
                    body = json.dumps(error_body(status, error)).encode()
                    fields = {"Connection": "close", "Content-Type": "application/json",
                              "Content-Length": str(len(body)), **SECURITY_HEADERS}
                    head = f"HTTP/1.1 {status} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items())
                    head = (head + "\r\n").encode()
                    try:
                        client.sendall(head + body)
                    except OSError:
                        pass
                    return
            super().handle_error(req, client, addr, exc)

    return Worker


def __getattr__(name: str):
    if name == "Worker":  # imported by gunicorn by name; built lazily so `kb` does not import gunicorn at start
        return _worker_class()
    raise AttributeError(name)
