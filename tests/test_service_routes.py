"""Each route of the service alone: a bare app with one router and only the state that route reads."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute

import engine
from engine.service import create_app
from engine.service.app import ServiceApp
from engine.service.batch import BatchQuery, answer_json
from engine.service.errors import install_error_handlers
from engine.service.orders import OrderShape
from engine.service.routes import decision_routes, health_routes, policy_routes
from engine.service.settings import Settings

AS_OF = "2026-03-01T12:00:00+00:00"  # as in test_service.py
LEGACY = Path(__file__).parent.parent / "rules" / "variants" / "legacy-72h.yaml"
ORDERS = [{"order_id": "A1", "status": "Payment being verified", "hours_since_payment": 30},
          {"order_id": "A2", "status": "teleported"},
          {"order_id": "A3", "status": "Placed"}]


@pytest.fixture(scope="module")
def legacy() -> engine.Policy:
    """Not the bundled policy: what a route answers comes from its app's state, not from a default."""
    return engine.load(LEGACY)


class Client:
    """Calls into an app in this process; an exception the app raises is raised into the test."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=True)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                return await client.request(method, path, **kwargs)

        return asyncio.run(call())

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)


def mounted(router: APIRouter, **state: Any) -> Client:
    """A bare app with one router, the JSON error handlers, and nothing on app.state but `state`: a route that
    reads anything else fails with AttributeError."""
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router)
    for name, value in state.items():
        setattr(app.state, name, value)
    return Client(app)


class CountingSemaphore(asyncio.Semaphore):
    """asyncio's semaphore, counting how often it was taken."""

    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.taken = 0

    async def acquire(self) -> bool:
        self.taken += 1
        return await super().acquire()


def decision_state(policy: engine.Policy, **settings: Any) -> dict[str, Any]:
    return {"policy": policy, "shape": OrderShape(policy), "settings": Settings(**settings),
            "batch_slots": CountingSemaphore(1)}


def test_healthz_needs_only_the_policy(legacy: engine.Policy) -> None:
    response = mounted(health_routes, policy=legacy).get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "policy": legacy.name, "version": legacy.version}


def test_decide_answers_by_the_policy_on_state(legacy: engine.Policy) -> None:
    client = mounted(decision_routes, **decision_state(legacy))
    response = client.post("/v1/decisions", params={"as_of": AS_OF}, json=ORDERS[0])
    assert response.status_code == 200
    assert response.json() == json.loads(legacy.decide(ORDERS[0], as_of=AS_OF).to_json())
    bad = client.post("/v1/decisions", params={"as_of": AS_OF}, json=ORDERS[1])
    assert bad.status_code == 422 and [p["field"] for p in bad.json()["problems"]] == ["status"]


def test_decide_takes_its_body_limit_from_the_settings_on_state(legacy: engine.Policy) -> None:
    client = mounted(decision_routes, **decision_state(legacy, max_body_bytes=40))
    body = json.dumps(ORDERS[0]).encode()
    assert len(body) > 40
    response = client.post("/v1/decisions", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["message"] == "the body exceeds the limit of 40 bytes"


def test_batch_runs_in_a_slot_of_the_semaphore_on_state(legacy: engine.Policy) -> None:
    state = decision_state(legacy)
    client = mounted(decision_routes, **state)
    response = client.post("/v1/decisions/batch", params={"as_of": AS_OF}, json=ORDERS)
    assert response.status_code == 200
    rows = response.json()
    assert [r["order_id"] for r in rows] == ["A1", "A2", "A3"]
    assert rows[0]["action"] == legacy.decide(ORDERS[0], as_of=AS_OF).action and rows[1]["action"] is None
    assert rows[2]["rule_id"] == legacy.decide(ORDERS[2], as_of=AS_OF).rule_id
    assert state["batch_slots"].taken == 1 and not state["batch_slots"].locked()  # taken once, given back


def test_batch_takes_its_row_limit_from_the_settings_on_state(legacy: engine.Policy) -> None:
    client = mounted(decision_routes, **decision_state(legacy, max_batch_rows=2))
    as_json = client.post("/v1/decisions/batch", params={"as_of": AS_OF}, json=ORDERS)
    csv_body = pd.DataFrame(ORDERS).to_csv(index=False)
    as_csv = client.post("/v1/decisions/batch", params={"as_of": AS_OF}, content=csv_body,
                         headers={"content-type": "text/csv"})
    for response in (as_json, as_csv):
        assert response.status_code == 413
        assert response.json()["message"] == "the batch has 3 rows; the limit is 2"


def test_batch_csv_answer_by_accept(legacy: engine.Policy) -> None:
    client = mounted(decision_routes, **decision_state(legacy))
    response = client.post("/v1/decisions/batch", params={"as_of": AS_OF}, json=ORDERS,
                           headers={"accept": "text/csv"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    frame = pd.read_csv(io.StringIO(response.text), dtype=str, keep_default_na=False)
    assert list(frame["order_id"]) == ["A1", "A2", "A3"]
    assert list(frame["policy_version"]) == [legacy.version] * 3


def test_policy_route_serves_the_body_on_state() -> None:
    response = mounted(policy_routes, policy_body=b'{"policy":"from state"}').get("/v1/policy")
    assert response.status_code == 200 and response.content == b'{"policy":"from state"}'


def test_verify_computes_once_and_keeps_the_answer_on_state(legacy: engine.Policy) -> None:
    client = mounted(policy_routes, policy=legacy, verify_lock=asyncio.Lock(), verify_body=None)
    first = client.get("/v1/policy/verify")
    run_dependent = {"seconds", "engine_calls"}
    want = json.loads(json.dumps(legacy.verify().to_dict(), default=str))
    assert {k: v for k, v in first.json().items() if k not in run_dependent} == \
        {k: v for k, v in want.items() if k not in run_dependent}
    assert client.app.state.verify_body == first.content
    client.app.state.verify_body = b'{"kept":true}'  # a later request answers what is kept, without verifying again
    assert client.get("/v1/policy/verify").content == b'{"kept":true}'


def test_openapi_documents_the_routes_mounted_and_the_token(legacy: engine.Policy) -> None:
    app = ServiceApp(title="t", version="v")
    app.include_router(policy_routes)
    app.state.policy, app.state.settings = legacy, Settings(token="x")
    doc = app.openapi()
    assert set(doc["paths"]) == {"/v1/policy", "/v1/policy/verify"}
    operation = doc["paths"]["/v1/policy"]["get"]
    assert list(operation["responses"]) == ["200", "401", "500"] and operation["security"] == [{"bearer": []}]
    assert set(doc["components"]["schemas"]["Order"]["properties"]) >= set(legacy.spec.facts)


def test_json_batch_answer_without_http(legacy: engine.Policy) -> None:
    orders = [{**ORDERS[0], "colour": "red"}, ORDERS[2]]
    body = json.dumps(orders).encode()
    query = BatchQuery(pd.Timestamp(AS_OF).to_pydatetime())
    answer, warnings = answer_json(legacy, OrderShape(legacy), body, query, Settings())
    assert warnings == ["unknown field 'colour' ignored"]
    assert [row["action"] for row in json.loads(answer)] == [legacy.decide(o, as_of=AS_OF).action for o in orders]
    strict, _ = answer_json(legacy, OrderShape(legacy), body, BatchQuery(query.as_of, strict=True), Settings())
    first = json.loads(strict)[0]
    assert first["action"] is None and "colour" in first["error"]


def test_the_app_holds_the_routes_themselves(legacy: engine.Policy) -> None:
    # Not the routers: FastAPI 0.165 matches a request through each included router (7% more CPU per decision).
    paths = [route.path for route in create_app(legacy).routes if isinstance(route, APIRoute)]
    assert paths == ["/healthz", "/v1/decisions", "/v1/decisions/batch", "/v1/policy", "/v1/policy/verify"]
