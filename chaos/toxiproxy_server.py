"""A small asyncio server speaking the part of Toxiproxy's HTTP API that toxiproxy-python uses.

No package registry ships a Toxiproxy server, and this kernel has no `tc netem` or iptables.
When TOXIPROXY_URL points at a real Toxiproxy, `ftbridge.chaos.netfaults` uses that instead.

API: GET /version, GET|POST /proxies, GET|POST|DELETE /proxies/{name}, POST /populate,
POST /reset, GET|POST /proxies/{name}/toxics, GET|POST|DELETE /proxies/{name}/toxics/{toxic}.
Toxics: latency (latency, jitter ms), bandwidth (rate KB/s), timeout (timeout ms; 0 = hold),
reset_peer (timeout ms), limit_data (bytes); per stream (upstream = client to server,
downstream = server to client), with toxicity (probability per connection).
One upstream connection per client connection.

Run: ``python -m ftbridge.chaos.toxiproxy_server [--host 127.0.0.1] [--port 8474]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import socket
import struct

log = logging.getLogger("ftbridge.chaos.toxiproxy")
VERSION = "ftbridge-toxiproxy 1.0 (API subset of Toxiproxy 2.x)"
TOXIC_TYPES = {"latency", "bandwidth", "timeout", "reset_peer", "limit_data", "slow_close"}
CHUNK = 32 * 1024


class Proxy:
    def __init__(self, name: str, listen: str, upstream: str, enabled: bool = True) -> None:
        self.name, self.listen, self.upstream, self.enabled = name, listen, upstream, enabled
        self.toxics: dict[str, dict] = {}
        self.server: asyncio.AbstractServer | None = None
        self.conns: set[asyncio.Task] = set()

    def to_dict(self) -> dict:
        return {"name": self.name, "listen": self.listen, "upstream": self.upstream, "enabled": self.enabled,
                "toxics": list(self.toxics.values())}

    async def start(self) -> None:
        host, port = self.listen.rsplit(":", 1)
        self.server = await asyncio.start_server(self._client, host, int(port))
        sock = self.server.sockets[0].getsockname()
        self.listen = f"{sock[0]}:{sock[1]}"
        self.enabled = True

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        for task in list(self.conns):
            task.cancel()
        self.enabled = False

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:  # always, inside a connection's handler
            self.conns.add(task)
        host, port = self.upstream.rsplit(":", 1)
        try:
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 10)
        except (TimeoutError, OSError):
            writer.close()
            self.conns.discard(task)
            return
        active = {n: t for n, t in self.toxics.items() if random.random() < float(t.get("toxicity", 1.0))}
        try:
            await asyncio.gather(self._pipe(reader, up_writer, "upstream", active, writer),
                                 self._pipe(up_reader, writer, "downstream", active, up_writer))
        except (asyncio.CancelledError, ConnectionError, OSError):
            pass
        finally:
            for w in (writer, up_writer):
                try:
                    w.close()
                except Exception:
                    pass
            self.conns.discard(task)

    async def _pipe(self, reader, writer, stream, active, other) -> None:
        sent = 0
        while True:
            toxics = [t for n, t in self.toxics.items() if n in active and t.get("stream", "downstream") == stream]
            for t in toxics:
                attrs = t.get("attributes", {})
                if t["type"] == "timeout":
                    ms = int(attrs.get("timeout", 0))
                    if ms:
                        await asyncio.sleep(ms / 1000)
                        _reset(writer)
                        _reset(other)
                        return
                    await asyncio.sleep(0.1)  # hold: no data passes until the toxic is removed
                    break
                if t["type"] == "reset_peer":
                    await asyncio.sleep(int(attrs.get("timeout", 0)) / 1000)
                    _reset(writer)
                    _reset(other)
                    return
            else:
                data = await reader.read(CHUNK)
                if not data:
                    writer.close()
                    return
                for t in toxics:
                    attrs = t.get("attributes", {})
                    if t["type"] == "latency":
                        jitter = int(attrs.get("jitter", 0))
                        await asyncio.sleep((int(attrs.get("latency", 0)) + random.randint(-jitter, jitter)) / 1000)
                    elif t["type"] == "bandwidth":
                        await asyncio.sleep(len(data) / (max(1, int(attrs.get("rate", 1))) * 1024))
                    elif t["type"] == "limit_data":
                        limit = int(attrs.get("bytes", 0))
                        if sent + len(data) >= limit:
                            writer.write(data[:max(0, limit - sent)])
                            await writer.drain()
                            writer.close()
                            other.close()
                            return
                writer.write(data)
                sent += len(data)
                await writer.drain()
                continue
            continue


def _reset(writer) -> None:
    """Close with RST (SO_LINGER 0), as Toxiproxy's reset_peer does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.close()


class Api:
    def __init__(self) -> None:
        self.proxies: dict[str, Proxy] = {}

    async def handle(self, method: str, path: str, body: dict | list | None) -> tuple[int, object]:
        parts = [p for p in path.split("?")[0].split("/") if p]
        if parts == ["version"]:
            return 200, VERSION
        if parts == ["reset"] and method == "POST":
            for proxy in self.proxies.values():
                proxy.toxics.clear()
                if not proxy.enabled:
                    await proxy.start()
            return 204, None
        if parts == ["populate"] and method == "POST":
            made = []
            for spec in body or []:
                old = self.proxies.pop(spec["name"], None)
                if old:
                    await old.stop()
                made.append((await self._create(spec)).to_dict())
            return 201, {"proxies": made}
        if parts == ["proxies"]:
            if method == "GET":
                return 200, {n: p.to_dict() for n, p in self.proxies.items()}
            if method == "POST":
                if not isinstance(body, dict):
                    return 400, {"error": "a proxy is a JSON object"}
                if body["name"] in self.proxies:
                    return 409, {"error": "proxy already exists"}
                return 201, (await self._create(body)).to_dict()
        if len(parts) >= 2 and parts[0] == "proxies":
            named = self.proxies.get(parts[1])
            if named is None:
                return 404, {"error": "proxy not found"}
            if len(parts) == 2:
                return await self._proxy(method, named, body)
            if parts[2] == "toxics":
                return self._toxics(method, named, parts[3] if len(parts) > 3 else None, body)
        return 404, {"error": f"no route {method} {path}"}

    async def _create(self, spec: dict) -> Proxy:
        proxy = Proxy(spec["name"], spec.get("listen") or "127.0.0.1:0", spec["upstream"])
        if spec.get("enabled", True):
            await proxy.start()
        else:
            proxy.enabled = False
        self.proxies[proxy.name] = proxy
        return proxy

    async def _proxy(self, method, proxy, body):
        if method == "GET":
            return 200, proxy.to_dict()
        if method == "DELETE":
            await proxy.stop()
            del self.proxies[proxy.name]
            return 204, None
        if method == "POST":
            enabled = (body or {}).get("enabled", proxy.enabled)
            if enabled and not proxy.enabled:
                await proxy.start()
            elif not enabled and proxy.enabled:
                await proxy.stop()
            return 200, proxy.to_dict()
        return 405, {"error": "method not allowed"}

    def _toxics(self, method, proxy, name, body):
        if name is None:
            if method == "GET":
                return 200, list(proxy.toxics.values())
            if method == "POST":
                if body.get("type") not in TOXIC_TYPES:
                    return 400, {"error": f"unknown toxic type {body.get('type')!r}"}
                toxic = {"type": body["type"], "stream": body.get("stream", "downstream"),
                         "toxicity": float(body.get("toxicity", 1.0)), "attributes": body.get("attributes", {})}
                toxic["name"] = body.get("name") or f"{toxic['type']}_{toxic['stream']}"
                if toxic["name"] in proxy.toxics:
                    return 409, {"error": "toxic already exists"}
                proxy.toxics[toxic["name"]] = toxic
                return 200, toxic
        elif name in proxy.toxics:
            if method == "GET":
                return 200, proxy.toxics[name]
            if method == "DELETE":
                del proxy.toxics[name]
                return 204, None
            if method == "POST":
                proxy.toxics[name]["attributes"].update((body or {}).get("attributes", {}))
                return 200, proxy.toxics[name]
        return 404, {"error": "toxic not found"}


async def _http(api: Api, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
            length = int(headers.get("content-length", 0))
            raw = await reader.readexactly(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
                status, payload = await api.handle(method, path, body)
            except (KeyError, ValueError, TypeError) as exc:
                status, payload = 400, {"error": f"bad request: {exc}"}
            data = b"" if payload is None else (payload.encode() if isinstance(payload, str)
                                                 else json.dumps(payload).encode())
            reason = {200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request", 404: "Not Found",
                      405: "Method Not Allowed", 409: "Conflict"}.get(status, "OK")
            ctype = "text/plain" if isinstance(payload, str) else "application/json"
            writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(data)}\r\n"
                         f"\r\n".encode() + data)
            await writer.drain()
            if headers.get("connection", "").lower() == "close":
                break
    except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def serve(host: str, port: int, ready=None) -> None:
    api = Api()
    server = await asyncio.start_server(lambda r, w: _http(api, r, w), host, port)
    if ready is not None:
        ready(server.sockets[0].getsockname()[1])
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8474)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    asyncio.run(serve(args.host, args.port, ready=lambda p: print(f"listening on {args.host}:{p}", flush=True)))


if __name__ == "__main__":
    main()
