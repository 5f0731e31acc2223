"""The incidents API: the flow over HTTP, problems for bad input (4xx, never 500)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from payguard.settings import Settings
from tests.factories import staff_auth


def _open(client: TestClient, auth: dict[str, str], **body: object) -> dict[str, object]:
    payload: dict[str, object] = {
        "title": "Abnormal payouts on the merchant platform",
        "category": "02",
        "impact": {"people_affected": 2, "money_at_risk": 120_000, "currency": "CNY"},
        "links": [{"kind": "merchant", "ref": "mer_1"}],
    }
    payload.update(body)
    reply = client.post("/v1/incidents", headers=auth, json=payload)
    assert reply.status_code == 201, reply.text
    result: dict[str, object] = reply.json()
    return result


def test_incident_flow_over_http(client: TestClient, settings: Settings) -> None:
    auth = staff_auth(settings, "incident_commander")
    incident = _open(client, auth)
    incident_id = incident["id"]
    assert incident["grade"] == "IV" and incident["status"] == "reported"
    me = client.get("/v1/incidents", headers=auth).json()["items"]
    assert [item["id"] for item in me] == [incident_id]

    staff_id = client.get("/v1/me", headers=auth).json()["id"]

    reply = client.post(
        f"/v1/incidents/{incident_id}/roles",
        headers=auth,
        json={"role": "commander", "staff": staff_id},
    )
    assert reply.status_code == 201, reply.text
    reply = client.post(
        f"/v1/incidents/{incident_id}/tasks",
        headers=auth,
        json={"title": "rotate server passwords", "kind": "improvement", "owner": staff_id},
    )
    assert reply.status_code == 201, reply.text
    task_id = reply.json()["id"]
    reply = client.post(
        f"/v1/incidents/{incident_id}/tasks/{task_id}/status", headers=auth, json={"status": "done"}
    )
    assert reply.status_code == 200 and reply.json()["status"] == "done"
    reply = client.post(
        f"/v1/incidents/{incident_id}/notes", headers=auth, json={"text": "GM informed"}
    )
    assert reply.status_code == 201
    reply = client.post(
        f"/v1/incidents/{incident_id}/grade",
        headers=auth,
        json={"grade": "III", "reason": "regulated merchant payouts"},
    )
    assert reply.status_code == 200 and reply.json()["grade"] == "III"
    for status in ("confirmed", "contained", "recovered"):
        reply = client.post(
            f"/v1/incidents/{incident_id}/status", headers=auth, json={"status": status}
        )
        assert reply.status_code == 200, reply.text
    reply = client.post(
        f"/v1/incidents/{incident_id}/status",
        headers=auth,
        json={"status": "closed", "summary": "funds secured, payouts resumed"},
    )
    assert reply.status_code == 200 and reply.json()["closed_at"]
    timeline = client.get(f"/v1/incidents/{incident_id}/timeline", headers=auth).json()
    kinds = {entry["kind"] for entry in timeline["entries"]}
    assert {"status", "grade", "role", "task", "note", "link"} <= kinds
    metrics = client.get("/v1/incidents/metrics", headers=auth)
    assert metrics.status_code == 200, metrics.text
    assert metrics.json()["count"] == 1 and metrics.json()["by_grade"] == {"III": 1}
    pdf = client.get(f"/v1/incidents/{incident_id}/report?language=zh-CN", headers=auth)
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    md = client.get(f"/v1/incidents/{incident_id}/report?language=en&format=md", headers=auth)
    assert md.status_code == 200 and "Post-incident report" in md.text


def test_problems_for_bad_input(client: TestClient, settings: Settings) -> None:
    auth = staff_auth(settings, "incident_commander")
    incident_id = _open(client, auth)["id"]
    cases = [
        ("post", "/v1/incidents", {"title": "x", "category": "99"}, 422),
        ("post", "/v1/incidents", {"title": "x", "category": "02", "impact": {"people": 1}}, 422),
        ("post", "/v1/incidents", {"title": "", "category": "02"}, 422),
        ("post", f"/v1/incidents/{incident_id}/status", {"status": "closed"}, 422),
        ("post", f"/v1/incidents/{incident_id}/status", {"status": "recovered"}, 409),
        ("post", f"/v1/incidents/{incident_id}/status", {"status": "gone"}, 422),
        ("post", f"/v1/incidents/{incident_id}/grade", {"grade": "II"}, 422),
        ("post", f"/v1/incidents/{incident_id}/grade", {}, 422),
        (
            "post",
            f"/v1/incidents/{incident_id}/roles",
            {"role": "commander", "staff": "nobody"},
            422,
        ),
        ("post", f"/v1/incidents/{incident_id}/roles", {"role": "king", "staff": "x"}, 422),
        ("post", f"/v1/incidents/{incident_id}/links", {"kind": "planet", "ref": "x"}, 422),
        ("post", "/v1/incidents/inc_missing/notes", {"text": "x"}, 404),
        ("get", "/v1/incidents/inc_missing", None, 404),
        (
            "get",
            "/v1/incidents/metrics?since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z",
            None,
            422,
        ),
        ("get", "/v1/incidents?status=sleeping", None, 422),
    ]
    for method, url, body, status in cases:
        reply = client.request(method, url, headers=auth, json=body)
        assert reply.status_code == status, (url, body, reply.text)
        assert reply.headers["content-type"].startswith("application/problem+json"), url
    refused = client.post(
        f"/v1/incidents/{incident_id}/status", headers=auth, json={"status": "recovered"}
    ).json()
    assert refused["code"] == "conflict" and refused["allowed"] == ["confirmed", "closed"]


def test_permissions(client: TestClient, settings: Settings) -> None:
    reader = staff_auth(settings, "auditor")
    assert client.get("/v1/incidents", headers=reader).status_code == 200
    reply = client.post("/v1/incidents", headers=reader, json={"title": "x", "category": "02"})
    assert reply.status_code == 403
    assert client.get("/v1/incidents").status_code == 401
