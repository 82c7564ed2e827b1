"""A target that completes the startup handshake and then never answers: the step ends with a
classified `timeout` within statement timeout + connect timeout, and its slot and thread are freed."""

from __future__ import annotations

import selectors
import socket
import threading
import time

import pytest

from kb.runbooks.executor import Executor, Timeouts
from kb.runbooks.targets import Target
from kb.scenarios.cluster import free_port

READY = b"Z\x00\x00\x00\x05I"  # ReadyForQuery, idle: the end of the startup handshake


class FreezingProxy:
    """Relays TCP to a real server until the server first says ReadyForQuery on a connection, then
    keeps every socket open and relays nothing more, as a hung proxy or a frozen host would."""

    def __init__(self, upstream_port: int):
        self.upstream = ("127.0.0.1", upstream_port)
        self.port = free_port()
        self.listener = socket.create_server(("127.0.0.1", self.port))
        self.stop = threading.Event()
        self.socks: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        self.listener.settimeout(0.1)
        while not self.stop.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            server = socket.create_connection(self.upstream)
            self.socks += [client, server]
            threading.Thread(target=self._pair, args=(client, server), daemon=True).start()

    def _pair(self, client, server):
        sel = selectors.DefaultSelector()
        sel.register(client, selectors.EVENT_READ, server)
        sel.register(server, selectors.EVENT_READ, client)
        frozen = False
        while not self.stop.is_set():
            for key, _ in sel.select(0.1):
                try:
                    data = key.fileobj.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                if not frozen:
                    key.data.sendall(data)
                    if key.fileobj is server and READY in data:
                        frozen = True  # from here on, swallow everything in both directions

    def close(self):
        self.stop.set()
        self.thread.join()
        for s in self.socks:
            s.close()
        self.listener.close()


@pytest.fixture
def proxy(pg):
    p = FreezingProxy(pg.port)
    yield p
    p.close()


def test_a_silent_target_ends_the_step_with_a_timeout_and_frees_the_slot(proxy, pg):
    ex = Executor({"t": Target("t", dsn=f"host=127.0.0.1 port={proxy.port} user=monitor dbname=postgres")},
                  Timeouts(connect_s=2, statement_ms=500), busy_timeout=1, idle_seconds=0)
    try:
        for _ in range(2):  # the second attempt proves the first one gave its only slot back
            t0 = time.monotonic()
            with pytest.raises(Exception) as exc:
                ex.run("t", None, {}, sql="SELECT 1")
            took = time.monotonic() - t0
            assert type(exc.value).__name__ == "Unanswered", exc.value
            assert 2.4 <= took < 4.5, took
    finally:
        ex.close()


def test_the_run_says_timeout_and_the_server_stays_responsive(proxy, config_factory, runbooks_dir):
    from kb.service import Service
    from kb.web.auth import Identity

    svc = Service.from_config(config_factory(
        runbooks_dir=str(runbooks_dir), statement_timeout_ms=500, connect_timeout=2, busy_timeout=1,
        targets={"t": {"dsn": f"host=127.0.0.1 port={proxy.port} user=monitor dbname=postgres"}}))
    try:
        t0 = time.monotonic()
        run = svc.runs.start("probe-lock", "t", {}, Identity("op", "operator", "token"), auto=True)
        assert time.monotonic() - t0 < 4.5
        err = run["steps"][0]["error"]
        assert err["condition"] == "timeout" and "sent nothing" in err["message"], err
        assert err["entry"] is None
    finally:
        svc.runs.close()
