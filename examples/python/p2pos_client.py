"""A client of the p2pos local API (docs/spec/local-api.md), standard library only.

It is written from the spec alone, as any third-party client could be::

    import p2pos_client as p2p

    client = p2p.Client.connect()                 # finds the daemon through $P2POS_HOME

    # receiving: an event session, a registration, then accept the channels it announces
    with client.events() as session:
        client.register(session.id, "org.example.chat")
        for event in session:
            if event.name == "channel.incoming":
                with client.accept_channel(event.data["channel"]) as ch:
                    for msg in ch:                # each message is ACKed when the loop asks for the next
                        print(ch.peer, msg.text())

    # sending
    with client.open_channel(peer_id, "org.example.chat") as ch:
        ch.send(b"hello")                         # returns once the remote app acknowledged it

Every failure is a :class:`P2posError` carrying the spec's stable error ``code`` (§3).

Acknowledgements (§8): a received message is acknowledged by :meth:`Channel.ack` or refused by
:meth:`Channel.nack`. A message handed out by :meth:`Channel.recv` that the application has not
answered by the time it calls ``recv()`` again (or iterates on, or closes the channel) is ACKed then —
so "asking for the next message" means "I am done with this one". An exception escaping a
``with channel:`` block NACKs it instead.

Byte streams: :meth:`Channel.write` / :meth:`Channel.end` send DATA and END frames, :meth:`Channel.read`
returns the remote stream's chunks. A stream header (``kind`` 1) is acknowledged only after its stream
has been consumed, so send it with :meth:`Channel.post`, write the stream, then :meth:`Channel.wait_ack`.

Closing (§7, §8): :meth:`Channel.close` sends CLOSE and then half-closes the connection; ``recv()``
returns None once the remote app did the same. A connection that ends without CLOSE is a reset, and
``recv()``, ``read()`` and a waiting ``send()`` raise ``E_CHANNEL_CLOSED``.

A :class:`Channel` is meant to be used by one thread. While :meth:`Channel.send` waits for its ACK it
keeps reading the connection; messages and byte-stream data that arrive meanwhile are queued for
:meth:`Channel.recv` and :meth:`Channel.read`. Such queued messages are not acknowledged until they are
received, so two peers that both only ``send()`` at the same moment each wait for the other; receive on
another thread (or channel) if your protocol needs that.
"""
from __future__ import annotations

import http.client
import json
import os
import socket
import struct
import threading
import time
import urllib.parse
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

__all__ = [
    "API_VERSION", "P2posError", "Client", "EventSession", "Event", "Channel", "Message",
    "MSG", "ACK", "DATA", "END", "NACK", "CLOSE", "KIND_MESSAGE", "KIND_STREAM_HEADER", "MAX_BODY",
    "default_home",
]

API_VERSION = 0
PREFIX = "/v0"

# §8 frame types
MSG, ACK, DATA, END, NACK, CLOSE = 1, 2, 3, 4, 5, 6
_FRAME_TYPES = (MSG, ACK, DATA, END, NACK, CLOSE)
# §8 message kinds
KIND_MESSAGE = 0
KIND_STREAM_HEADER = 1
# §8/§9 limits
MAX_BODY = 1024 * 1024                  # message body and DATA payload
MAX_PAYLOAD = MAX_BODY + 5              # the longest legal frame payload (MSG: id + kind + body)

_HEADER = struct.Struct(">BI")          # type u8, length u32 BE
_U32 = struct.Struct(">I")


class P2posError(Exception):
    """An error with a stable code from the spec (§3), e.g. ``E_NO_APP``; ``message`` is for people."""

    def __init__(self, code: str, message: str = "", details: Optional[dict] = None, status: Optional[int] = None):
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message
        self.details = details or {}
        self.status = status


def default_home() -> str:
    """``$P2POS_HOME``, else ``~/.p2pos`` (§1)."""
    return os.environ.get("P2POS_HOME") or os.path.join(os.path.expanduser("~"), ".p2pos")


def _not_running(home: str, why: str) -> P2posError:
    return P2posError("E_DAEMON_NOT_RUNNING",
                      f"no p2pos daemon answers at {home} ({why}) — start it with \"p2pos daemon\"")


def _error_from_body(status: int, body: bytes) -> P2posError:
    """Turns an error response (§3) into a P2posError."""
    try:
        err = json.loads(body.decode("utf-8"))["error"]
        return P2posError(str(err["code"]), str(err.get("message", "")), err.get("details"), status)
    except (ValueError, KeyError, TypeError):
        return P2posError("E_PROTOCOL", f"unexpected HTTP {status} without an error object", status=status)


class _UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over a Unix domain socket; the Host header is ``localhost`` (accepted there, §2)."""

    def __init__(self, path: str, timeout: Optional[float] = None):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self._path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


# --------------------------------------------------------------------------------------------------
# the client


class Client:
    """The daemon of one home: makes calls, event sessions and channels. Safe to share between threads
    (every request uses its own connection)."""

    def __init__(self, home: Optional[str] = None, token: Optional[str] = None):
        self.home = home or default_home()
        try:
            with open(os.path.join(self.home, "api.json"), encoding="utf-8") as f:
                info = json.load(f)
        except FileNotFoundError:
            raise _not_running(self.home, "no api.json") from None
        except (OSError, ValueError) as e:
            raise _not_running(self.home, f"unreadable api.json: {e}") from None
        #: ``http://127.0.0.1:PORT``
        self.url: Optional[str] = info.get("api")
        #: path of the Unix socket, preferred when it exists and this platform has Unix sockets
        self.socket_path: Optional[str] = info.get("socket") or os.path.join(self.home, "api.sock")
        if not hasattr(socket, "AF_UNIX") or not os.path.exists(self.socket_path):
            self.socket_path = None
        #: this node's peer id
        self.peer_id: str = info.get("peerId", "")
        if token is None:
            try:
                with open(os.path.join(self.home, "api-token"), encoding="utf-8") as f:
                    token = f.read().strip()
            except OSError as e:
                raise P2posError("E_UNAUTHORIZED", f"cannot read the API token in {self.home}: {e}") from None
        self.token = token

    @classmethod
    def connect(cls, home: Optional[str] = None, token: Optional[str] = None) -> "Client":
        """Finds the daemon of ``home`` and checks that it speaks API version 0."""
        client = cls(home, token)
        v = client.version()
        if v.get("apiVersion") != API_VERSION:
            raise P2posError("E_PROTOCOL", f"the daemon speaks API version {v.get('apiVersion')}, not {API_VERSION}")
        return client

    # ---- transport

    def _tcp_address(self) -> tuple[str, int]:
        u = urllib.parse.urlsplit(self.url or "")
        if u.hostname is None:
            raise _not_running(self.home, "api.json has no API address")
        return u.hostname, u.port or 80

    def _http(self, timeout: Optional[float]) -> http.client.HTTPConnection:
        """A connected HTTP connection: the Unix socket when possible, else TCP (§1)."""
        if self.socket_path is not None:
            conn: http.client.HTTPConnection = _UnixHTTPConnection(self.socket_path, timeout)
            try:
                conn.connect()
                return conn
            except (FileNotFoundError, ConnectionRefusedError):
                if not self.url:
                    raise _not_running(self.home, "connection refused") from None
            except OSError as e:
                # e.g. a path too long for a Unix socket address: fall back to TCP
                if not self.url:
                    raise _not_running(self.home, str(e)) from None
        host, port = self._tcp_address()
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            conn.connect()
        except (ConnectionRefusedError, OSError) as e:
            raise _not_running(self.home, str(e)) from None
        return conn

    def _raw_socket(self, timeout: Optional[float]) -> tuple[socket.socket, str]:
        """A connected socket and the Host header to use on it (for upgrades)."""
        conn = self._http(timeout)
        sock = conn.sock
        conn.sock = None  # take it over: http.client must not close it
        host = "localhost" if isinstance(conn, _UnixHTTPConnection) else f"{conn.host}:{conn.port}"
        return sock, host

    def _headers(self, extra: Optional[dict] = None) -> dict:
        h = {"Authorization": f"Bearer {self.token}"}
        h.update(extra or {})
        return h

    # ---- calls (§5)

    def version(self, timeout: float = 10.0) -> dict:
        """``GET /v0/version`` — needs no token."""
        conn = self._http(timeout)
        try:
            conn.request("GET", f"{PREFIX}/version")
            res = conn.getresponse()
            body = res.read()
        finally:
            conn.close()
        if res.status != 200:
            raise _error_from_body(res.status, body)
        return json.loads(body)["result"]

    def call(self, method: str, params: Optional[dict] = None, timeout: float = 130.0) -> Any:
        """Calls a method (§5) and returns its ``result``; raises P2posError on an error response.
        ``params`` left out (None) are not sent; the spec refuses unknown parameters."""
        body = json.dumps({k: v for k, v in (params or {}).items() if v is not None}).encode("utf-8")
        conn = self._http(timeout)
        try:
            conn.request("POST", f"{PREFIX}/call/{method}", body,
                         self._headers({"Content-Type": "application/json"}))
            res = conn.getresponse()
            data = res.read()
        except socket.timeout:
            raise P2posError("E_TIMEOUT", f"{method}: no answer within {timeout} s") from None
        except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected) as e:
            raise _not_running(self.home, str(e)) from None
        finally:
            conn.close()
        try:
            doc = json.loads(data.decode("utf-8"))
        except ValueError:
            raise P2posError("E_PROTOCOL", f"{method}: HTTP {res.status}, not JSON", status=res.status) from None
        if isinstance(doc, dict) and "error" in doc:
            raise _error_from_body(res.status, data)
        if res.status != 200 or not isinstance(doc, dict) or "result" not in doc:
            raise P2posError("E_PROTOCOL", f"{method}: HTTP {res.status} without a result", status=res.status)
        return doc["result"]

    def info(self) -> dict:
        """``node.info``: peerId, addrs, reachability, …"""
        return self.call("node.info")

    def register(self, session: str, app: str) -> dict:
        """``apps.register``: inbound channels for ``app`` are announced on event session ``session``."""
        return self.call("apps.register", {"session": session, "app": app})

    def unregister(self, session: str, app: str) -> dict:
        return self.call("apps.unregister", {"session": session, "app": app})

    # ---- events (§6)

    def events(self) -> "EventSession":
        """Opens an event session; its ``id`` is the ``session`` parameter of ``register``."""
        conn = self._http(timeout=30.0)
        try:
            conn.request("POST", f"{PREFIX}/events", b"{}", self._headers({"Content-Type": "application/json"}))
            sock = conn.sock   # kept: http.client may drop its reference once the response is read
            res = conn.getresponse()
            if res.status != 200:
                raise _error_from_body(res.status, res.read())
            return EventSession(conn, res, sock)
        except BaseException:
            conn.close()
            raise

    # ---- channels (§7)

    def open_channel(self, peer: str, app: str, timeout_ms: int = 15000) -> "Channel":
        """Opens a channel to ``app`` on ``peer``; returns once the remote app has accepted it."""
        q = urllib.parse.urlencode({"peer": peer, "app": app, "timeoutMs": int(timeout_ms)})
        return self._upgrade(f"{PREFIX}/channels/open?{q}", timeout_ms / 1000 + 10)

    def accept_channel(self, channel_id: str) -> "Channel":
        """Accepts an inbound channel announced by ``channel.incoming`` (do it within 10 s)."""
        q = urllib.parse.urlencode({"channel": channel_id})
        return self._upgrade(f"{PREFIX}/channels/accept?{q}", 30.0)

    def _upgrade(self, target: str, timeout: float) -> "Channel":
        """Sends the Upgrade request by hand and reads the answer head off the raw socket."""
        sock, host = self._raw_socket(timeout)
        try:
            request = (f"POST {target} HTTP/1.1\r\n"
                       f"Host: {host}\r\n"
                       f"Authorization: Bearer {self.token}\r\n"
                       "Connection: Upgrade\r\n"
                       "Upgrade: p2pos-channel\r\n"
                       "Content-Length: 0\r\n"
                       "\r\n")
            sock.sendall(request.encode("latin-1"))
            buf = bytearray()
            while b"\r\n\r\n" not in buf:
                if len(buf) > 64 * 1024:
                    raise P2posError("E_PROTOCOL", "response head too long")
                chunk = sock.recv(65536)
                if not chunk:
                    raise P2posError("E_PROTOCOL", "the daemon closed the connection before answering")
                buf += chunk
            head, _, rest = bytes(buf).partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            parts = lines[0].split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
                raise P2posError("E_PROTOCOL", f"bad status line {lines[0]!r}")
            status = int(parts[1])
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            if status == 101:
                if headers.get("upgrade", "").lower() != "p2pos-channel":
                    raise P2posError("E_PROTOCOL", f"upgraded to {headers.get('upgrade')!r}, not p2pos-channel")
                sock.settimeout(None)
                return Channel(sock, bytes(rest), headers.get("p2pos-channel", ""), headers.get("p2pos-peer", ""),
                               headers.get("p2pos-app", ""), headers.get("p2pos-relayed") == "1")
            body = _read_body(sock, rest, headers)
            raise _error_from_body(status, body)
        except socket.timeout:
            sock.close()
            raise P2posError("E_TIMEOUT", f"no answer from the daemon within {timeout:.0f} s") from None
        except (ConnectionResetError, BrokenPipeError) as e:
            sock.close()
            raise _not_running(self.home, str(e)) from None
        except BaseException:
            sock.close()
            raise


def _read_body(sock: socket.socket, rest: bytes, headers: dict) -> bytes:
    """The body of a (small) error response: by Content-Length, chunked, or up to the close."""
    buf = bytearray(rest)
    te = headers.get("transfer-encoding", "").lower()
    length = headers.get("content-length")

    def fill() -> bool:
        chunk = sock.recv(65536)
        buf.extend(chunk)
        return bool(chunk)

    if length is not None and length.isdigit() and te != "chunked":
        n = int(length)
        while len(buf) < n and fill():
            pass
        return bytes(buf[:n])
    if te == "chunked":
        out = bytearray()
        pos = 0
        while True:
            while b"\r\n" not in buf[pos:]:
                if not fill():
                    return bytes(out)
            end = buf.index(b"\r\n", pos)
            size = int(bytes(buf[pos:end]).split(b";")[0] or b"0", 16)
            if size == 0:
                return bytes(out)
            while len(buf) < end + 2 + size + 2:
                if not fill():
                    return bytes(out + buf[end + 2:])
            out += buf[end + 2:end + 2 + size]
            pos = end + 2 + size + 2
    while fill():
        pass
    return bytes(buf)


# --------------------------------------------------------------------------------------------------
# events


@dataclass
class Event:
    """One line of an event session: ``{"event": name, "data": {…}}``."""
    name: str
    data: dict = field(default_factory=dict)


class EventSession:
    """``POST /v0/events``: iterate it for events; registrations made with its ``id`` last until it is
    closed. Iteration ends when the daemon ends the session."""

    def __init__(self, conn: http.client.HTTPConnection, res: http.client.HTTPResponse, sock: Optional[socket.socket]):
        self._conn = conn
        self._res = res
        self._sock = sock
        self._lock = threading.Lock()
        self._reading = False
        self.closed = False
        first = self._next()
        if first is None or first.name != "session" or not first.data.get("session"):
            self.close()
            raise P2posError("E_PROTOCOL", f"the event session did not start with a session event: {first}")
        #: the session id, e.g. ``s1a2b…``
        self.id: str = str(first.data["session"])
        if sock is not None:
            sock.settimeout(None)   # after the first line, events come whenever they come

    def _readline(self) -> bytes:
        """One line of the response, or b"" at its end. close() from another thread wakes it up; the
        resources are released by whichever of the two comes last."""
        with self._lock:
            if self.closed:
                return b""
            self._reading = True
        try:
            return self._res.readline()
        except (OSError, ValueError, http.client.HTTPException):
            return b""
        finally:
            with self._lock:
                self._reading = False
                if self.closed:
                    self._release()

    def _next(self) -> Optional[Event]:
        while True:
            line = self._readline()
            if not line:
                return None
            line = line.strip()
            if not line:
                continue
            try:
                doc = json.loads(line.decode("utf-8"))
            except ValueError:
                raise P2posError("E_PROTOCOL", f"bad event line {line[:80]!r}") from None
            return Event(str(doc.get("event", "")), doc.get("data") or {})

    def __iter__(self) -> Iterator[Event]:
        while not self.closed:
            ev = self._next()
            if ev is None:
                return
            yield ev

    def close(self) -> None:
        """Ends the session (and with it its registrations). Safe to call from another thread."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            if self._sock is not None:
                try:
                    self._sock.shutdown(socket.SHUT_RDWR)   # ends it now, and wakes a blocked reader
                except OSError:
                    pass
            if not self._reading:
                self._release()

    def _release(self) -> None:
        self._res.close()
        self._conn.close()
        if self._sock is not None:
            self._sock.close()

    def __enter__(self) -> "EventSession":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# --------------------------------------------------------------------------------------------------
# channels (§8)


@dataclass
class Message:
    """A received MSG frame. ``kind`` 0 is an application message, 1 a stream header."""
    id: int
    kind: int
    data: bytes
    answered: bool = False

    def text(self) -> str:
        return self.data.decode("utf-8")

    def json(self) -> Any:
        return json.loads(self.data.decode("utf-8"))


def encode_frame(ftype: int, payload: bytes = b"") -> bytes:
    return _HEADER.pack(ftype, len(payload)) + payload


def encode_msg(mid: int, kind: int, body: bytes) -> bytes:
    return encode_frame(MSG, _U32.pack(mid) + bytes([kind]) + body)


def encode_nack(mid: int, code: str, message: str) -> bytes:
    return encode_frame(NACK, _U32.pack(mid) + json.dumps({"code": code, "message": message}).encode("utf-8"))


class Channel:
    """A channel to the app with the same id on ``peer``: acknowledged messages and one byte stream
    each way. Use it as a context manager, or call :meth:`close`."""

    def __init__(self, sock: socket.socket, initial: bytes, channel_id: str, peer: str, app: str, relayed: bool):
        self.sock = sock
        self.id = channel_id
        self.peer = peer
        self.app = app
        self.relayed = relayed
        self._buf = bytearray(initial)
        self._inbox: deque[Message] = deque()
        self._stream: deque[bytes] = deque()
        self._stream_ended = False
        self._pending: set[int] = set()                     # ids of our unanswered messages
        self._answers: dict[int, tuple[int, bytes]] = {}   # id → (ACK|NACK, payload)
        self._eof = False              # the connection has ended (or failed)
        self._remote_closed = False    # the remote app sent CLOSE: a clean end, not a reset
        self._closed = False           # we closed (or aborted) our side
        self._next_id = 1
        self._unanswered: Optional[Message] = None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass  # a Unix socket

    # ---- reading frames

    def _ended_error(self) -> P2posError:
        """What waiting on a channel that will deliver nothing more means."""
        if self._remote_closed:
            return P2posError("E_CHANNEL_CLOSED", "the remote app closed the channel")
        if self._closed and not self._eof:
            return P2posError("E_CHANNEL_CLOSED", "the channel is closed")
        return P2posError("E_CHANNEL_CLOSED", "the channel was reset (the remote app or a daemon went away)")

    def _fail(self, code: str, message: str) -> P2posError:
        self._abort()
        return P2posError(code, message)

    def _abort(self) -> None:
        self._closed = True
        self._eof = True
        try:
            self.sock.close()
        except OSError:
            pass

    def _pump(self, timeout: Optional[float]) -> None:
        """Reads at least one more chunk and sorts out the complete frames in the buffer.
        Sets ``_eof`` at the end of the connection; raises P2posError on a connection error or a
        protocol error. (An end without CLOSE is a reset: the callers report it.)"""
        if self._eof:
            return
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(256 * 1024)
        except socket.timeout:
            raise P2posError("E_TIMEOUT", f"nothing received within {timeout} s") from None
        except OSError as e:
            raise self._fail("E_CHANNEL_CLOSED", f"the channel was reset ({e})") from None
        if not chunk:
            self._eof = True
            if self._buf and not self._remote_closed:
                raise self._fail("E_CHANNEL_CLOSED", "the channel was reset in the middle of a frame")
            return
        self._buf += chunk
        self._parse()

    def _parse(self) -> None:
        buf = self._buf
        pos = 0
        while len(buf) - pos >= 5 and not self._remote_closed:
            ftype, length = _HEADER.unpack_from(buf, pos)
            if ftype not in _FRAME_TYPES or length > MAX_PAYLOAD:
                raise self._fail("E_PROTOCOL", f"bad frame (type {ftype}, length {length})")
            if len(buf) - pos - 5 < length:
                break
            payload = bytes(buf[pos + 5:pos + 5 + length])
            pos += 5 + length
            if ftype == MSG:
                if length < 5:
                    raise self._fail("E_PROTOCOL", "short MSG frame")
                (mid,) = _U32.unpack_from(payload)
                self._inbox.append(Message(mid, payload[4], payload[5:]))
            elif ftype in (ACK, NACK):
                if length < 4:
                    raise self._fail("E_PROTOCOL", "short ACK/NACK frame")
                (mid,) = _U32.unpack_from(payload)
                if mid in self._pending:       # answers to nothing we wait for are ignored
                    self._answers[mid] = (ftype, payload[4:])
            elif ftype == DATA:
                if length > MAX_BODY:
                    raise self._fail("E_PROTOCOL", "DATA frame over 1 MiB")
                if payload:
                    self._stream.append(payload)
            elif ftype == END:
                self._stream_ended = True
            else:  # CLOSE: the remote app sends nothing more; what follows is ignored
                self._remote_closed = True
                pos = len(buf)
        del buf[:pos]

    # ---- messages

    def send(self, data: bytes | str, kind: int = KIND_MESSAGE, timeout: Optional[float] = None) -> None:
        """Sends a message and waits until the remote app acknowledged it.

        Raises P2posError: ``E_APP_REJECTED`` on a NACK (``details`` has the remote ``remoteCode`` and
        ``remoteMessage``), ``E_CHANNEL_CLOSED`` if the channel ends first, ``E_TIMEOUT`` after ``timeout``
        seconds (None = wait as long as it takes), ``E_TOO_LARGE`` for a body over 1 MiB."""
        self.wait_ack(self.post(data, kind), timeout)

    def post(self, data: bytes | str, kind: int = KIND_MESSAGE) -> int:
        """Sends a message without waiting; returns its id for :meth:`wait_ack`. Needed for a stream
        header (``kind`` 1), which the receiver acknowledges only after the stream that follows::

            mid = ch.post(json.dumps(header), KIND_STREAM_HEADER)
            ch.write(content); ch.end()
            ch.wait_ack(mid)
        """
        body = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        if len(body) > MAX_BODY:
            raise P2posError("E_TOO_LARGE", f"message body of {len(body)} bytes is over 1 MiB")
        if self._closed:
            raise P2posError("E_CHANNEL_CLOSED", "the channel is closed")
        mid = self._next_id
        while mid in self._pending:
            mid = mid + 1 if mid < 0xFFFFFFFF else 1
        self._next_id = mid + 1 if mid < 0xFFFFFFFF else 1
        self._pending.add(mid)
        self._write(encode_msg(mid, kind, body))
        return mid

    def wait_ack(self, mid: int, timeout: Optional[float] = None) -> None:
        """Waits for the ACK of message ``mid`` (see :meth:`send` for the errors)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while mid not in self._answers:
            if mid not in self._pending:
                raise P2posError("E_BAD_REQUEST", f"no message {mid} awaits an answer")
            if self._eof or self._remote_closed or self._closed:
                self._pending.discard(mid)
                err = self._ended_error()
                raise P2posError(err.code, f"{err.message}, before the remote app acknowledged message {mid}")
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            self._pump(left)
        self._pending.discard(mid)
        ftype, rest = self._answers.pop(mid)
        if ftype == NACK:
            try:
                why = json.loads(rest.decode("utf-8"))
            except ValueError:
                why = {}
            raise P2posError("E_APP_REJECTED", f"the remote app refused the message: {why.get('message', 'no reason')}",
                             {"remoteCode": why.get("code"), "remoteMessage": why.get("message")})

    def recv(self, timeout: Optional[float] = None) -> Optional[Message]:
        """Returns the next message, or None once the remote app has closed the channel (CLOSE frame).

        A previously received message still unanswered is ACKed first (see the module docs).
        Raises P2posError ``E_TIMEOUT`` after ``timeout`` seconds, and ``E_CHANNEL_CLOSED`` if the
        channel was reset (its connection ended without a CLOSE) or we closed it."""
        if self._unanswered is not None and not self._unanswered.answered:
            self.ack(self._unanswered)
        self._unanswered = None
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._inbox:
            if self._remote_closed:
                return None
            if self._eof or self._closed:
                raise self._ended_error()
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            self._pump(left)
        msg = self._inbox.popleft()
        self._unanswered = msg
        return msg

    def __iter__(self) -> Iterator[Message]:
        """Yields messages until the channel ends; each is ACKed when the next is asked for (unless
        answered before)."""
        while True:
            msg = self.recv()
            if msg is None:
                return
            yield msg

    def ack(self, msg: Message) -> None:
        """Acknowledges ``msg``: the sender's ``send`` returns."""
        if msg.answered:
            return
        msg.answered = True
        self._write(encode_frame(ACK, _U32.pack(msg.id)), quiet=True)

    def nack(self, msg: Message, code: str = "E_APP_REJECTED", message: str = "refused") -> None:
        """Refuses ``msg``: the sender's ``send`` fails with E_APP_REJECTED, carrying ``code``."""
        if msg.answered:
            return
        msg.answered = True
        self._write(encode_nack(msg.id, code, message), quiet=True)

    # ---- the byte stream

    def write(self, data: bytes) -> None:
        """Appends to this side's byte stream (DATA frames of at most 1 MiB). Blocks while the
        connection is full — TCP flow control all the way to the remote reader."""
        view = memoryview(data)
        for off in range(0, len(view), MAX_BODY):
            part = view[off:off + MAX_BODY]
            self._write(_HEADER.pack(DATA, len(part)) + bytes(part))

    def end(self) -> None:
        """Marks this side's byte stream complete (END frame). Messages may still be sent."""
        self._write(encode_frame(END))

    def read(self, timeout: Optional[float] = None) -> bytes:
        """The next chunk of the remote side's byte stream; ``b""`` once it ended (END, or CLOSE).
        Raises P2posError ``E_CHANNEL_CLOSED`` if the channel was reset before the stream ended."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._stream:
            if self._stream_ended or self._remote_closed:
                return b""
            if self._eof or self._closed:
                raise self._ended_error()
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            self._pump(left)
        return self._stream.popleft()

    # ---- writing and closing

    def _write(self, frame: bytes, quiet: bool = False) -> None:
        if self._closed:
            if quiet:
                return
            raise P2posError("E_CHANNEL_CLOSED", "the channel is closed")
        try:
            self.sock.settimeout(None)
            self.sock.sendall(frame)
        except OSError as e:
            if quiet:
                return
            raise self._fail("E_CHANNEL_CLOSED", f"the channel closed ({e})") from None

    def close(self, linger: float = 2.0) -> None:
        """Ends the channel cleanly: ACKs an unanswered received message, sends CLOSE, shuts down the
        write side, waits up to ``linger`` seconds for the remote side to end too, then closes the
        connection."""
        if self._closed:
            return
        if self._unanswered is not None and not self._unanswered.answered:
            self.ack(self._unanswered)
        self._write(encode_frame(CLOSE), quiet=True)
        self._closed = True
        try:
            self.sock.shutdown(socket.SHUT_WR)
            self.sock.settimeout(linger)
            while self.sock.recv(65536):
                pass   # discard what still arrives; reading to the end avoids a reset
        except OSError:
            pass
        finally:
            self.sock.close()

    def abort(self) -> None:
        """Resets the channel at once: no CLOSE, so the remote app sees E_CHANNEL_CLOSED (over TCP the
        connection is also reset)."""
        if self._closed:
            return
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self._abort()

    def __enter__(self) -> "Channel":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc is not None and self._unanswered is not None and not self._unanswered.answered:
            code = exc.code if isinstance(exc, P2posError) else "E_APP_REJECTED"
            self.nack(self._unanswered, code, str(exc) or code)
        self.close()
