"""Network faults through toxiproxy-python, with request timeouts (the client sets none).

Uses a real Toxiproxy when TOXIPROXY_URL (http://host:port) is set; otherwise starts
`ftbridge.chaos.toxiproxy_server` in a subprocess on a free loopback port, and stops it on exit.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from urllib.parse import urlparse

from toxiproxy import Toxiproxy
from toxiproxy.api import APIConsumer

from ftbridge.cluster.net import free_port

REQUEST_TIMEOUT_S = 5.0


def _with_timeout(fn):
    def call(url, *args, **kwargs):
        kwargs.setdefault("timeout", REQUEST_TIMEOUT_S)
        return fn(url, *args, **kwargs)

    return staticmethod(call)


class _TimedConsumer:
    """Every API request gets a timeout: a dead proxy server is an error, not a hang."""

    installed = False

    @classmethod
    def install(cls) -> None:
        if cls.installed:
            return
        for name in ("get", "post", "delete"):
            original = getattr(APIConsumer, name)
            setattr(APIConsumer, name, _with_timeout(original))
        cls.installed = True


class NetFaults:
    """A Toxiproxy (real or ours) and helpers to put proxies in front of links."""

    def __init__(self) -> None:
        _TimedConsumer.install()
        self.proc = None
        url = os.environ.get("TOXIPROXY_URL")
        if url:
            parsed = urlparse(url)
            host, port = parsed.hostname, parsed.port or 8474
        else:
            host, port = "127.0.0.1", free_port("127.0.0.1")
            self.proc = subprocess.Popen([sys.executable, "-m", "ftbridge.chaos.toxiproxy_server", "--host", host,
                                          "--port", str(port)], stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
        self.client = Toxiproxy()
        self.client.update_api_consumer(host, port)
        deadline = time.monotonic() + 15
        while not self.client.running():
            if time.monotonic() > deadline or (self.proc and self.proc.poll() is not None):
                self.close()
                raise RuntimeError(f"no Toxiproxy API at {host}:{port}")
            time.sleep(0.05)

    def proxy(self, name: str, upstream: str, listen: str = "127.0.0.1:0"):
        existing = self.client.get_proxy(name)
        if existing is not None:
            existing.destroy()
        return self.client.create(upstream=upstream, name=name, listen=listen)

    def close(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.proc = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
