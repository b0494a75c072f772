"""Hostile HTTP bodies against a real `cancel-rules serve`: each with its exact expected answer, memory bounded.

One server (one worker, the default limits: 10 MB bodies, 100,000 rows) answers every case; a thread polls the
worker's RSS the whole time, and after each case its peak must stay within MEMORY_BOUND of where it started.
Big bodies are generated here, not stored.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import psutil
import pytest

AS_OF = "2026-03-01T12:00:00+00:00"
MEMORY_BOUND = 400 * 2**20  # one worker's peak RSS over its RSS before the first case
NINE_MB = 9 * 2**20
ECHO_LIMIT = 200  # characters of a sent value that an error may echo
AWAITING = {"order_id": "H0", "status": "Awaiting shipment"}  # decided: contact_seller


@dataclass
class Watched:
    url: str
    peak: int = 0
    baseline: int = 0
    stop: threading.Event = field(default_factory=threading.Event)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Watched]:
    port = _free_port()
    script = Path(sys.executable).with_name("cancel-rules")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "engine.cli"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CANCEL_RULES_")}
    log = tmp_path_factory.mktemp("hostile-http") / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([*command, "serve", "--port", str(port)], env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    watched = Watched(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 60
        while True:  # the port accepts connections once bound; /healthz answers once the worker is up
            assert proc.poll() is None, log.read_text()
            try:
                httpx.get(f"{watched.url}/healthz", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        worker = psutil.Process(proc.pid)
        httpx.post(f"{watched.url}/v1/decisions/batch", params={"as_of": AS_OF}, json=[AWAITING] * 100)  # warm
        watched.baseline = watched.peak = worker.memory_info().rss

        def poll() -> None:
            while not watched.stop.wait(0.02):
                watched.peak = max(watched.peak, worker.memory_info().rss)

        thread = threading.Thread(target=poll, daemon=True)
        thread.start()
        yield watched
        watched.stop.set()
        thread.join()
    finally:
        proc.terminate()
        proc.wait(30)
        assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


@dataclass(frozen=True)
class Case:
    """One hostile request and its exact expected answer."""

    name: str
    path: str
    body: Callable[[], bytes]
    status: int
    error: str | None = None  # the JSON error code of a 4xx
    check: Callable[[httpx.Response], None] | None = None  # more about the answer
    content_type: str = "application/json"
    accept: str = "application/json"


def _json(value: Any) -> Callable[[], bytes]:
    return lambda: json.dumps(value).encode()


def _raw(body: bytes) -> Callable[[], bytes]:
    return lambda: body


def _rows(response: httpx.Response) -> list[dict[str, Any]]:
    if response.headers["content-type"].startswith("text/csv"):
        return pd.read_csv(io.StringIO(response.text), dtype=str, keep_default_na=False).to_dict("records")
    return response.json()


def _all_contact_seller(count: int) -> Callable[[httpx.Response], None]:
    def check(response: httpx.Response) -> None:
        rows = _rows(response)
        assert len(rows) == count
        assert {(r["action"], r["error"] or None) for r in rows} == {("contact_seller", None)}
    return check


def _problem(field_: str, contains: str, max_bytes: int = 4096) -> Callable[[httpx.Response], None]:
    def check(response: httpx.Response) -> None:
        assert len(response.content) <= max_bytes, len(response.content)
        problems = {p["field"]: p for p in response.json()["problems"]}
        assert contains in problems[field_]["message"], problems
        value = problems[field_]["value"]
        assert not isinstance(value, str) or len(value) <= ECHO_LIMIT + 40
    return check


def _row_errors(*starts: str | None, max_chars: int = 1000) -> Callable[[httpx.Response], None]:
    def check(response: httpx.Response) -> None:
        rows = _rows(response)
        assert len(rows) == len(starts)
        for row, start in zip(rows, starts, strict=True):
            if start is None:
                assert row["action"] and not row["error"], row
            else:
                assert not row["action"] and row["error"].startswith(start), row["error"][:300]
                assert len(row["error"]) <= max_chars
    return check


def _ids(*ids: Any) -> Callable[[httpx.Response], None]:
    def check(response: httpx.Response) -> None:
        rows = response.json()
        assert [r["order_id"] for r in rows] == list(ids)
        assert [type(r["order_id"]) for r in rows] == [type(i) for i in ids]
    return check


def _order_id_echoed(value: str) -> Callable[[httpx.Response], None]:
    def check(response: httpx.Response) -> None:
        assert response.json()["order_id"] == value
    return check


def _message(contains: str, max_bytes: int = 16384) -> Callable[[httpx.Response], None]:
    def check(response: httpx.Response) -> None:
        assert len(response.content) <= max_bytes, len(response.content)
        assert contains in response.json()["message"], response.json()["message"][:300]
    return check


def _csv(text: str) -> Callable[[], bytes]:
    return lambda: text.encode()


CASES = [
    # Unknown keys never widen the frame: 20,000 rows with their own key each took 4+ GB and minutes.
    Case("json-20000-rows-each-with-its-own-key", "/v1/decisions/batch",
         _json([{**AWAITING, f"x{i}": 1} for i in range(20_000)]), 200, check=_all_contact_seller(20_000)),
    Case("json-2000-rows-with-50-own-keys-each", "/v1/decisions/batch",
         _json([{**AWAITING, **{f"k{i}_{j}": j for j in range(50)}} for i in range(2_000)]), 200,
         check=_all_contact_seller(2_000)),
    Case("json-20000-own-keys-csv-answer", "/v1/decisions/batch",
         _json([{**AWAITING, f"x{i}": 1} for i in range(20_000)]), 200, accept="text/csv",
         check=_all_contact_seller(20_000)),
    Case("json-key-of-9mb", "/v1/decisions", _json({**AWAITING, "k" * NINE_MB: 1}), 200),
    # A lone surrogate (valid JSON, not valid Unicode) is the field's error, never a 500.
    Case("json-lone-surrogate-in-a-value", "/v1/decisions", _raw(b'{"order_id": "S1", "status": "\\ud800"}'), 422,
         "invalid_order", _problem("status", "not valid Unicode text")),
    Case("json-lone-surrogate-in-the-id", "/v1/decisions", _raw(b'{"order_id": "\\udc00", "status": "Closed"}'),
         422, "invalid_order", _problem("order_id", "not valid Unicode text")),
    Case("json-lone-surrogate-in-a-key", "/v1/decisions",
         _raw(b'{"order_id": "S1", "status": "Awaiting shipment", "\\ud800": "\\ud800"}'), 200),
    Case("json-surrogate-pair-is-text", "/v1/decisions",
         _raw(b'{"order_id": "\\ud83d\\ude00", "status": "Awaiting shipment"}'), 200,
         check=_order_id_echoed("\U0001f600")),
    Case("json-lone-surrogate-in-a-batch-row", "/v1/decisions/batch",
         _raw(b'[{"order_id": "S1", "status": "\\ud800"}, {"order_id": "S2", "status": "Awaiting shipment"}]'), 200,
         check=_row_errors("status: is not valid Unicode text", None)),
    Case("json-lone-surrogate-in-a-batch-row-csv-answer", "/v1/decisions/batch",
         _raw(b'[{"order_id": "\\udfff", "status": "Closed"}, {"order_id": "S2", "status": "Awaiting shipment"}]'),
         200, accept="text/csv", check=_row_errors("order_id: is not valid Unicode text", None)),
    # Ids come back exactly as sent, whatever the other rows hold.
    Case("json-integer-ids-beside-a-row-without-one", "/v1/decisions/batch",
         _json([{**AWAITING, "order_id": 1234567890123456789}, {"status": "Awaiting shipment"},
                {**AWAITING, "order_id": 10**50}]), 200, check=_ids(1234567890123456789, None, 10**50)),
    # A 9 MB bad value is echoed in at most ECHO_LIMIT characters (it was a 27 MB 422).
    Case("json-9mb-bad-value", "/v1/decisions", _json({"order_id": "B1", "status": "x" * NINE_MB}), 422,
         "invalid_order", _problem("status", "unknown value 'xxxx")),
    Case("json-9mb-bad-number", "/v1/decisions", _json({**AWAITING, "seller_rating": "9" * NINE_MB + "x"}), 422,
         "invalid_order", _problem("seller_rating", "not a number: '9999")),
    Case("json-9mb-bad-value-in-a-batch", "/v1/decisions/batch",
         _json([{"order_id": "B1", "status": "x" * NINE_MB}, AWAITING]), 200,
         check=_row_errors("status: unknown value 'xxxx", None)),
    Case("csv-9mb-bad-value", "/v1/decisions/batch", _csv(f"order_id,status\nB1,{'x' * NINE_MB}\nB2,Closed\n"),
         200, content_type="text/csv", check=_row_errors("status: unknown value 'xxxx", None)),
    Case("csv-9mb-column-name", "/v1/decisions/batch", _csv(f"order_id,{'c' * NINE_MB}\nB1,x\n"), 422,
         "invalid_batch", _message("missing required column: status"), content_type="text/csv"),
    Case("json-9mb-valid-id-is-echoed-as-sent", "/v1/decisions", _json({**AWAITING, "order_id": "i" * NINE_MB}), 200,
         check=_order_id_echoed("i" * NINE_MB)),
    # A CSV row longer than its header is refused, naming the line, as the CLI refuses the file.
    Case("csv-first-row-longer-than-the-header", "/v1/decisions/batch",
         _csv("order_id,status\nA1,Awaiting shipment,extra\nA2,Closed\n"), 422, "invalid_csv",
         _message("line 2"), content_type="text/csv"),
    Case("csv-later-row-longer-than-the-header", "/v1/decisions/batch",
         _csv("order_id,status\nA1,Closed\nA2,Closed\nA3,Closed,extra,more\n"), 422, "invalid_csv",
         _message("line 4"), content_type="text/csv"),
    # Malformed JSON is a 400 naming the body; the limits are 413s.
    Case("json-100000-open-brackets", "/v1/decisions", _raw(b"[" * 100_000), 400, "invalid_json"),
    Case("json-nan", "/v1/decisions", _raw(b'{"order_id": "N1", "status": NaN}'), 400, "invalid_json"),
    Case("json-not-utf8", "/v1/decisions", _raw(b'{"order_id": "\xff\xfe"}'), 400, "invalid_json"),
    Case("json-empty", "/v1/decisions/batch", _raw(b"  "), 400, "invalid_json"),
    Case("json-400-digit-number", "/v1/decisions", _raw(b'{"order_id": "D1", "status": "Awaiting shipment", '
                                                         b'"seller_rating": 1' + b"0" * 400 + b"}"),
         422, "invalid_order", _problem("seller_rating", "not finite")),
    Case("json-100001-rows", "/v1/decisions/batch", _raw(b"[" + b"{}," * 100_000 + b"{}]"), 413, "too_many_rows"),
    Case("json-11mb-body", "/v1/decisions", _raw(b'{"order_id": "' + b"x" * (11 * 2**20) + b'"}'), 413,
         "body_too_large"),
    Case("json-a-batch-row-of-every-json-kind", "/v1/decisions/batch",
         _json([None, 1, "x", [AWAITING], True, {**AWAITING, "status": {"code": "shipped"}}, AWAITING]), 200,
         check=_row_errors("must be a JSON object", "must be a JSON object", "must be a JSON object",
                           "must be a JSON object", "must be a JSON object", "status: must be text", None)),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_body(server: Watched, case: Case) -> None:
    body = case.body()
    response = httpx.post(f"{server.url}{case.path}", params={"as_of": AS_OF}, content=body, timeout=120,
                          headers={"Content-Type": case.content_type, "Accept": case.accept})
    del body
    assert response.status_code == case.status, response.text[:500]
    if case.error is not None:
        assert response.json()["error"] == case.error, response.text[:500]
    if case.check is not None:
        case.check(response)
    assert server.peak - server.baseline <= MEMORY_BOUND, f"peak RSS +{(server.peak - server.baseline) >> 20} MB"
