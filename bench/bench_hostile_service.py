"""Hostile clients against real `cancel-rules serve` servers: figures for issue 9's service items.

Usage: python bench/bench_hostile_service.py [--checkout DIR ...] [--cases port,wide,slow,big]

Each --checkout (default: this repository) is a source tree whose `engine` package runs the servers, so an old
commit and the working tree can be measured side by side in one run (`git archive <commit> | tar -x -C DIR`).
Cases:
  port  a second server (2 workers, the legacy policy) started on the port of a running one; and on a port a
        plain socket holds: its exit status, first stderr line, and which policy answers 200 new connections
  wide  a 1.14 MB JSON batch of 20,000 rows, each with its own extra key: status, seconds, peak RSS of the
        workers, RSS after, and the slowest /healthz answer while it ran
  slow  340 sockets: idle, a request head trickled a byte a second, a body trickled a byte a second; how many
        the server closed, and when (held up to --hold seconds)
  big   a 9 MB bad value on /v1/decisions and in a batch row: status and size of the answer
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
AS_OF = "2026-03-01T12:00:00Z"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(checkout: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CANCEL_RULES_")}
    return {**env, "PYTHONPATH": str(checkout), **extra}


def _start(checkout: Path, port: int, *args: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "engine.cli", "serve", "--port", str(port), *args],
                            cwd=checkout, env=_env(checkout, **env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_listening(proc: subprocess.Popen, port: int, seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:  # the port accepts connections once bound; /healthz answers once a worker is up
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).raise_for_status()
            return True
        except httpx.HTTPError:
            time.sleep(0.1)
    return False


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def server(checkout: Path, *args: str, **env: str) -> Iterator[tuple[str, subprocess.Popen]]:
    port = _free_port()
    proc = _start(checkout, port, *args, **env)
    try:
        if not _wait_listening(proc, port):
            raise SystemExit(f"server did not start: {proc.stderr.read() if proc.poll() is not None else ''}")
        yield f"http://127.0.0.1:{port}", proc
    finally:
        _stop(proc)


def _workers(proc: subprocess.Popen) -> list[psutil.Process]:
    main = psutil.Process(proc.pid)
    return [main, *main.children(recursive=True)]


def _rss(procs: list[psutil.Process]) -> int:
    total = 0
    for p in procs:
        try:
            total = max(total, p.memory_info().rss)
        except psutil.Error:
            pass
    return total


# ---------------------------------------------------------------------------------------------- cases


def case_port(checkout: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    port = _free_port()
    first = _start(checkout, port, "--workers", "2")
    try:
        _wait_listening(first, port)
        for label, args in (("second server, 2 workers", ["--workers", "2"]), ("second server, 1 worker", [])):
            started = time.monotonic()
            second = _start(checkout, port, *args, "--policy", "rules/variants/legacy-72h.yaml")
            try:
                second.wait(20)
            except subprocess.TimeoutExpired:
                pass
            seconds = time.monotonic() - started
            answers: dict[str, int] = {}
            if second.poll() is None:
                time.sleep(3)  # let its workers come up
                order = {"order_id": "P1", "status": "shipped", "seller_reply": "no_reply", "hours_since_contact": 60}
                for _ in range(200):
                    with httpx.Client() as client:  # a new connection each time
                        body = client.post(f"http://127.0.0.1:{port}/v1/decisions", params={"as_of": AS_OF},
                                           json=order).json()
                    answers[body.get("action")] = answers.get(body.get("action"), 0) + 1
            _stop(second)
            stderr = (second.stderr.read() or "").strip().splitlines()
            out[label] = {"exit": second.returncode if not answers else "still running",
                          "seconds": round(seconds, 2), "stderr": stderr[-1] if stderr else "",
                          "answers": answers}
    finally:
        _stop(first)
    with socket.socket() as plain:  # a process that holds the port without SO_REUSEPORT
        plain.bind(("127.0.0.1", 0))
        plain.listen()
        held = plain.getsockname()[1]
        for label, args in (("port held by a plain socket, 2 workers", ["--workers", "2"]),
                            ("port held by a plain socket, 1 worker", [])):
            proc = _start(checkout, held, *args)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                pass
            _stop(proc)
            stderr = (proc.stderr.read() or "").strip().splitlines()
            out[label] = {"exit": proc.returncode, "stderr": stderr[-1] if stderr else "",
                          "stderr lines": len(stderr)}
    return out


def case_wide(checkout: Path) -> dict[str, Any]:
    rows = [{"order_id": f"W{i}", "status": "shipped", f"x{i}": 1} for i in range(20_000)]
    body = json.dumps(rows).encode()
    with server(checkout, "--workers", "1") as (url, proc):
        procs = _workers(proc)
        base = _rss(procs)
        result: dict[str, Any] = {}
        slowest = [0.0]
        peak = [base]
        done = threading.Event()

        def watch() -> None:
            with httpx.Client(timeout=60) as client:
                while not done.is_set():
                    peak[0] = max(peak[0], _rss(procs))
                    started = time.monotonic()
                    client.get(f"{url}/healthz")
                    slowest[0] = max(slowest[0], time.monotonic() - started)
                    time.sleep(0.05)

        watcher = threading.Thread(target=watch)
        watcher.start()
        started = time.monotonic()
        try:
            response = httpx.post(f"{url}/v1/decisions/batch", params={"as_of": AS_OF}, content=body,
                                  headers={"Content-Type": "application/json"}, timeout=120)
            result["status"] = response.status_code
            if response.status_code == 200:
                result["rows decided"] = sum(1 for r in response.json() if r["action"])
        except httpx.HTTPError as exc:
            result["status"] = f"failed: {exc.__class__.__name__}"
        result["seconds"] = round(time.monotonic() - started, 2)
        time.sleep(1)
        done.set()
        watcher.join()
        result.update({"body MB": round(len(body) / 1e6, 2), "RSS before MB": base // 2**20,
                       "peak RSS MB": peak[0] // 2**20, "RSS after MB": _rss(procs) // 2**20,
                       "slowest /healthz s": round(slowest[0], 2)})
        return result


def case_slow(checkout: Path, hold: float, count: int = 340) -> dict[str, Any]:
    with server(checkout, "--workers", "1") as (url, proc):
        port = int(url.rsplit(":", 1)[1])
        kinds = ("idle", "slow head", "slow body", "idle after a request")
        socks: list[tuple[str, socket.socket]] = []
        for i in range(count):
            kind = kinds[i % len(kinds)]
            sock = socket.create_connection(("127.0.0.1", port))
            sock.setblocking(False)
            if kind == "slow body":
                sock.send(b"POST /v1/decisions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                          b"Content-Length: 100000\r\n\r\n")
            elif kind == "slow head":
                sock.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            elif kind == "idle after a request":
                sock.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            socks.append((kind, sock))
        started = time.monotonic()
        closed: dict[int, float] = {}
        statuses: dict[str, set[str]] = {k: set() for k in kinds}
        selector = selectors.DefaultSelector()
        for i, (_, sock) in enumerate(socks):
            selector.register(sock, selectors.EVENT_READ, i)
        tick = 0
        while time.monotonic() - started < hold and len(closed) < len(socks):
            for key, _ in selector.select(timeout=0.2):
                i = key.data
                try:
                    data = key.fileobj.recv(65536)
                except (ConnectionError, BlockingIOError):
                    data = b""
                if data.startswith(b"HTTP/1.1 "):
                    status = data[9:12].decode()
                    if not (socks[i][0] == "idle after a request" and status == "200"):
                        statuses[socks[i][0]].add(status)
                if not data:
                    closed[i] = time.monotonic() - started
                    selector.unregister(key.fileobj)
            if time.monotonic() - started > tick:  # one byte a second from the slow senders
                for i, (kind, sock) in enumerate(socks):
                    if i in closed:
                        continue
                    try:
                        if kind == "slow head":
                            sock.send(b"a")
                        elif kind == "slow body":
                            sock.send(b"{")
                    except OSError:
                        pass
                tick += 1
        out: dict[str, Any] = {}
        for kind in kinds:
            times = sorted(closed[i] for i, (k, _) in enumerate(socks) if k == kind and i in closed)
            total = sum(1 for k, _ in socks if k == kind)
            out[kind] = {"sockets": total, "closed": len(times),
                         "closed after s": f"{times[0]:.1f}-{times[-1]:.1f}" if times else "-",
                         "answers": sorted(statuses[kind])}
        out["held for s"] = hold
        for _, sock in socks:
            sock.close()
        return out


def case_big(checkout: Path) -> dict[str, Any]:
    value = "x" * (9 * 2**20)
    out: dict[str, Any] = {}
    with server(checkout, "--workers", "1") as (url, _):
        for label, path, body in (
                ("/v1/decisions", "/v1/decisions", {"order_id": "B1", "status": value}),
                ("/v1/decisions/batch", "/v1/decisions/batch", [{"order_id": "B1", "status": value}])):
            started = time.monotonic()
            response = httpx.post(f"{url}{path}", params={"as_of": AS_OF}, json=body, timeout=120)
            out[label] = {"status": response.status_code, "answer bytes": len(response.content),
                          "seconds": round(time.monotonic() - started, 2)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkout", action="append", type=Path, help="source tree to run (repeatable)")
    parser.add_argument("--cases", default="port,wide,slow,big")
    parser.add_argument("--hold", type=float, default=40.0, help="seconds the slow sockets are held at most")
    args = parser.parse_args()
    cases = {"port": case_port, "wide": case_wide, "slow": lambda c: case_slow(c, args.hold), "big": case_big}
    for checkout in args.checkout or [ROOT]:
        for name in args.cases.split(","):
            print(json.dumps({"checkout": str(checkout), "case": name, **cases[name](checkout.resolve())},
                             default=str), flush=True)


if __name__ == "__main__":
    main()
