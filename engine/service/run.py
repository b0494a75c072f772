"""Running the service: listening sockets of its own, worker processes and their supervisor."""

from __future__ import annotations

import argparse
import errno
import gc
import ipaddress
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from ..errors import UsageError
from ..policy import load
from .app import create_app
from .protocol import TimedHttpProtocol
from .settings import ENV_POLICY, ENV_TOKEN, ENV_TOKEN_FILE, Settings, read_token_file


def app_from_env() -> FastAPI:
    """App factory for uvicorn worker processes: the policy path and settings come from CANCEL_RULES_*."""
    settings = Settings.from_env()
    TimedHttpProtocol.limits = settings
    return _settled(create_app(load(os.environ.get(ENV_POLICY) or None), settings))


def _settled(app: FastAPI) -> FastAPI:
    # Imports and the policy leave about a hundred thousand long-lived objects; frozen, the collector's full
    # passes stop walking them (each took tens of milliseconds out of an unlucky request: the tail latency).
    gc.collect()
    gc.freeze()
    return app


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# As uvicorn imports them in each worker process; from the objects, so that a move cannot leave them behind.
HTTP_PROTOCOL = f"{TimedHttpProtocol.__module__}:{TimedHttpProtocol.__qualname__}"
APP_FACTORY = f"{__name__}:{app_from_env.__qualname__}"


def serve(args: argparse.Namespace) -> int:
    """Run the service (the `cancel-rules serve` command); returns the exit status."""
    import uvicorn

    if args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    if args.policy:
        os.environ[ENV_POLICY] = str(Path(args.policy).resolve())
    if args.token_file:
        read_token_file(args.token_file)  # fail here, once, rather than in every worker
        os.environ[ENV_TOKEN_FILE] = str(Path(args.token_file).resolve())
    settings = Settings.from_env()
    policy = load(os.environ.get(ENV_POLICY) or None)  # a broken policy stops the command before anything listens
    if not settings.token and not _is_loopback(args.host):
        print(f"cancel-rules serve: warning: listening on {args.host} without a token: anyone who can reach it "
              f"can use it (set {ENV_TOKEN} or --token-file)", file=sys.stderr)
    sockets = _bind_listeners(args.host, args.port, args.workers)  # a port in use stops it here, with exit 2
    port = sockets[0].getsockname()[1]
    print(f"cancel-rules serve: policy {policy.name} {policy.version} on http://{args.host}:{port} "
          f"({args.workers} worker{'s' if args.workers != 1 else ''}, auth {'on' if settings.token else 'off'})",
          file=sys.stderr, flush=True)
    # No WebSocket protocol: the service has no WebSocket route, and an upgraded connection would leave the HTTP
    # protocol's deadlines behind.
    options: dict[str, Any] = dict(log_level="warning", access_log=False, server_header=False, date_header=False,
                                   http=HTTP_PROTOCOL, ws="none", timeout_keep_alive=settings.keepalive_timeout)
    try:
        if args.workers == 1:
            TimedHttpProtocol.limits = settings
            uvicorn.Server(uvicorn.Config(_settled(create_app(policy, settings)), **options)).run(sockets=sockets)
            return 0
        return _supervise(sockets, args.workers, options)
    finally:
        for sock in sockets:
            sock.close()


def _bind_listeners(host: str, port: int, count: int) -> list[socket.socket]:
    """Listening sockets for `count` workers on host:port, shared with no other process; raises UsageError naming
    the port when it is in use. Several workers get a socket each in one SO_REUSEPORT group where the system has
    it (see _supervise), else one socket they share."""
    socks: list[socket.socket] = []
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        # A plain socket (no SO_REUSEPORT) first: the kernel refuses it while anything listens on the port, a
        # SO_REUSEPORT group included, which a second server's workers used to join without a word.
        socks.append(_listen(family, kind, proto, address, reuse_port=False))
        if count == 1 or not hasattr(socket, "SO_REUSEPORT"):
            return socks
        address = socks[0].getsockname()  # with port 0, the port the system chose
        socks.pop().close()
        socks += [_listen(family, kind, proto, address, reuse_port=True) for _ in range(count)]
        if _shared_with_others(socks):  # another server passed the same check at the same moment
            raise OSError(errno.EADDRINUSE, os.strerror(errno.EADDRINUSE))
        return socks
    except OSError as exc:
        for sock in socks:
            sock.close()
        reason = "the port is in use (another server listens on it)" if exc.errno == errno.EADDRINUSE else \
            exc.strerror or str(exc)
        raise UsageError(f"cannot listen on {host}:{port}: {reason}") from None


def _listen(family: int, kind: int, proto: int, address: Any, reuse_port: bool) -> socket.socket:
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart need not wait for TIME_WAIT
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def _shared_with_others(socks: list[socket.socket]) -> bool:
    """Whether a socket not in `socks` listens on their address and port (Linux; elsewhere False).

    SO_REUSEPORT lets any process of the same user join a port silently. Two servers starting at once can both
    pass the plain bind; whichever listens second finds the other here."""
    ours = {os.fstat(sock.fileno()).st_ino for sock in socks}
    host, port = socks[0].getsockname()[:2]
    mine = ipaddress.ip_address(host)
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            address, _, hex_port = fields[1].partition(":")
            if fields[3] != "0A" or int(hex_port, 16) != port or int(fields[9]) in ours:  # 0A: listening
                continue
            raw = bytes.fromhex(address)
            if sys.byteorder == "little":  # the table prints addresses as 32-bit words in host order
                raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            other = ipaddress.ip_address(raw)
            if other == mine or other.is_unspecified or mine.is_unspecified:
                return True
    return False


def _worker(sock: socket.socket, options: dict[str, Any]) -> None:
    """One worker process: serves on a listening socket of the supervisor's, with its own policy."""
    import uvicorn

    config = uvicorn.Config(APP_FACTORY, factory=True, **options)
    uvicorn.Server(config).run(sockets=[sock])


def _supervise(sockets: list[socket.socket], workers: int, options: dict[str, Any]) -> int:
    """Run `workers` processes on the listening sockets, and restart any that dies.

    uvicorn's own supervisor shares one listening socket, and whichever worker wakes first accepts a whole
    burst of connections: with keep-alive clients one worker got 24 of 32 connections and its core saturated
    while the other idled. With one socket per worker (SO_REUSEPORT) the kernel spreads connections across them.
    The supervisor keeps the sockets: a worker started in place of one that died serves the same socket, and the
    connections waiting on it."""
    import multiprocessing
    import signal
    import threading

    context = multiprocessing.get_context("spawn")  # a fresh interpreter: durable_rules state is per process
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())

    def start(i: int) -> multiprocessing.process.BaseProcess:
        proc = context.Process(target=_worker, args=(sockets[i % len(sockets)], options), name="cancel-rules-worker")
        proc.start()
        return proc

    procs = [start(i) for i in range(workers)]
    restarts: list[float] = []
    status = 0
    while not stop.wait(0.5):
        for i, proc in enumerate(procs):
            if proc.is_alive():
                continue
            now = time.monotonic()
            restarts = [t for t in restarts if now - t < 60] + [now]
            if len(restarts) > 3 * workers:  # crashing on start: give up rather than spin
                print("cancel-rules serve: workers keep exiting; stopping", file=sys.stderr)
                stop.set()
                status = 1
                break
            print(f"cancel-rules serve: worker {proc.pid} exited with {proc.exitcode}; starting another",
                  file=sys.stderr, flush=True)
            procs[i] = start(i)
    for proc in procs:
        if proc.is_alive():
            proc.terminate()  # SIGTERM: uvicorn finishes the requests in flight, then exits
    for proc in procs:
        proc.join(30)
        if proc.is_alive():
            proc.kill()
            proc.join()
    return status
