"""The local admin channel of a live node: ``status``, ``route`` and ``send`` for operators.

It is a separate listener, either a unix socket (``unix:/run/ringmesh/node.sock``, mode 0600)
or a loopback TCP port; a non-loopback address is refused, so the channel is never reachable
from the network, and nothing of it is reachable through the ring port (which speaks only
the ring protocol, and only after mutual TLS). Requests and answers are msgpack maps in the
ring's 4-byte length-prefixed frames. Keys travel as hex strings (they exceed 64 bits).
"""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING, Any

import msgpack
import trio

from ..ids import parse_key
from ..wire import FrameDecoder, FrameTooLarge, frame
from .addr import format_hostport, is_loopback, parse_hostport

if TYPE_CHECKING:
    from .server import LiveNode

MAX_REQUEST = 64 * 1024
MAX_ANSWER = 16 << 20
REQUEST_TIMEOUT = 30.0
MAX_PAYLOAD_TEXT = 64 * 1024


class AdminError(OSError):
    """The admin channel could not be reached, or the node answered with an error."""


def _is_unix(spec: str) -> bool:
    return spec.startswith("unix:") or spec.startswith("/") or spec.startswith("./")


def _unix_path(spec: str) -> str:
    return spec[5:] if spec.startswith("unix:") else spec


async def _listeners(spec: str) -> tuple[list[trio.SocketListener], str]:
    if _is_unix(spec):
        path = _unix_path(spec)
        try:
            if stat.S_ISSOCK(os.stat(path).st_mode):
                os.unlink(path)  # a stale socket left by a crashed node
        except FileNotFoundError:
            pass
        sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            await sock.bind(path)
        finally:
            os.umask(old)
        sock.listen(16)
        return [trio.SocketListener(sock)], f"unix:{path}"
    host, port = parse_hostport(spec, what="admin address")
    if not is_loopback(host):
        raise ValueError(f"admin address {spec!r} is not loopback: use 127.0.0.1:PORT or unix:PATH")
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound = listeners[0].socket.getsockname()
    return listeners, format_hostport(bound[0], bound[1])


async def serve_admin(live: LiveNode, spec: str, *,
                      task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
    listeners, addr = await _listeners(spec)
    live.admin_addr = addr
    task_status.started(addr)
    try:
        await trio.serve_listeners(lambda s: _serve_one(live, s), listeners)
    finally:
        if addr.startswith("unix:"):
            try:
                os.unlink(addr[5:])
            except OSError:
                pass


async def _serve_one(live: LiveNode, stream: trio.abc.Stream) -> None:
    dec = FrameDecoder(MAX_REQUEST)
    try:
        for _ in range(1000):  # requests per connection
            with trio.move_on_after(REQUEST_TIMEOUT) as cs:
                body = None
                while body is None:
                    body = dec.next_frame()
                    if body is None:
                        data = await stream.receive_some(65536)
                        if not data:
                            return
                        dec.feed(data)
            if cs.cancelled_caught:
                return
            try:
                req = msgpack.unpackb(body, raw=False)
                answer = await handle_request(live, req)
            except (ValueError, TypeError, KeyError, RuntimeError,
                    msgpack.exceptions.ExtraData) as exc:
                answer = {"ok": False, "error": str(exc) or exc.__class__.__name__}
            except trio.TooSlowError:
                answer = {"ok": False, "error": "timed out"}
            await stream.send_all(frame(msgpack.packb(answer, use_bin_type=True)))
    except FrameTooLarge:
        return
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return
    finally:
        await trio.aclose_forcefully(stream)


def _hex(live: LiveNode, x: int) -> str:
    return f"{x:0{(live.space.bits + 3) // 4}x}"


def _known_addrs(live: LiveNode) -> dict[int, str]:
    core = live.core
    t = core.table
    known = {core.me.id: core.me.addr}
    for ref in [*t.successors, *t.fingers.values(), t.predecessor]:
        if ref is not None:
            known.setdefault(ref.id, ref.addr)
    for lk in live.links():
        if lk.peer is not None:
            known.setdefault(lk.peer.id, lk.peer.addr)
    return known


async def handle_request(live: LiveNode, req: Any) -> dict:
    if not isinstance(req, dict) or not isinstance(req.get("op"), str):
        raise ValueError("a request is a map with an 'op' string")
    op = req["op"]
    if op == "status":
        return {"ok": True, "status": live.status()}
    if op == "route":
        key = parse_key(live.space, str(req.get("key", "")))
        timeout = float(req.get("timeout", 5.0))
        timeout = min(max(timeout, 0.1), 60.0)
        res = await live.probe(key, timeout=timeout)
        known = _known_addrs(live)
        # Hops this node has never talked to: ask the ring who they are (a lookup of a node's
        # own id ends at that node), so every hop is printed with its address.
        for x in res.trace:
            if x not in known:
                try:
                    ref = await live.lookup(x, timeout=timeout)
                except (trio.TooSlowError, LookupError):
                    continue
                if ref.id == x:
                    known[x] = ref.addr
        return {"ok": True, "key": _hex(live, key), "short": live.space.short(key),
                "hops": res.hops,
                "trace": [{"id": _hex(live, x), "short": live.space.short(x),
                           "addr": known.get(x, "?")} for x in res.trace]}
    if op == "send":
        key = parse_key(live.space, str(req.get("key", "")))
        payload = req.get("payload", b"")
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        if not isinstance(payload, bytes) or len(payload) > MAX_PAYLOAD_TEXT:
            raise ValueError(f"payload must be at most {MAX_PAYLOAD_TEXT} bytes")
        msg_id = await live.send(key, payload)
        return {"ok": True, "msg_id": msg_id, "key": _hex(live, key)}
    raise ValueError(f"unknown op {op!r} (status, route, send)")


async def admin_call(spec: str, request: dict, timeout: float = 10.0) -> dict:
    """Send one request to a node's admin channel and return its answer."""
    try:
        with trio.fail_after(timeout):
            if _is_unix(spec):
                stream: trio.abc.Stream = await trio.open_unix_socket(_unix_path(spec))
            else:
                host, port = parse_hostport(spec, what="admin address")
                stream = await trio.open_tcp_stream(host, port)
            async with stream:
                await stream.send_all(frame(msgpack.packb(request, use_bin_type=True)))
                dec = FrameDecoder(MAX_ANSWER)
                body = None
                while body is None:
                    data = await stream.receive_some(65536)
                    if not data:
                        raise AdminError(f"{spec} closed the connection without answering")
                    dec.feed(data)
                    body = dec.next_frame()
    except trio.TooSlowError:
        raise AdminError(f"{spec} did not answer within {timeout:g}s") from None
    except OSError as exc:
        raise AdminError(f"cannot reach admin channel {spec}: {exc.strerror or exc}") from None
    answer = msgpack.unpackb(body, raw=False)
    if not isinstance(answer, dict):
        raise AdminError("malformed answer")
    if not answer.get("ok"):
        raise AdminError(str(answer.get("error", "request failed")))
    return answer
