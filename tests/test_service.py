"""The HTTP decision service, over real uvicorn servers on 127.0.0.1 started as `cancel-rules serve`."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import random
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine
from conftest import stop
from engine.service import Settings, create_app
from engine.service.encoding import dumps
from engine.text import alias_key

AS_OF = "2026-03-01T12:00:00+00:00"
TOKEN = "t0ken-for-tests-only"
ENV_TOKEN = "env-t0ken"
MAX_BODY = 300_000
MAX_ROWS = 500
CORS_ORIGIN = "https://support.example"
ALLOWED_HOSTS = "127.0.0.1,localhost,*.support.example"
LEGACY = Path(__file__).parent.parent / "rules" / "variants" / "legacy-72h.yaml"


@pytest.fixture(scope="module")
def policy() -> engine.Policy:
    return engine.load()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _command() -> list[str]:
    script = Path(sys.executable).with_name("cancel-rules")
    return [str(script)] if script.exists() else [sys.executable, "-m", "engine.cli"]


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CANCEL_RULES_")}
    return {**env, **extra}


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log: Path


def _wait_ready(proc: subprocess.Popen, port: int, log: Path | None = None) -> None:
    """Until every worker answers: the port accepts connections as soon as it is bound (they wait for a worker),
    so /healthz is asked on new connections until it answers many times in a row."""
    deadline, answered = time.monotonic() + 60, 0
    while answered < 8:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}: {log.read_text() if log else ''}")
        try:
            answered = answered + 1 if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200 \
                else 0
        except httpx.HTTPError:
            answered = 0
            if time.monotonic() > deadline:
                raise AssertionError(f"server not ready within 60 s: {log.read_text() if log else ''}") from None
            time.sleep(0.1)


@contextmanager
def serve(tmp: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Server]:
    port = _free_port()
    log = tmp / f"server-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([*_command(), "serve", "--port", str(port), *args], env=env or _clean_env(),
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_ready(proc, port, log)
        yield Server(f"http://127.0.0.1:{port}", proc, log)
    finally:
        stop(proc, timeout=15)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Two worker processes, the token from a file, small limits."""
    tmp = tmp_path_factory.mktemp("service")
    token_file = tmp / "token"
    token_file.write_text(TOKEN + "\n")
    env = _clean_env(CANCEL_RULES_MAX_BODY_BYTES=str(MAX_BODY), CANCEL_RULES_MAX_BATCH_ROWS=str(MAX_ROWS),
                     CANCEL_RULES_TOKEN="not-this-one")  # --token-file wins over the variable
    with serve(tmp, "--workers", "2", "--token-file", str(token_file), env=env) as srv:
        yield srv


@pytest.fixture(scope="module")
def env_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One worker, the token from CANCEL_RULES_TOKEN, CORS for one origin, a host allow-list."""
    env = _clean_env(CANCEL_RULES_TOKEN=ENV_TOKEN, CANCEL_RULES_CORS_ORIGINS=CORS_ORIGIN,
                     CANCEL_RULES_ALLOWED_HOSTS=ALLOWED_HOSTS)
    with serve(tmp_path_factory.mktemp("env-service"), env=env) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as c:
        yield c


def expected(policy: engine.Policy, order: Any) -> tuple[int, Any]:
    """What the service must answer for one order: the decision as JSON, or the field problems."""
    try:
        return 200, json.loads(policy.decide(order, as_of=AS_OF).to_json())
    except engine.OrderError as exc:
        return 422, sorted((p.field, p.message) for p in exc.problems)


def answer(response: httpx.Response) -> tuple[int, Any]:
    body = response.json()
    if response.status_code == 422:
        return 422, sorted((p["field"], p["message"]) for p in body["problems"])
    return response.status_code, body


def random_orders(policy: engine.Policy, count: int, seed: int) -> list[dict[str, Any]]:
    """Different orders over the policy's own facts schema: codes, display labels, numbers as numbers and as
    text, timestamps, and a share of bad values."""
    rng = random.Random(seed)
    facts = policy.spec.facts
    orders = []
    for i in range(count):
        order: dict[str, Any] = {"order_id": f"R{seed}-{i}"}
        for name, fact in facts.items():
            if name == "order_id" or (not fact.required and rng.random() < 0.3):
                continue
            if fact.type == "enum":
                choices = [*fact.values, *fact.labels.values()]
                order[name] = rng.choice(choices)
            elif fact.type == "number":
                value = round(rng.uniform(fact.min or 0, fact.max or 200), 1)
                if fact.from_timestamp and rng.random() < 0.3:
                    hours = value * (24 if fact.per == "days" else 1)
                    stamp = pd.Timestamp(AS_OF) - pd.Timedelta(hours=hours)
                    order[fact.from_timestamp] = stamp.isoformat()
                else:
                    order[name] = str(value) if rng.random() < 0.2 else value
        roll = rng.random()
        if roll < 0.05:
            order["status"] = "teleported"
        elif roll < 0.08:
            order["hours_since_contact"] = -3
        elif roll < 0.10:
            del order["order_id"]
        orders.append(order)
    return orders


# ------------------------------------------------------------------------------------------ basics


def test_healthz_is_open_and_names_the_policy(server: Server, policy: engine.Policy) -> None:
    response = httpx.get(f"{server.url}/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "policy": policy.name, "version": policy.version}


def test_binds_loopback_by_default(server: Server) -> None:
    procs = [psutil.Process(server.process.pid), *psutil.Process(server.process.pid).children(recursive=True)]
    listening = [c.laddr for p in procs for c in p.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    assert listening and {addr.ip for addr in listening} == {"127.0.0.1"}


@pytest.mark.parametrize("method,path", [("GET", "/v1/policy"), ("GET", "/v1/policy/verify"),
                                         ("POST", "/v1/decisions"), ("POST", "/v1/decisions/batch"),
                                         ("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/no/such/path")])
def test_token_missing_wrong_right(server: Server, method: str, path: str) -> None:
    url = f"{server.url}{path}?as_of={AS_OF}"
    body = {"order_id": "T1", "status": "shipped"} if path == "/v1/decisions" else []
    kwargs = {"json": body} if method == "POST" else {}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
                    {"Authorization": f"Bearer {TOKEN}x"}, {"Authorization": "Bearer not-this-one"}):
        response = httpx.request(method, url, headers=headers, **kwargs)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["problems"][0]["field"] == "Authorization"
    right = httpx.request(method, url, headers={"Authorization": f"bearer  {TOKEN}"}, timeout=30, **kwargs)
    assert right.status_code == (404 if path == "/no/such/path" else 200)


def test_token_from_environment_and_cors(env_server: Server, policy: engine.Policy) -> None:
    url = f"{env_server.url}/v1/decisions?as_of={AS_OF}"
    order = {"order_id": "C1", "status": "Awaiting shipment"}
    assert httpx.post(url, json=order).status_code == 401
    response = httpx.post(url, json=order, headers={"Authorization": f"Bearer {ENV_TOKEN}", "Origin": CORS_ORIGIN})
    assert answer(response) == expected(policy, order)
    assert response.headers["access-control-allow-origin"] == CORS_ORIGIN
    preflight = {"Origin": CORS_ORIGIN, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization, content-type"}
    allowed = httpx.options(url, headers=preflight)  # a browser's preflight carries no token
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == CORS_ORIGIN
    other = httpx.options(url, headers={**preflight, "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_no_cors_unless_configured(server: Server) -> None:
    preflight = {"Origin": CORS_ORIGIN, "Access-Control-Request-Method": "POST"}
    response = httpx.options(f"{server.url}/v1/decisions", headers=preflight)
    assert "access-control-allow-origin" not in response.headers
    response = httpx.get(f"{server.url}/healthz", headers={"Origin": CORS_ORIGIN})
    assert "access-control-allow-origin" not in response.headers


# ------------------------------------------------------------------------------------ decisions


def test_decisions_equal_policy_decide(client: httpx.Client, policy: engine.Policy) -> None:
    orders = [dict(ex.order) for rule in policy.spec.rules for ex in rule.examples]
    assert orders
    for order in orders:
        assert answer(client.post("/v1/decisions", params={"as_of": AS_OF}, json=order)) == expected(policy, order)


def test_decisions_are_byte_for_byte_the_direct_engines(client: httpx.Client, policy: engine.Policy) -> None:
    """The service decides from the cell table; its answer is the per-order durable_rules path's, to the byte."""
    orders = [o for o in random_orders(policy, 60, seed=13) if expected(policy, o)[0] == 200]
    orders.append({"order_id": "E1", "status": "Sent", "seller_reply": "No reply", "colour": "red"})  # a warned key
    assert len(orders) > 40
    for order in orders:
        response = client.post("/v1/decisions", params={"as_of": AS_OF}, json=order)
        assert response.status_code == 200, response.text
        assert response.content == dumps(policy.decide(order, as_of=AS_OF, engine="direct"))


def test_as_of_is_a_query_parameter(client: httpx.Client, policy: engine.Policy) -> None:
    order = {"order_id": "A1", "status": "shipped", "seller_reply": "no_reply", "contacted_at": "2026-03-01T00:00:00Z"}
    answers = {}
    for as_of in ("2026-03-01T12:00:00Z", "2026-03-05T12:00:00Z"):
        response = client.post("/v1/decisions", params={"as_of": as_of}, json=order)
        assert response.status_code == 200
        assert response.json() == json.loads(policy.decide(order, as_of=as_of).to_json())
        answers[as_of] = response.json()["facts"]["hours_since_contact"]
    assert answers == {"2026-03-01T12:00:00Z": 12.0, "2026-03-05T12:00:00Z": 108.0}
    bad = client.post("/v1/decisions", params={"as_of": "next tuesday"}, json=order)
    assert bad.status_code == 422 and [p["field"] for p in bad.json()["problems"]] == ["as_of"]


def test_bad_order_lists_every_bad_field(client: httpx.Client, policy: engine.Policy) -> None:
    order = {"status": "teleported", "hours_since_contact": -1, "payment_method": "seashells",
             "paid_at": "last week"}
    response = client.post("/v1/decisions", params={"as_of": AS_OF}, json=order)
    assert answer(response) == expected(policy, order)
    assert {p["field"] for p in response.json()["problems"]} >= {"order_id", "status", "hours_since_contact",
                                                                   "payment_method", "paid_at"}


def test_wrong_json_types_are_named_with_the_engines_problems(client: httpx.Client, policy: engine.Policy) -> None:
    order = {"order_id": {"nested": 1}, "status": ["shipped"], "seller_reply": True, "hours_since_contact": -2}
    response = client.post("/v1/decisions", params={"as_of": AS_OF}, json=order)
    assert response.status_code == 422
    problems = {p["field"]: p["message"] for p in response.json()["problems"]}
    assert set(problems) == {"order_id", "status", "seller_reply", "hours_since_contact"}
    assert "object" in problems["order_id"] and "array" in problems["status"] and "boolean" in problems["seller_reply"]
    _, engine_problems = expected(policy, {"hours_since_contact": -2})
    assert problems["hours_since_contact"] == dict(engine_problems)["hours_since_contact"]


@pytest.mark.parametrize("body,field", [(b"{not json", "body"), (b"", "body"), (b'{"order_id": NaN}', "body"),
                                        (b"[1, 2]", "body"), (b'"text"', "body"), (b"[" * 100_000, "body"),
                                        (b'{"order_id": "X", "status": "shipped", "seller_rating": 1' + b"0" * 400
                                         + b"}", "seller_rating")])
def test_malformed_bodies_are_4xx_naming_the_part(client: httpx.Client, body: bytes, field: str) -> None:
    response = client.post("/v1/decisions", params={"as_of": AS_OF}, content=body,
                           headers={"Content-Type": "application/json"})
    assert 400 <= response.status_code < 500
    assert response.headers["content-type"] == "application/json"
    assert field in [p["field"] for p in response.json()["problems"]]
    assert "Traceback" not in response.text


@pytest.mark.parametrize("path", ["/v1/decisions", "/v1/decisions/batch"])
@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x"])
def test_unknown_content_type_is_415(client: httpx.Client, path: str, content_type: str) -> None:
    response = client.post(path, content=b'{"order_id": "X"}', headers={"Content-Type": content_type})
    assert response.status_code == 415
    assert response.json()["problems"][0]["field"] == "Content-Type"


def test_body_size_limit_is_413(client: httpx.Client) -> None:
    big = b'{"order_id": "' + b"x" * MAX_BODY + b'"}'
    for path in ("/v1/decisions", "/v1/decisions/batch"):
        response = client.post(path, content=big, headers={"Content-Type": "application/json"})
        assert response.status_code == 413 and response.json()["problems"][0]["field"] == "body"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is counted while reading
        yield b'{"order_id": "'
        for _ in range(MAX_BODY // 10_000 + 1):
            yield b"x" * 10_000
        yield b'"}'

    response = client.post("/v1/decisions", content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413


def test_batch_row_limit_is_413(client: httpx.Client) -> None:
    response = client.post("/v1/decisions/batch", json=[{}] * (MAX_ROWS + 1))
    assert response.status_code == 413 and response.json()["problems"][0]["field"] == "rows"
    text = "order_id,status\n" + "".join(f"O{i},shipped\n" for i in range(MAX_ROWS + 1))
    response = client.post("/v1/decisions/batch", content=text, headers={"Content-Type": "text/csv"})
    assert response.status_code == 413
    response = client.post("/v1/decisions/batch", params={"as_of": AS_OF}, json=[{}] * MAX_ROWS)
    assert response.status_code == 200 and len(response.json()) == MAX_ROWS


# ---------------------------------------------------------------------------------------- batch


def _check_batch_rows(policy: engine.Policy, orders: list[Any], rows: list[dict[str, Any]]) -> None:
    assert len(rows) == len(orders)
    for order, row in zip(orders, rows, strict=True):
        assert row["policy_version"] == policy.version
        if not isinstance(order, dict):
            assert row["action"] is None and "JSON object" in row["error"]
            continue
        status, want = expected(policy, order)
        if status == 200:
            assert (row["action"], row["rule_id"], row["message"]) == (want["action"], want["rule_id"],
                                                                        want["message"]), order
            assert row["error"] == want["error"]
        else:
            assert row["action"] is None and row["rule_id"] is None, order
            assert row["error"] == "; ".join(f"{f}: {m}" for f, m in
                                             [(p.field, p.message) for p in _problems(policy, order)])


def _problems(policy: engine.Policy, order: dict[str, Any]) -> list[engine.FieldProblem]:
    with pytest.raises(engine.OrderError) as info:
        policy.decide(order, as_of=AS_OF)
    return info.value.problems


def test_batch_json_rows_in_order_bad_rows_do_not_fail(client: httpx.Client, policy: engine.Policy) -> None:
    orders: list[Any] = random_orders(policy, 300, seed=1)
    orders[7] = "not an order"
    orders[8] = [1, 2]
    orders[9] = {"order_id": "W1", "status": {"code": "shipped"}, "action": "smuggled"}
    response = client.post("/v1/decisions/batch", params={"as_of": AS_OF}, json=orders)
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    rows = response.json()
    assert [r["order_id"] for r in rows[10:]] == [o.get("order_id") for o in orders[10:]]
    assert rows[9]["action"] is None and rows[9]["error"].startswith("status: must be text")
    del orders[9], rows[9]
    _check_batch_rows(policy, orders, rows)


def test_batch_csv_in_csv_out(client: httpx.Client, policy: engine.Policy) -> None:
    orders = random_orders(policy, 200, seed=2)
    frame = pd.DataFrame(orders).fillna("").astype(str)
    frame["note"] = "kept"
    response = client.post("/v1/decisions/batch", params={"as_of": AS_OF}, content=frame.to_csv(index=False),
                           headers={"Content-Type": "text/csv; charset=utf-8", "Accept": "text/csv"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    out = pd.read_csv(io.StringIO(response.text), dtype=str, keep_default_na=False)
    assert list(out.columns) == [*frame.columns, "action", "rule_id", "message", "error", "policy_version"]
    assert out[list(frame.columns)].equals(frame)
    rows = [{k: (v or None) for k, v in row.items()} for row in out.to_dict("records")]
    _check_batch_rows(policy, [{k: v for k, v in o.items()} for o in frame.to_dict("records")], rows)


def test_batch_accept_negotiation_and_csv_to_json(client: httpx.Client, policy: engine.Policy) -> None:
    csv = "order_id,status\nN1,Awaiting shipment\nN2,nowhere\n"
    headers = {"Content-Type": "text/csv"}
    as_json = client.post("/v1/decisions/batch", params={"as_of": AS_OF}, content=csv, headers=headers)
    assert as_json.headers["content-type"] == "application/json"
    _check_batch_rows(policy, [{"order_id": "N1", "status": "Awaiting shipment"},
                               {"order_id": "N2", "status": "nowhere"}], as_json.json())
    preferred = client.post("/v1/decisions/batch", params={"as_of": AS_OF}, content=csv,
                            headers={**headers, "Accept": "application/json;q=0.5, text/csv"})
    assert preferred.headers["content-type"].startswith("text/csv")
    refused = client.post("/v1/decisions/batch", content=csv, headers={**headers, "Accept": "image/png"})
    assert refused.status_code == 406 and refused.json()["problems"][0]["field"] == "Accept"


def test_batch_input_errors_are_422(client: httpx.Client) -> None:
    missing = client.post("/v1/decisions/batch", content="order_id,colour\nX,red\n",
                          headers={"Content-Type": "text/csv"})
    assert missing.status_code == 422 and "status" in [p["field"] for p in missing.json()["problems"]]
    for body, ctype in ((b"order_id,status\n\"X,shipped\n", "text/csv"), (b"\xff\xfe\x00", "text/csv"),
                        (b'{"order_id": "X"}', "application/json")):
        response = client.post("/v1/decisions/batch", content=body, headers={"Content-Type": ctype})
        assert response.status_code in (400, 422) and response.json()["problems"][0]["field"] == "body"


# ------------------------------------------------------------------------------------ policy, docs


def test_policy_endpoint(client: httpx.Client, policy: engine.Policy) -> None:
    response = client.get("/v1/policy")
    assert response.status_code == 200
    assert response.json() == {**json.loads(policy.to_json()), "path": Path(policy.spec.path).name}
    assert "/" not in response.json()["path"]


def test_verify_endpoint(client: httpx.Client, policy: engine.Policy) -> None:
    response = client.get("/v1/policy/verify")
    report = policy.verify()
    assert response.status_code == 200
    # How long it took and how many engine calls it needed depend on what the process had cached before.
    run_dependent = {"seconds", "engine_calls"}
    got = {k: v for k, v in response.json().items() if k not in run_dependent}
    assert got == {k: v for k, v in json.loads(json.dumps(report.to_dict(), default=str)).items()
                   if k not in run_dependent}
    assert got["ok"] is report.ok


def test_openapi_documents_examples_as_of_and_auth(client: httpx.Client, policy: engine.Policy) -> None:
    doc = client.get("/openapi.json").json()
    assert set(doc["paths"]) == {"/healthz", "/v1/decisions", "/v1/decisions/batch", "/v1/policy",
                                 "/v1/policy/verify"}
    decide = doc["paths"]["/v1/decisions"]["post"]
    examples = decide["requestBody"]["content"]["application/json"]["examples"]
    for example in examples.values():  # every documented example is a valid order
        assert expected(policy, example["value"])[0] == 200
    assert [p["name"] for p in decide["parameters"]] == ["as_of", "strict"]
    batch = doc["paths"]["/v1/decisions/batch"]["post"]
    assert [p["name"] for p in batch["parameters"]] == ["as_of", "strict", "raw", "delimiter"]
    assert {"400", "401", "413", "415", "422", "500"} <= set(decide["responses"])
    assert "text/csv" in doc["paths"]["/v1/decisions/batch"]["post"]["requestBody"]["content"]
    assert decide["security"] == [{"bearer": []}] and "security" not in doc["paths"]["/healthz"]["get"]
    assert set(doc["components"]["schemas"]["Order"]["required"]) == {
        n for n, f in policy.spec.facts.items() if f.required}


def test_errors_are_json_never_tracebacks(client: httpx.Client) -> None:
    for response in (client.get("/nope"), client.delete("/v1/policy"), client.put("/v1/decisions", json={})):
        assert response.status_code in (404, 405)
        assert response.headers["content-type"] == "application/json" and "Traceback" not in response.text


def _in_process(app: Any, path: str) -> httpx.Response:
    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            return await c.get(path)

    return asyncio.run(get())


def test_unhandled_error_is_a_generic_500(policy: engine.Policy) -> None:
    app = create_app(policy)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internals /etc/passwd")

    response = _in_process(app, "/boom")
    assert response.status_code == 500
    assert response.json() == {"error": "internal_error", "message": "internal server error", "problems": []}


def test_no_token_means_open(policy: engine.Policy) -> None:
    assert _in_process(create_app(policy, Settings()), "/v1/policy").status_code == 200
    assert _in_process(create_app(policy, Settings(token="x")), "/v1/policy").status_code == 401


# ---------------------------------------------------------------------------------- concurrency


def test_concurrent_different_orders_each_get_their_own_answer(server: Server, policy: engine.Policy) -> None:
    orders = random_orders(policy, 500, seed=3)
    local = threading.local()

    def post(order: dict[str, Any]) -> tuple[int, Any]:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"},
                                        timeout=30)
        return answer(local.client.post("/v1/decisions", params={"as_of": AS_OF}, json=order))

    with ThreadPoolExecutor(max_workers=32) as pool:
        answers = list(pool.map(post, orders))
    wanted = [expected(policy, order) for order in orders]
    mismatches = [i for i, (got, want) in enumerate(zip(answers, wanted, strict=True)) if got != want]
    assert not mismatches, f"{len(mismatches)} wrong answers, first: {orders[mismatches[0]]}"
    assert {status for status, _ in answers} == {200, 422}
    assert len({a["action"] for s, a in answers if s == 200}) > 3


def test_a_dead_worker_is_replaced(client: httpx.Client, server: Server) -> None:
    def workers() -> list[psutil.Process]:
        found = []
        for proc in psutil.Process(server.process.pid).children():
            try:
                if any("multiprocessing-fork" in part for part in proc.cmdline()):
                    found.append(proc)
            except psutil.Error:  # a worker that died and is not reaped yet
                pass
        return found

    before = workers()
    assert len(before) == 2
    before[0].kill()
    deadline = time.monotonic() + 30
    while not (len(workers()) == 2 and before[0].pid not in {p.pid for p in workers()}):
        assert time.monotonic() < deadline, "no worker replaced the one that died"
        time.sleep(0.2)
    for _ in range(20):  # whichever worker a new connection lands on answers
        with httpx.Client(base_url=server.url, headers=client.headers) as fresh:
            assert fresh.get("/v1/policy").status_code == 200


# ---------------------------------------------------------------------------------- schemathesis


def test_schemathesis_finds_no_server_error(server: Server, tmp_path: Path) -> None:
    # positive_data_acceptance is left out by design: enum facts accept labels and aliases case-insensitively,
    # so the schema types them as free text, and a schema-valid string may still be an unknown value (422).
    cli = Path(sys.executable).with_name("st")
    result = subprocess.run(
        [str(cli), "run", f"{server.url}/openapi.json", "-H", f"Authorization: Bearer {TOKEN}",
         "--checks", "all", "--exclude-checks", "positive_data_acceptance", "--max-examples", "100",
         "--seed", "5", "--generation-database", "none", "--request-timeout", "20", "--no-color",
         "--report", "junit", "--report-dir", str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    summary = re.search(r"(\d+) generated", result.stdout)
    assert result.returncode == 0, result.stdout[-4000:]
    assert summary and int(summary.group(1)) >= 300, result.stdout[-2000:]
    assert "5xx" not in result.stdout.split("SUMMARY")[-1]


# --------------------------------------------------------------------------------- serve command


@pytest.mark.parametrize("env,message", [
    ({"CANCEL_RULES_TOKEN": ""}, "CANCEL_RULES_TOKEN is set but blank"),
    ({"CANCEL_RULES_TOKEN": " \t\n"}, "CANCEL_RULES_TOKEN is set but blank"),
    ({"CANCEL_RULES_TOKEN_FILE": " "}, "CANCEL_RULES_TOKEN_FILE is set but blank"),
    ({"CANCEL_RULES_BODY_TIMEOUT": "0"}, "CANCEL_RULES_BODY_TIMEOUT must be a positive number"),
    ({"CANCEL_RULES_KEEPALIVE_TIMEOUT": "-1"}, "CANCEL_RULES_KEEPALIVE_TIMEOUT must be a positive number"),
    ({"CANCEL_RULES_SEND_TIMEOUT": "inf"}, "CANCEL_RULES_SEND_TIMEOUT must be a positive number"),
    ({"CANCEL_RULES_HEADER_TIMEOUT": "nan"}, "CANCEL_RULES_HEADER_TIMEOUT must be a positive number"),
    ({"CANCEL_RULES_ALLOWED_HOSTS": " , "}, "CANCEL_RULES_ALLOWED_HOSTS lists no host"),
    ({"CANCEL_RULES_ALLOWED_HOSTS": "https://api.example"}, "not a host name"),
    ({"CANCEL_RULES_ALLOWED_HOSTS": "localhost:8000"}, "not a host name"),
])
def test_settings_refuse_bad_values(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings.from_env(env)


def test_settings_read_every_variable(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(" from-file \n")
    settings = Settings.from_env({
        "CANCEL_RULES_TOKEN": "   ", "CANCEL_RULES_TOKEN_FILE": str(token_file),  # the file wins, blank or not
        "CANCEL_RULES_ALLOWED_HOSTS": "API.example.com, *.example.org,[::1],127.0.0.1.",
        "CANCEL_RULES_KEEPALIVE_TIMEOUT": "2.5", "CANCEL_RULES_HEADER_TIMEOUT": "3",
        "CANCEL_RULES_BODY_TIMEOUT": "4", "CANCEL_RULES_SEND_TIMEOUT": "5"})
    assert settings.token == "from-file"
    assert settings.allowed_hosts == ("api.example.com", "*.example.org", "::1", "127.0.0.1")
    assert (settings.keepalive_timeout, settings.header_timeout, settings.body_timeout,
            settings.send_timeout) == (2.5, 3, 4, 5)
    assert Settings.from_env({"CANCEL_RULES_TOKEN": " t "}).token == "t" and Settings.from_env({}).token is None


@pytest.mark.parametrize("args,env,message", [
    (["--token-file", "/nonexistent/token"], {}, "cannot read the token file"),
    (["--workers", "0"], {}, "--workers must be at least 1"),
    ([], {"CANCEL_RULES_MAX_BATCH_ROWS": "lots"}, "CANCEL_RULES_MAX_BATCH_ROWS must be a positive integer"),
    (["--policy", "/nonexistent/policy.yaml"], {}, "policy.yaml"),
    ([], {"CANCEL_RULES_TOKEN": "   "}, "CANCEL_RULES_TOKEN is set but blank"),
    ([], {"CANCEL_RULES_HEADER_TIMEOUT": "soon"}, "CANCEL_RULES_HEADER_TIMEOUT must be a positive number"),
])
def test_serve_refuses_bad_settings_before_listening(args: list[str], env: dict[str, str], message: str) -> None:
    result = subprocess.run([*_command(), "serve", "--port", str(_free_port()), *args], env=_clean_env(**env),
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


# ---------------------------------------------------------------------------------- a port in use


def _run_serve(port: int, *args: str, timeout: float = 30) -> tuple[int, str]:
    """A `serve` that should refuse to start: its exit status and stderr; stopped (and failed) if it runs."""
    proc = subprocess.Popen([*_command(), "serve", "--port", str(port), *args], env=_clean_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()  # SIGTERM: the supervisor stops its workers too
        proc.communicate(timeout=30)
        raise AssertionError(f"serve {' '.join(args)} on port {port} in use did not exit: it shares the port") from None
    return proc.returncode, err


def _policies_answering(url: str, headers: dict[str, str], count: int = 20) -> set[str]:
    versions = set()
    for _ in range(count):
        with httpx.Client(base_url=url, headers=headers, timeout=30) as fresh:  # a new connection each time
            versions.add(fresh.get("/v1/policy").json()["version"])
    return versions


def _assert_port_refused(status: int, stderr: str, port: int) -> None:
    assert status == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and f":{port}" in lines[0] and "in use" in lines[0], stderr


@pytest.mark.parametrize("first,workers", [("server", 2), ("server", 1), ("env_server", 2)])
def test_a_second_server_on_a_port_in_use_exits_2(request: pytest.FixtureRequest, policy: engine.Policy,
                                                    first: str, workers: int) -> None:
    running: Server = request.getfixturevalue(first)  # 2 workers (SO_REUSEPORT) or 1 worker
    port = int(running.url.rsplit(":", 1)[1])
    status, stderr = _run_serve(port, "--workers", str(workers), "--policy", str(LEGACY))
    _assert_port_refused(status, stderr, port)
    token = TOKEN if first == "server" else ENV_TOKEN
    assert _policies_answering(running.url, {"Authorization": f"Bearer {token}"}) == {policy.version}


@pytest.mark.parametrize("workers", [1, 2])
def test_a_port_held_by_a_plain_socket_exits_2(workers: int) -> None:
    with socket.socket() as plain:  # another program, without SO_REUSEPORT
        plain.bind(("127.0.0.1", 0))
        plain.listen()
        port = plain.getsockname()[1]
        _assert_port_refused(*_run_serve(port, "--workers", str(workers)), port)


def test_two_servers_started_at_once_never_share_the_port(policy: engine.Policy) -> None:
    port = _free_port()
    procs = [subprocess.Popen([*_command(), "serve", "--port", str(port), "--workers", "2", *extra], env=_clean_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for extra in ([], ["--policy", str(LEGACY)])]
    try:
        deadline, listening_since = time.monotonic() + 60, None
        while time.monotonic() < deadline:
            alive = [p for p in procs if p.poll() is None]
            if not alive:
                break
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                listening_since = listening_since or time.monotonic()
            except OSError:
                pass
            # one left, listening; or both alive well after the port answered (each had its time to check)
            if listening_since and (len(alive) == 1 or time.monotonic() - listening_since > 10):
                break
            time.sleep(0.1)
        alive = [p for p in procs if p.poll() is None]
        assert len(alive) <= 1, "both servers run on one port"
        for proc in procs:
            if proc not in alive:
                _assert_port_refused(proc.returncode, proc.stderr.read(), port)
        if alive:
            want = policy.version if alive[0] is procs[0] else engine.load(LEGACY).version
            assert _policies_answering(f"http://127.0.0.1:{port}", {}) == {want}
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.communicate(timeout=30)


def test_listeners_of_another_process_in_the_group_are_found() -> None:
    from engine.service.run import _bind_listeners, _shared_with_others

    ours = _bind_listeners("127.0.0.1", 0, 2)
    port = ours[0].getsockname()[1]
    try:
        assert {s.getsockname()[1] for s in ours} == {port} and not _shared_with_others(ours)
        with socket.socket() as intruder:  # what a second server's worker does: join the SO_REUSEPORT group
            intruder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            intruder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            intruder.bind(("127.0.0.1", port))
            intruder.listen()
            assert _shared_with_others(ours)
        with pytest.raises(ValueError, match=f"127.0.0.1:{port}: .*in use"):
            _bind_listeners("127.0.0.1", port, 2)
    finally:
        for sock in ours:
            sock.close()


# ---------------------------------------------------------------------------------- slow clients

TIMEOUT_ENV = {"CANCEL_RULES_KEEPALIVE_TIMEOUT": "1", "CANCEL_RULES_HEADER_TIMEOUT": "1",
               "CANCEL_RULES_BODY_TIMEOUT": "1", "CANCEL_RULES_SEND_TIMEOUT": "1"}


@pytest.fixture(scope="module", params=[1, 2], ids=["1 worker", "2 workers"])
def timeout_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serve(tmp_path_factory.mktemp("timeouts"), "--workers", str(request.param),
               env=_clean_env(**TIMEOUT_ENV)) as srv:
        yield srv


def _hold(port: int, kinds: list[str], limit: float = 20) -> dict[int, bytes]:
    """Opens one socket per kind, plays that kind of slow client, and returns what each received until the server
    closed it; sockets the server still holds after `limit` seconds are missing from the answer."""
    socks = []
    for kind in kinds:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setblocking(False)
        sock.send({"idle": b"", "slow head": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ",
                   "slow body": b"POST /v1/decisions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                b"Content-Length: 1000\r\n\r\n{",
                   "after a request": b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"}[kind])
        socks.append(sock)
    received = {i: b"" for i in range(len(socks))}
    closed: dict[int, bytes] = {}
    deadline = time.monotonic() + limit
    while len(closed) < len(socks) and time.monotonic() < deadline:
        for i, sock in enumerate(socks):
            if i in closed:
                continue
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                if kinds[i] in ("slow head", "slow body"):  # a byte now and then: never the end
                    try:
                        sock.send(b"a")
                    except OSError:
                        pass
                continue
            except ConnectionError:
                data = b""
            received[i] += data
            if not data:
                closed[i] = received[i]
        time.sleep(0.2)
    for sock in socks:
        sock.close()
    return closed


def test_idle_and_slow_clients_are_closed(timeout_server: Server) -> None:
    port = int(timeout_server.url.rsplit(":", 1)[1])
    kinds = ["idle", "slow head", "slow body", "after a request"] * 5
    closed = _hold(port, kinds)
    assert sorted(closed) == list(range(len(kinds))), f"still open: {[kinds[i] for i in set(range(20)) - set(closed)]}"
    for i, kind in enumerate(kinds):
        status = closed[i][9:12]
        if kind == "idle":
            assert closed[i] == b""
        elif kind == "after a request":
            assert status == b"200" and closed[i].count(b"HTTP/1.1") == 1
        else:  # told why, then closed
            assert status == b"408" and b'"error":"request_timeout"' in closed[i], closed[i][:300]
    assert httpx.get(f"{timeout_server.url}/healthz").status_code == 200


def test_a_client_that_does_not_read_its_answers_is_closed(timeout_server: Server) -> None:
    port = int(timeout_server.url.rsplit(":", 1)[1])
    request = b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n"
    size = len(httpx.get(f"{timeout_server.url}/openapi.json").content)
    count = 64 * 2**20 // size  # answers far beyond what socket buffers hold
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        sock.sendall(request * 20)
        sock.settimeout(20)
        time.sleep(3)  # pipelined requests, answers not read: the server's write buffer fills and stays full
        try:
            sock.sendall(request * (count - 20))
        except OSError:
            pass  # the server gave up on us while we were still sending
        got = 0
        try:
            while data := sock.recv(1 << 20):
                got += len(data)
        except ConnectionError:
            pass
    assert got < count * size  # closed long before every answer was sent


# ---------------------------------------------------------------------------------- allowed hosts


@pytest.mark.parametrize("host,allowed", [("127.0.0.1", True), ("localhost:8000", True), ("LOCALHOST", True),
                                          ("api.support.example", True), ("support.example", False),
                                          ("evil.example", False), ("127.0.0.1.evil.example", False),
                                          ("[::1]:8000", False), ("", False)])
def test_host_allow_list(env_server: Server, host: str, allowed: bool) -> None:
    headers = {"Authorization": f"Bearer {ENV_TOKEN}", "Host": host}
    for path in ("/healthz", "/v1/policy"):
        response = httpx.get(f"{env_server.url}{path}", headers=headers)
        if allowed:
            assert response.status_code == 200
        else:
            assert response.status_code == 400 and response.json()["error"] == "invalid_host"
            assert [p["field"] for p in response.json()["problems"]] == ["Host"]


def test_no_host_allow_list_unless_configured(server: Server) -> None:
    assert httpx.get(f"{server.url}/healthz", headers={"Host": "evil.example"}).status_code == 200


# ------------------------------------------------------------------ bad text, ids, batch rows alone


def _post_raw(client: httpx.Client, path: str, body: bytes, **headers: str) -> httpx.Response:
    return client.post(path, params={"as_of": AS_OF}, content=body,
                       headers={"Content-Type": "application/json", **headers})


@pytest.mark.parametrize("body,field", [
    (b'{"order_id": "S1", "status": "\\ud800"}', "status"),
    (b'{"order_id": "\\udfff", "status": "Awaiting shipment"}', "order_id"),
    (b'{"order_id": "S1", "status": "shipped", "seller_reply": "no\\udc00reply", "hours_since_contact": 50}',
     "seller_reply"),
    (b'{"order_id": "S1", "status": "shipped", "contacted_at": "2026-03-01T00:00:00\\ud800"}', "contacted_at"),
    (b'{"order_id": "S1", "status": "shipped", "hours_since_contact": "5\\ud800"}', "hours_since_contact"),
])
def test_a_lone_surrogate_is_a_4xx_naming_the_field(client: httpx.Client, body: bytes, field: str) -> None:
    response = _post_raw(client, "/v1/decisions", body)
    assert response.status_code == 422, response.text
    problems = {p["field"]: p for p in response.json()["problems"]}
    assert "not valid Unicode text" in problems[field]["message"]
    assert problems[field]["value"] == json.loads(body)[field]  # echoed exactly, as a JSON escape


def test_a_lone_surrogate_in_a_batch_is_that_rows_error(client: httpx.Client, policy: engine.Policy) -> None:
    body = (b'[{"order_id": "S1", "status": "\\ud800"}, {"order_id": "\\udfff", "status": "Awaiting shipment"},'
            b' {"order_id": "S3", "status": "Awaiting shipment", "note\\ud800": "\\ud800"},'
            b' {"order_id": "\\ud83d\\ude00", "status": "Awaiting shipment"}]')
    want = expected(policy, {"order_id": "S3", "status": "Awaiting shipment"})[1]
    for accept in ("application/json", "text/csv"):
        response = _post_raw(client, "/v1/decisions/batch", body, Accept=accept)
        assert response.status_code == 200, response.text
        rows = (response.json() if accept == "application/json" else
                pd.read_csv(io.StringIO(response.text), dtype=str, keep_default_na=False).to_dict("records"))
        assert [r["order_id"] for r in rows] == (["S1", "\udfff", "S3", "😀"] if accept == "application/json"
                                                 else ["S1", "", "S3", "😀"])  # CSV is UTF-8: the bad id is blank
        assert rows[0]["error"].startswith("status: is not valid Unicode text") and not rows[0]["action"]
        assert rows[1]["error"].startswith("order_id: is not valid Unicode text") and not rows[1]["action"]
        assert rows[2]["action"] == rows[3]["action"] == want["action"]


def test_integer_ids_are_echoed_exactly(client: httpx.Client) -> None:
    orders = [{"order_id": 1234567890123456789, "status": "Awaiting shipment"}, {"status": "Awaiting shipment"},
              {"order_id": 10**40, "status": "Awaiting shipment"}, {"order_id": "0042", "status": "Awaiting shipment"},
              {"order_id": 7, "status": "Awaiting shipment"}]
    rows = client.post("/v1/decisions/batch", params={"as_of": AS_OF}, json=orders).json()
    assert [r["order_id"] for r in rows] == [1234567890123456789, None, 10**40, "0042", 7]
    assert [type(r["order_id"]) for r in rows] == [int, type(None), int, str, int]
    as_csv = client.post("/v1/decisions/batch", params={"as_of": AS_OF}, json=orders, headers={"Accept": "text/csv"})
    ids = pd.read_csv(io.StringIO(as_csv.text), dtype=str, keep_default_na=False)["order_id"].tolist()
    assert ids == ["1234567890123456789", "", str(10**40), "0042", "7"]


def test_keys_spelled_differently_in_other_rows_do_not_change_a_row(client: httpx.Client) -> None:
    alone = [{"order_id": "K2", "Status": "Awaiting shipment"}]
    together = [{"order_id": "K1", "status": "shipped"}, *alone]
    row = client.post("/v1/decisions/batch", params={"as_of": AS_OF}, json=alone).json()[0]
    assert row["action"] and row["error"] is None
    assert client.post("/v1/decisions/batch", params={"as_of": AS_OF}, json=together).json()[1] == row
    single = client.post("/v1/decisions", params={"as_of": AS_OF}, json=alone[0]).json()
    assert (single["action"], single["rule_id"], single["message"]) == (row["action"], row["rule_id"], row["message"])


_BAD_JSON = st.one_of(st.booleans(), st.none(), st.just(""), st.lists(st.integers(), max_size=2),
                      st.dictionaries(st.text(max_size=3), st.integers(), max_size=1))
_TEXT = st.one_of(st.text(max_size=8), st.text("xyz'\"", min_size=201, max_size=230),
                  st.sampled_from(["\ud800", "a\udfffb", "\ud83d\ude00"]))


def _fact_values(fact: Any) -> st.SearchStrategy:
    if fact.type == "enum":
        known = st.sampled_from([*fact.values, *fact.labels.values()])
        good = known.flatmap(lambda v: st.sampled_from([v, v.upper(), f" {v} "]))
        return st.one_of(good, good, _TEXT, _BAD_JSON, st.integers(-3, 3))
    if fact.type == "number":
        number = st.one_of(st.integers(-5, 500), st.floats(-5, 500), st.sampled_from([10**20, 1e308, 2**64]))
        return st.one_of(number, number, number.map(str), _TEXT, _BAD_JSON)
    finite = st.floats(allow_nan=False, allow_infinity=False)
    return st.one_of(st.text(min_size=1, max_size=8), st.integers(-10, 10**20), finite, _TEXT, _BAD_JSON)


def _timestamps() -> st.SearchStrategy:
    # Text only: an epoch number in a timestamp field is another helper's case (its answer depends on neighbours).
    hours = st.integers(-48, 600).map(lambda h: (pd.Timestamp(AS_OF) - pd.Timedelta(hours=h)).isoformat())
    return st.one_of(hours, hours, st.just("2026-13-01"), _TEXT, st.none())


def _spellings(name: str) -> st.SearchStrategy:
    return st.sampled_from([name, name, name.upper(), name.replace("_", " ").title(), f" {name} ",
                            name.replace("_", "-")])


@st.composite
def _batch_row(draw: st.DrawFn, policy: engine.Policy) -> Any:
    if draw(st.integers(0, 14)) == 0:
        return draw(st.sampled_from([None, 1, "order", [1], True]))
    facts = policy.spec.facts
    values = {name: _fact_values(fact) for name, fact in facts.items()}
    values.update({f.from_timestamp: _timestamps() for f in facts.values() if f.from_timestamp})
    pairs = []
    for name, strategy in values.items():
        if draw(st.integers(0, 9)) < (8 if name in facts and facts[name].required else 4):
            pairs.append((draw(_spellings(name)), draw(strategy)))
            if draw(st.integers(0, 14)) == 0:  # the same field spelled a second way
                pairs.append((draw(_spellings(name)), draw(strategy)))
    pairs += draw(st.lists(st.tuples(st.text(min_size=1, max_size=6), st.integers() | _TEXT), max_size=2))
    return dict(draw(st.permutations(pairs)))


def _sent_id(order: dict[str, Any]) -> Any:
    if "order_id" in order:
        return order["order_id"]
    return next((v for k, v in order.items() if alias_key(k) == "order id"), None)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_each_batch_row_equals_the_decision_on_that_row_alone(client: httpx.Client, policy: engine.Policy,
                                                              data: st.DataObject) -> None:
    body = json.dumps(data.draw(st.lists(_batch_row(policy), min_size=1, max_size=6), label="orders"))
    orders = json.loads(body)  # as the server reads it: an escaped surrogate pair is one character
    response = _post_raw(client, "/v1/decisions/batch", body.encode())
    assert response.status_code == 200, response.text
    rows = response.json()
    assert len(rows) == len(orders)
    for order, row in zip(orders, rows, strict=True):
        if not isinstance(order, dict):
            assert row["action"] is None and "JSON object" in row["error"] and row["order_id"] is None
            continue
        assert row["order_id"] == _sent_id(order) and type(row["order_id"]) is type(_sent_id(order)), order
        alone = _post_raw(client, "/v1/decisions", json.dumps(order).encode())
        assert alone.status_code in (200, 422), alone.text
        if alone.status_code == 200:
            want = alone.json()
            assert [row[k] for k in DECISION_KEYS] == [want[k] for k in DECISION_KEYS], order
        else:
            problems = "; ".join(f"{p['field']}: {p['message']}" for p in alone.json()["problems"])
            assert (row["action"], row["rule_id"], row["error"]) == (None, None, problems), order


DECISION_KEYS = ("action", "rule_id", "message", "error", "policy_version")


# ------------------------------------------- issue 9: wide CSVs, neighbours, unknown fields, formulas


def test_a_csv_body_wider_than_the_column_limit_is_413(client: httpx.Client) -> None:
    names = ["order_id", "status", *(f"x{i}" for i in range(999))]  # 1,001 columns: the default limit is 1,000
    body = ",".join(names) + "\n" + ",".join(["W1", "shipped", *["v"] * 999]) + "\n"
    response = client.post("/v1/decisions/batch", params={"as_of": AS_OF}, content=body,
                           headers={"Content-Type": "text/csv"})
    assert response.status_code == 413
    assert response.json()["problems"] == [{"field": "columns", "message": "at most 1000 columns", "value": 1001}]
    narrow = ",".join(names[:1000]) + "\n" + ",".join(["W1", "shipped", *["v"] * 998]) + "\n"
    response = client.post("/v1/decisions/batch", params={"as_of": AS_OF}, content=narrow,
                           headers={"Content-Type": "text/csv"})
    assert response.status_code == 200 and response.json()[0]["action"] == "contact_seller"


def test_the_column_limit_comes_from_the_environment() -> None:
    assert Settings.from_env({}).max_columns == 1000
    assert Settings.from_env({"CANCEL_RULES_MAX_COLUMNS": "50"}).max_columns == 50
    with pytest.raises(ValueError, match="CANCEL_RULES_MAX_COLUMNS must be a positive integer, got '0'"):
        Settings.from_env({"CANCEL_RULES_MAX_COLUMNS": "0"})


def test_a_batch_row_is_answered_as_alone_whatever_its_neighbours(client: httpx.Client,
                                                                   policy: engine.Policy) -> None:
    """An epoch number where a timestamp is meant, next to a number that would decide without it: alone it was
    decided (pandas made the column numbers, unchecked), beside an ISO text row it was refused."""
    epoch = {"order_id": "E1", "status": "Closed", "payment_method": "card", "days_since_refund": 3,
             "refund_started_at": 1767225600}
    text = {"order_id": "T1", "status": "Closed", "payment_method": "card",
            "refund_started_at": "2026-02-20T00:00:00Z"}
    single = client.post("/v1/decisions", params={"as_of": AS_OF}, json=epoch)
    assert single.status_code == 422
    assert single.json()["problems"] == [{"field": "refund_started_at", "value": 1767225600,
                                          "message": "must be an ISO 8601 timestamp, got JSON int"}]
    alone = client.post("/v1/decisions/batch", params={"as_of": AS_OF}, json=[epoch]).json()
    mixed = client.post("/v1/decisions/batch", params={"as_of": AS_OF}, json=[text, epoch]).json()
    want = {"order_id": "E1", "action": None, "rule_id": None, "message": None,
            "error": "refund_started_at: must be an ISO 8601 timestamp, got JSON int", "policy_version": policy.version}
    assert alone == [want]
    assert mixed[1] == want and mixed[0]["action"] == "wait_for_refund"


def test_batch_csv_answers_defuse_formulas_unless_raw(client: httpx.Client) -> None:
    body = ('order_id,status,=note\n"=HYPERLINK(""http://x"",""y"")",Sent,@SUM(A1)\nB2,Sent,-2\n'
            "B3,Sent,+cmd|' /C calc'!A0\n")
    headers = {"Content-Type": "text/csv", "Accept": "text/csv"}
    safe = client.post("/v1/decisions/batch", params={"as_of": AS_OF}, content=body, headers=headers)
    raw = client.post("/v1/decisions/batch", params={"as_of": AS_OF, "raw": "true"}, content=body, headers=headers)
    for response, quote in ((safe, "'"), (raw, "")):
        assert response.status_code == 200
        out = pd.read_csv(io.StringIO(response.text), dtype=str, keep_default_na=False)
        assert list(out.columns[:3]) == ["order_id", "status", quote + "=note"]
        assert list(out["order_id"]) == [quote + '=HYPERLINK("http://x","y")', "B2", "B3"]
        assert list(out[quote + "=note"]) == [quote + "@SUM(A1)", "-2", quote + "+cmd|' /C calc'!A0"]
        assert list(out["action"]) == ["contact_seller"] * 3
    # From JSON, numbers stay numbers and texts are defused the same way.
    orders = [{"order_id": "=1+1", "status": "Sent", "seller_rating": -2}, {"order_id": 7, "status": "Sent"}]
    answer_csv = client.post("/v1/decisions/batch", params={"as_of": AS_OF}, json=orders,
                             headers={"Accept": "text/csv"})
    out = pd.read_csv(io.StringIO(answer_csv.text), dtype=str, keep_default_na=False)
    assert list(out["order_id"]) == ["'=1+1", "7"]
    bad = client.post("/v1/decisions/batch", params={"raw": "maybe"}, content=body, headers=headers)
    assert bad.status_code == 422 and bad.json()["problems"][0]["field"] == "raw"


def test_a_csv_batch_separated_otherwise_answers_as_its_comma_twin(client: httpx.Client) -> None:
    """?delimiter= reads ; | or tab bodies (or sniffs them with auto): the same answer as the comma body's."""
    rows = [["order_id", "status", "seller_reply", "hours_since_contact", "note"],
            ["D1", "Sent", "no_reply", "50", "a,b;c|d"], ["D2", "Awaiting shipment", "", "", "x"]]
    headers = {"Content-Type": "text/csv", "Accept": "text/csv"}

    def body(delimiter: str) -> str:
        text = io.StringIO()
        csv.writer(text, delimiter=delimiter, lineterminator="\n").writerows(rows)
        return text.getvalue()

    comma = client.post("/v1/decisions/batch", params={"as_of": AS_OF}, content=body(","), headers=headers)
    assert comma.status_code == 200 and comma.text.count("\n") == 3
    for delimiter, spelling in ((";", ";"), ("|", "pipe"), ("\t", "tab"), (";", "auto"), ("\t", "auto")):
        other = client.post("/v1/decisions/batch", params={"as_of": AS_OF, "delimiter": spelling},
                            content=body(delimiter), headers=headers)
        assert (other.status_code, other.text) == (200, comma.text), (delimiter, spelling)
    bad = client.post("/v1/decisions/batch", params={"as_of": AS_OF, "delimiter": "::"}, content=body(","),
                      headers=headers)
    assert bad.status_code == 422
    assert bad.json()["problems"][0] == {"field": "delimiter", "value": "::",
                                         "message": "?delimiter= takes , ; | tab or auto, got '::'"}


TYPO_ORDER = {"order_id": "U1", "status": "Sent", "seller_reply": "no_reply", "hours_since_contakt": 50}
TYPO_WARNING = "unknown field 'hours_since_contakt' ignored (did you mean 'hours_since_contact'?)"


def test_decisions_warn_of_unknown_fields_and_strict_refuses_them(client: httpx.Client,
                                                                  policy: engine.Policy) -> None:
    response = client.post("/v1/decisions", params={"as_of": AS_OF}, json=TYPO_ORDER)
    assert response.status_code == 200
    assert response.json() == json.loads(policy.decide(TYPO_ORDER, as_of=AS_OF).to_json())
    assert response.json()["warnings"] == [TYPO_WARNING]
    strict = client.post("/v1/decisions", params={"as_of": AS_OF, "strict": "true"},
                         json={**TYPO_ORDER, "status": ["Sent"]})
    assert strict.status_code == 422
    assert strict.json()["problems"] == [
        {"field": "status", "message": "must be text, got JSON array", "value": ["Sent"]},
        {"field": "hours_since_contakt", "message": "unknown field (did you mean 'hours_since_contact'?)",
         "value": 50}]


def test_batches_report_unknown_fields_in_a_header_and_strict_refuses_them(client: httpx.Client,
                                                                           policy: engine.Policy) -> None:
    plain = {"order_id": "P1", "status": "Sent", "note": "kept"}
    response = client.post("/v1/decisions/batch", params={"as_of": AS_OF}, json=[plain, TYPO_ORDER])
    assert response.status_code == 200
    assert json.loads(response.headers["cancel-rules-warnings"]) == [TYPO_WARNING, "unknown field 'note' ignored"]
    assert [r["action"] for r in response.json()] == [policy.decide(o, as_of=AS_OF).action for o in (plain, TYPO_ORDER)]
    strict = client.post("/v1/decisions/batch", params={"as_of": AS_OF, "strict": "true"},
                         json=[{"order_id": "P2", "status": "Sent"}, TYPO_ORDER])
    rows = strict.json()
    assert strict.status_code == 200 and rows[0]["action"] == "contact_seller"
    assert (rows[1]["action"], rows[1]["error"]) == (
        None, "hours_since_contakt: unknown field (did you mean 'hours_since_contact'?)")
    clean = client.post("/v1/decisions/batch", params={"as_of": AS_OF}, json=[{"order_id": "P3", "status": "Sent"}])
    assert "cancel-rules-warnings" not in clean.headers

    csv_body = "order_id,status,seller_reply,hours_since_contakt,note\nU1,Sent,no_reply,50,x\n"
    headers = {"Content-Type": "text/csv", "Accept": "text/csv"}
    response = client.post("/v1/decisions/batch", params={"as_of": AS_OF}, content=csv_body, headers=headers)
    assert response.status_code == 200
    assert json.loads(response.headers["cancel-rules-warnings"]) == [
        "column 'hours_since_contakt' is not read by the policy (did you mean 'hours_since_contact'?)"]
    assert pd.read_csv(io.StringIO(response.text), dtype=str)["note"][0] == "x"  # kept and echoed
    strict = client.post("/v1/decisions/batch", params={"as_of": AS_OF, "strict": "1"}, content=csv_body,
                         headers=headers)
    assert strict.status_code == 422
    assert strict.json()["problems"][0]["field"] == "hours_since_contakt"
    assert strict.json()["message"] == ("unknown column 'hours_since_contakt' (did you mean "
                                        "'hours_since_contact'?)")
