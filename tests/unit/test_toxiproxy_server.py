"""Our Toxiproxy-compatible server, driven by the real toxiproxy-python client."""

from __future__ import annotations

import socket
import socketserver
import threading
import time

import pytest

from ftbridge.chaos.netfaults import NetFaults
from ftbridge.chaos.toxiproxy_server import VERSION


class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        while True:
            data = self.request.recv(65536)
            if not data:
                return
            self.request.sendall(data)


@pytest.fixture(scope="module")
def echo():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def net():
    with NetFaults() as nf:
        yield nf


def roundtrip(listen: str, payload: bytes, timeout: float = 5.0) -> bytes:
    host, port = listen.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(payload)
        got = b""
        while len(got) < len(payload):
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        return got


def test_api_and_plain_forwarding(net, echo):
    proxy = net.proxy("echo", echo)
    assert "echo" in net.client.proxies()
    assert net.client.version() == VERSION.encode()
    assert roundtrip(proxy.listen, b"hello" * 1000) == b"hello" * 1000


def test_latency_toxic_delays(net, echo):
    proxy = net.proxy("slow", echo)
    proxy.add_toxic(type="latency", attributes={"latency": 300})
    t0 = time.monotonic()
    assert roundtrip(proxy.listen, b"x") == b"x"
    assert time.monotonic() - t0 >= 0.25
    proxy.destroy_toxic("latency_downstream")
    assert proxy.toxics() == {}


def test_limit_data_and_reset_peer_cut_connections(net, echo):
    proxy = net.proxy("limited", echo)
    proxy.add_toxic(type="limit_data", attributes={"bytes": 100})
    assert len(roundtrip(proxy.listen, b"y" * 1000)) == 100
    proxy.destroy_toxic("limit_data_downstream")
    proxy.add_toxic(type="reset_peer", attributes={"timeout": 100}, stream="upstream")
    with pytest.raises((ConnectionError, OSError)):
        for _ in range(20):
            roundtrip(proxy.listen, b"z" * 10)
            time.sleep(0.05)


def test_timeout_toxic_holds_data_and_proxy_down_refuses(net, echo):
    proxy = net.proxy("held", echo)
    proxy.add_toxic(type="timeout", attributes={"timeout": 0})
    with pytest.raises(socket.timeout):
        roundtrip(proxy.listen, b"q", timeout=0.5)
    net.client.reset()
    assert roundtrip(proxy.listen, b"q") == b"q"
    with proxy.down():
        with pytest.raises(ConnectionRefusedError):
            roundtrip(proxy.listen, b"q")
    assert roundtrip(proxy.listen, b"q") == b"q"


def test_bad_requests_are_rejected(net, echo):
    from toxiproxy.exceptions import InvalidToxic, NotFound, ProxyExists

    net.proxy("dup", echo)
    with pytest.raises(ProxyExists):
        net.client.create(upstream=echo, name="dup")
    with pytest.raises(InvalidToxic):
        net.client.get_proxy("dup").add_toxic(type="no_such_toxic")
    with pytest.raises(NotFound):
        net.client.get_proxy("dup").destroy_toxic("missing")


def test_client_times_out_on_a_dead_server(net):
    import requests
    from toxiproxy.api import APIConsumer

    with socket.socket() as blackhole:
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(1)
        host, port = APIConsumer.host, APIConsumer.port
        APIConsumer.port = blackhole.getsockname()[1]
        try:
            with pytest.raises(requests.exceptions.Timeout):
                net.client.proxies()  # a bounded wait: a server that never answers is a Timeout
        finally:
            APIConsumer.host, APIConsumer.port = host, port
