"""A registry far away: a proxy of this project's own between a runner and a registry.

    python -m tests.far_registry --upstream 127.0.0.1:5000 --rtt 50

It listens on 127.0.0.1 only, on two ports, printed as one JSON line when it is ready:

- `port` is the far registry: every connection gets the chosen round trip (half of it
  each way, added to every byte, and one more round trip before the first byte, as a
  TCP handshake costs), then reaches the HTTP layer, which forwards each request to the
  upstream registry unless a fault rule picks it: `429` (with `Retry-After` and a JSON
  `errors` body), `503`, `reset` (the connection is reset, RST) or `stall` (the request
  is read and not answered: the connection is reset after `hold` seconds, 5 by default,
  as a load balancer's idle timeout would, unless the client gives up first). `/token`
  is a Bearer token server (JWTs signed with the key whose certificate the registry's
  `auth: token: rootcertbundle` names).
- `control` takes the proxy's settings and tells what it served, with no delay:
  `PUT /rtt` (a number of milliseconds), `PUT /faults` (a JSON list of rules, below),
  `GET /log?since=N` (the requests served since entry N: method, path, query, status,
  fault, connection, start and end times).

A fault rule picks requests by method and path (a regular expression) and by their
logical key, the method and the path with an upload's id left out: a retried request
has the same key. `every: 3` picks one key in three (the first the rule sees, the
fourth, ...), `times: 1` only the first try of each picked key (a larger number: that
many tries). Pure standard library and h11 (and PyJWT, only to sign tokens).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import itertools
import json
import re
import socket
import struct
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import h11

CHUNK = 65536
_UPLOAD = re.compile(r"(/blobs/uploads/)[^/?]+")
# Direct requests to the control port: never through a proxy of the environment.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Rule:
    """Which requests get a fault, and which fault."""

    action: str  # "429", "503", "reset", "stall"
    methods: tuple[str, ...] = ()  # none: any
    path: str = ""  # a regular expression searched in the path; "": any
    every: int = 1  # one logical key in `every`
    times: int = 1  # the first `times` tries of each picked key
    retry_after: str | None = None  # the Retry-After header of a 429 or 503
    hold: float = 5.0  # stall: seconds before the connection is reset, as a balancer does
    hits: dict[str, int] = field(default_factory=dict)
    order: dict[str, int] = field(default_factory=dict)  # each key's place among those seen

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Rule:
        return cls(
            action=str(data["action"]),
            methods=tuple(str(method).upper() for method in data.get("methods") or ()),
            path=str(data.get("path") or ""),
            every=int(data.get("every", 1)),
            times=int(data.get("times", 1)),
            retry_after=None if data.get("retry_after") is None else str(data["retry_after"]),
            hold=float(data.get("hold", 5.0)),
        )

    def picks(self, method: str, path: str, key: str) -> bool:
        if self.methods and method not in self.methods:
            return False
        if self.path and not re.search(self.path, path):
            return False
        place = self.order.setdefault(key, len(self.order))  # the first key, then every Nth
        if place % self.every:
            return False
        tries = self.hits.get(key, 0)
        if tries >= self.times:
            return False
        self.hits[key] = tries + 1
        return True


def logical_key(method: str, target: str) -> str:
    """The method and target of a request, with an upload's id and its state left out."""
    path, _, query = target.partition("?")
    kept = [item for item in query.split("&") if item and not item.startswith("_state=")]
    path = _UPLOAD.sub(r"\1*", path)
    return f"{method} {path}?{'&'.join(sorted(kept))}"


class Tokens:
    """A Bearer token server for the distribution registry's `auth: token`."""

    def __init__(self, key: Path, certificate: Path, issuer: str, users: dict[str, str]) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        self.key = key.read_bytes()
        certificate_pem = certificate.read_bytes()
        der = x509.load_pem_x509_certificate(certificate_pem).public_bytes(
            serialization.Encoding.DER
        )
        self.chain = [base64.b64encode(der).decode()]
        self.issuer = issuer
        self.users = users
        self.lifetime = 300

    def answer(self, query: str, authorization: str) -> tuple[int, dict[str, Any]]:
        import jwt

        params = urllib.parse.parse_qs(query)
        account = ""
        if authorization.lower().startswith("basic "):
            decoded = base64.b64decode(authorization[6:]).decode()
            account, _, password = decoded.partition(":")
            if self.users.get(account) != password:
                return 401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad login"}]}
        access = []
        for scope in params.get("scope", []):
            for one in scope.split(" "):
                kind, _, rest = one.partition(":")
                name, _, actions = rest.rpartition(":")
                granted = [a for a in actions.split(",") if a and (account or a == "pull")]
                if kind == "repository" and name and granted:
                    access.append({"type": kind, "name": name, "actions": granted})
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": account,
            "aud": params.get("service", [""])[0],
            "exp": now + self.lifetime,
            "nbf": now - 10,
            "iat": now,
            "jti": hashlib.sha256(f"{now} {time.monotonic()}".encode()).hexdigest()[:20],
            "access": access,
        }
        token = jwt.encode(claims, self.key, algorithm="RS256", headers={"x5c": self.chain})
        return 200, {"token": token, "access_token": token, "expires_in": self.lifetime}


class Proxy:
    def __init__(self, upstream: str, rtt: float, tokens: Tokens | None) -> None:
        host, _, port = upstream.rpartition(":")
        self.upstream = (host, int(port))
        self.rtt = rtt  # seconds
        self.tokens = tokens
        self.rules: list[Rule] = []
        self.log: list[dict[str, Any]] = []
        self._connections = itertools.count(1)
        self.inner_port = 0

    # -- the delay: a TCP hop in front of the HTTP layer ------------------------------

    async def relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One client connection: a round trip before the first byte, half of one on
        every byte each way; a reset on one side resets the other."""
        ready = time.monotonic() + self.rtt
        try:
            inner_reader, inner_writer = await asyncio.open_connection("127.0.0.1", self.inner_port)
        except OSError:
            _reset(writer)
            return
        await asyncio.gather(
            self._pipe(reader, inner_writer, ready),
            self._pipe(inner_reader, writer, ready),
        )

    async def _pipe(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, ready: float
    ) -> None:
        queue: asyncio.Queue[tuple[float, bytes | BaseException | None]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                when, item = await queue.get()
                await asyncio.sleep(max(0.0, when - time.monotonic()))
                if isinstance(item, BaseException):
                    _reset(sink)
                    return
                if item is None:
                    with contextlib.suppress(OSError):
                        if sink.can_write_eof():
                            sink.write_eof()
                    return
                try:
                    sink.write(item)
                    await sink.drain()
                except OSError:
                    return

        delivery = asyncio.create_task(deliver())
        while True:
            try:
                data: bytes | BaseException | None = await source.read(CHUNK)
            except OSError as exc:
                data = exc
            when = max(time.monotonic(), ready) + self.rtt / 2
            if data == b"":
                data = None
            await queue.put((when, data))
            if data is None or isinstance(data, BaseException):
                break
        await delivery
        with contextlib.suppress(OSError):
            sink.close()

    # -- the HTTP layer ---------------------------------------------------------------

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = next(self._connections)
        client = h11.Connection(h11.SERVER)
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter, h11.Connection] | None = None
        try:
            while True:
                request = await _next_event(client, reader)
                if not isinstance(request, h11.Request):
                    break
                method = request.method.decode()
                target = request.target.decode()
                path, _, query = target.partition("?")
                entry: dict[str, Any] = {
                    "connection": connection, "method": method, "path": path, "query": query,
                    "agent": _header(request, b"user-agent"), "start": time.time(),
                    "fault": None, "status": None,
                }
                self.log.append(entry)
                key = logical_key(method, target)
                rule = next((r for r in self.rules if r.picks(method, path, key)), None)
                if path == "/token" and self.tokens is not None:
                    await _drain(client, reader)
                    status, body = self.tokens.answer(query, _header(request, b"authorization"))
                    await _respond(client, writer, status, body, method)
                    entry["status"] = status
                elif rule is not None:
                    entry["fault"] = rule.action
                    if rule.action == "reset":
                        _reset(writer)
                        return
                    if rule.action == "stall":
                        entry["status"] = "stalled"
                        await _drain(client, reader)
                        with contextlib.suppress(TimeoutError):  # until the client gives up,
                            await asyncio.wait_for(reader.read(), rule.hold)
                        _reset(writer)  # or the hold ends, as an idle timeout would
                        return
                    await _drain(client, reader)
                    code = "TOOMANYREQUESTS" if rule.action == "429" else "UNAVAILABLE"
                    body = {"errors": [{"code": code, "message": f"{rule.action} from the proxy"}]}
                    extra = [("Retry-After", rule.retry_after)] if rule.retry_after else []
                    await _respond(client, writer, int(rule.action), body, method, extra)
                    entry["status"] = int(rule.action)
                else:
                    if upstream is None:
                        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
                        upstream = (up_reader, up_writer, h11.Connection(h11.CLIENT))
                    entry["status"] = await self._forward(request, client, reader, writer, upstream)
                entry["end"] = time.time()
                if client.our_state is h11.MUST_CLOSE or client.their_state is h11.MUST_CLOSE:
                    break
                client.start_next_cycle()
                if upstream is not None:
                    if upstream[2].our_state is h11.DONE and upstream[2].their_state is h11.DONE:
                        upstream[2].start_next_cycle()
                    else:
                        upstream[1].close()
                        upstream = None
        except (OSError, h11.ProtocolError, asyncio.IncompleteReadError):
            pass
        finally:
            with contextlib.suppress(OSError):
                writer.close()
            if upstream is not None:
                with contextlib.suppress(OSError):
                    upstream[1].close()

    async def _forward(
        self,
        request: h11.Request,
        client: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter, h11.Connection],
    ) -> int:
        up_reader, up_writer, up = upstream
        up_writer.write(up.send(h11.Request(
            method=request.method, target=request.target, headers=request.headers
        )) or b"")
        await _pass_body(client, reader, up, up_writer)
        while True:  # the response
            event = await _next_event(up, up_reader)
            if isinstance(event, h11.Response):
                writer.write(client.send(h11.Response(
                    status_code=event.status_code, headers=event.headers, reason=event.reason
                )) or b"")
                await _pass_body(up, up_reader, client, writer)
                return int(event.status_code)
            if not isinstance(event, h11.InformationalResponse):
                raise h11.ProtocolError("the upstream closed before answering")

    # -- control --------------------------------------------------------------------

    async def control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = h11.Connection(h11.SERVER)
        try:
            while True:
                request = await _next_event(client, reader)
                if not isinstance(request, h11.Request):
                    return
                body = b""
                while True:
                    event = await _next_event(client, reader)
                    if isinstance(event, h11.Data):
                        body += bytes(event.data)
                    else:
                        break
                path, _, query = request.target.decode().partition("?")
                answer: Any = {}
                if path == "/rtt":
                    self.rtt = float(body) / 1000
                elif path == "/faults":
                    self.rules = [Rule.from_json(item) for item in json.loads(body or b"[]")]
                elif path == "/log":
                    since = int(urllib.parse.parse_qs(query).get("since", ["0"])[0])
                    answer = self.log[since:]
                await _respond(client, writer, 200, answer, request.method.decode())
                client.start_next_cycle()
        except (OSError, h11.ProtocolError):
            pass
        finally:
            with contextlib.suppress(OSError):
                writer.close()


async def _next_event(connection: h11.Connection, reader: asyncio.StreamReader) -> Any:
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            connection.receive_data(await reader.read(CHUNK))
            continue
        return event


async def _pass_body(
    source: h11.Connection, reader: asyncio.StreamReader,
    sink: h11.Connection, writer: asyncio.StreamWriter,
) -> None:
    """Copy a message's body from one side to the other, to its end."""
    while True:
        event = await _next_event(source, reader)
        if not isinstance(event, h11.Data | h11.EndOfMessage):
            raise h11.ProtocolError("the message ended early")
        writer.write(sink.send(event) or b"")
        await writer.drain()
        if isinstance(event, h11.EndOfMessage):
            return


async def _drain(connection: h11.Connection, reader: asyncio.StreamReader) -> None:
    """Read the request's body to its end, for nothing."""
    while connection.their_state is h11.SEND_BODY:
        event = await _next_event(connection, reader)
        if isinstance(event, h11.ConnectionClosed):
            return


async def _respond(
    connection: h11.Connection, writer: asyncio.StreamWriter, status: int, body: Any,
    method: str, extra: Iterable[tuple[str, str]] = (),
) -> None:
    payload = json.dumps(body).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(payload))),
               *extra]
    writer.write(connection.send(h11.Response(status_code=status, headers=headers)) or b"")
    if method != "HEAD":
        writer.write(connection.send(h11.Data(data=payload)) or b"")
    writer.write(connection.send(h11.EndOfMessage()) or b"")
    await writer.drain()


def _header(request: h11.Request, name: bytes) -> str:
    for key, value in request.headers:
        if key.lower() == name:
            return bytes(value).decode()
    return ""


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (RST), not an orderly end."""
    sock = writer.get_extra_info("socket")
    with contextlib.suppress(OSError):
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()


async def main_async(args: argparse.Namespace) -> None:
    tokens = None
    if args.token_key:
        users = dict(user.split(":", 1) for user in args.user)
        tokens = Tokens(Path(args.token_key), Path(args.token_cert), args.issuer, users)
    proxy = Proxy(args.upstream, args.rtt / 1000, tokens)
    inner = await asyncio.start_server(proxy.serve, "127.0.0.1", 0)
    proxy.inner_port = inner.sockets[0].getsockname()[1]
    outer = await asyncio.start_server(proxy.relay, "127.0.0.1", args.port)
    control = await asyncio.start_server(proxy.control, "127.0.0.1", 0)
    ports = {
        "port": outer.sockets[0].getsockname()[1],
        "control": control.sockets[0].getsockname()[1],
    }
    print(json.dumps(ports), flush=True)
    await asyncio.gather(inner.serve_forever(), outer.serve_forever(), control.serve_forever())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", required=True, help="the registry, host:port")
    parser.add_argument("--port", type=int, default=0, help="the far registry's port")
    parser.add_argument("--rtt", type=float, default=0.0, help="round trip, in milliseconds")
    parser.add_argument("--token-key", help="PEM key that signs Bearer tokens")
    parser.add_argument("--token-cert", help="its certificate (the registry's rootcertbundle)")
    parser.add_argument("--issuer", default="paitasks-test-issuer")
    parser.add_argument("--user", action="append", default=[], help="USER:PASSWORD")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main_async(parser.parse_args(argv)))


# -- from a test or the benchmark ------------------------------------------------------


class FarRegistry:
    """The proxy in its own process, in front of `upstream` (host:port):

        with FarRegistry("127.0.0.1:5000", rtt_ms=50) as far:
            far.address             # "127.0.0.1:<port>": name the registry so
            mark = far.mark()
            ...
            far.requests(mark)      # what it served since
            far.faults([{"action": "429", "every": 3, "retry_after": "1"}])
    """

    def __init__(
        self, upstream: str, rtt_ms: float = 0, port: int = 0,
        tokens: tuple[Path, Path, dict[str, str]] | None = None,
        issuer: str = "paitasks-test-issuer",
    ) -> None:
        self.upstream = upstream
        self.command = [sys.executable, "-m", "tests.far_registry", "--upstream", upstream,
                        "--rtt", str(rtt_ms), "--port", str(port)]
        if tokens is not None:
            key, certificate, users = tokens
            self.command += ["--token-key", str(key), "--token-cert", str(certificate),
                             "--issuer", issuer]
            self.command += [arg for user in users.items() for arg in ("--user", ":".join(user))]
        self._process: subprocess.Popen[str] | None = None
        self.port = 0
        self.control = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        root = Path(__file__).resolve().parent.parent
        self._process = subprocess.Popen(
            self.command, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
            cwd=root, start_new_session=True,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            self.stop()
            raise AssertionError(f"the far registry did not start: {' '.join(self.command)}")
        ports = json.loads(line)
        self.port, self.control = int(ports["port"]), int(ports["control"])

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
        self._process = None

    def __enter__(self) -> FarRegistry:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _call(self, method: str, path: str, body: bytes = b"") -> Any:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.control}{path}", data=body or None, method=method
        )
        with _opener.open(request, timeout=30) as response:
            return json.load(response)

    def rtt(self, milliseconds: float) -> None:
        self._call("PUT", "/rtt", str(milliseconds).encode())

    def faults(self, rules: list[dict[str, Any]]) -> None:
        """Replace the fault rules (and forget which keys they picked)."""
        self._call("PUT", "/faults", json.dumps(rules).encode())

    def mark(self) -> int:
        return len(self._call("GET", "/log"))

    def requests(self, since: int = 0) -> list[dict[str, Any]]:
        """What the far registry served since `since` (a `mark()`), in the order begun."""
        return list(self._call("GET", f"/log?since={since}"))


def token_keys(folder: Path) -> tuple[Path, Path]:
    """A new RSA key and its self-signed certificate (PEM), to sign and check tokens."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "paitasks test token issuer")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    key_path, certificate_path = folder / "token.key", folder / "token.crt"
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ))
    certificate_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return key_path, certificate_path


if __name__ == "__main__":
    main()
