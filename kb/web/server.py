"""`kb serve`: the app under gunicorn (threads, since steps wait on databases), built once before forking."""

from __future__ import annotations

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
        app.run(host=host, port=port, threaded=True)
        return
    from gunicorn.app.base import BaseApplication

    class _Gunicorn(BaseApplication):
        def load_config(self):
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("threads", 8)
            self.cfg.set("timeout", 120)
            self.cfg.set("accesslog", None)
            self.cfg.set("loglevel", "warning")

        def load(self):
            return app

    _Gunicorn().run()
