"""The CLI's pure parts against a fake HTTP transport: arguments, tables, errors, exit codes."""

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from services.coupons.cli import api, app

CAMPAIGN: dict[str, Any] = {
    "id": "cmp_1",
    "name": "Spring rescue",
    "discount": {"kind": "percent", "percent_off": "20"},
    "code": "RESCUE20",
    "status": "active",
    "duration": {"kind": "once"},
    "validity": {"starts_at": None, "expires_at": "2027-01-01T00:00:00Z"},
    "limits": {"max_redemptions": 100},
    "eligibility": {},
    "usage": {"distributed": 3, "redemptions": 2, "budget_spent": 400},
    "defined_at": "2026-12-01T00:00:00Z",
    "defined_by": "key_1",
}
Handler = Callable[[httpx.Request], httpx.Response]
runner = CliRunner()


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[httpx.Request]]:
    """Answers with `answers[(method, path)]`; records every request."""
    seen: list[httpx.Request] = []
    monkeypatch.setenv("COUPONS_URL", "http://coupons.test")
    monkeypatch.setenv("COUPONS_API_KEY", "secret")
    monkeypatch.setenv("COLUMNS", "200")  # Rich wraps tables to the terminal width
    yield seen


def use(
    monkeypatch: pytest.MonkeyPatch, seen: list[httpx.Request], answers: dict[Any, Any]
) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        status, body = answers[(request.method, request.url.path)]
        if isinstance(body, list):  # successive answers
            body = body.pop(0) if len(body) > 1 else body[0]
        if isinstance(body, bytes):
            return httpx.Response(status, content=body)
        return httpx.Response(status, json=body)

    monkeypatch.setattr(api, "transport", httpx.MockTransport(handle))


def test_list_prints_a_table_and_sends_the_key(monkeypatch, serve) -> None:
    use(
        monkeypatch,
        serve,
        {("GET", "/v1/campaigns"): (200, {"data": [CAMPAIGN], "next_cursor": None})},
    )
    result = runner.invoke(app, ["campaigns", "list"])
    assert result.exit_code == 0, result.output
    assert "Spring rescue" in result.stdout and "20%" in result.stdout
    assert serve[0].headers["Authorization"] == "Bearer secret"
    assert "service: http://coupons.test" in result.stderr


def test_list_json(monkeypatch, serve) -> None:
    use(
        monkeypatch,
        serve,
        {("GET", "/v1/campaigns"): (200, {"data": [CAMPAIGN], "next_cursor": None})},
    )
    result = runner.invoke(app, ["campaigns", "list", "--json"])
    assert json.loads(result.stdout)[0]["id"] == "cmp_1"


def test_an_api_error_is_one_line_with_its_code_and_exit_1(monkeypatch, serve) -> None:
    error = {"error": {"code": "campaign_not_found", "message": "no campaign nope", "field": None}}
    use(monkeypatch, serve, {("GET", "/v1/campaigns/nope"): (404, error)})
    result = runner.invoke(app, ["campaigns", "show", "nope"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == "error: campaign_not_found: no campaign nope"
    assert result.stdout == ""


def test_a_field_error_names_the_field(monkeypatch, serve) -> None:
    error = {"error": {"code": "invalid", "message": "too long", "field": "name"}}
    use(monkeypatch, serve, {("POST", "/v1/campaigns"): (422, error)})
    result = runner.invoke(app, ["campaigns", "create", "--name", "x", "--percent-off", "10"])
    assert result.exit_code == 1
    assert "error: invalid: too long (field name)" in result.stderr


def test_no_key_is_refused_before_any_request(monkeypatch, serve) -> None:
    monkeypatch.delenv("COUPONS_API_KEY")
    use(monkeypatch, serve, {})
    result = runner.invoke(app, ["campaigns", "list"])
    assert result.exit_code == 1 and result.stderr.startswith("error: no_api_key:")
    assert serve == []


def test_create_needs_exactly_one_discount(monkeypatch, serve) -> None:
    use(monkeypatch, serve, {})
    result = runner.invoke(app, ["campaigns", "create", "--name", "x"])
    assert result.exit_code == 1 and "error: bad_arguments:" in result.stderr
    assert serve == []


def test_create_sends_the_rules_and_prints_the_id_last(monkeypatch, serve) -> None:
    use(monkeypatch, serve, {("POST", "/v1/campaigns"): (201, CAMPAIGN)})
    limits = '{"limits": {"max_redemptions": 100}}'
    result = runner.invoke(
        app,
        [
            *("campaigns", "create", "--name", "Spring rescue", "--amount-off", "500"),
            *("--currency", "EUR", "--code", "RESCUE20", "--body", limits),
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == "cmp_1"
    sent = json.loads(serve[0].content)
    assert sent["discount"] == {"kind": "amount", "amount_off": 500, "currency": "EUR"}
    assert sent["limits"] == {"max_redemptions": 100} and sent["code"] == "RESCUE20"


@pytest.mark.parametrize(
    ("command", "status"), [("pause", "paused"), ("resume", "active"), ("end", "ended")]
)
def test_status_commands(monkeypatch, serve, command: str, status: str) -> None:
    use(
        monkeypatch,
        serve,
        {("POST", "/v1/campaigns/cmp_1/status"): (200, {**CAMPAIGN, "status": status})},
    )
    result = runner.invoke(app, ["campaigns", command, "cmp_1", "--reason", "why"])
    assert result.exit_code == 0, result.output
    assert json.loads(serve[0].content) == {"status": status, "reason": "why"}
    assert result.stdout.strip() == f"cmp_1: {status}"


def test_generate_follows_the_job_until_done(monkeypatch, serve) -> None:
    job = {"id": "batch_1", "requested": 10, "generated": 0, "status": "running", "error": None}
    use(
        monkeypatch,
        serve,
        {
            ("POST", "/v1/campaigns/cmp_1/code-batches"): (202, job),
            ("GET", "/v1/code-batches/batch_1"): (
                200,
                [{**job, "generated": 5}, {**job, "generated": 10, "status": "done"}],
            ),
        },
    )
    result = runner.invoke(app, ["codes", "generate", "cmp_1", "--count", "10", "--poll", "0"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == "batch_1"
    assert [r.method for r in serve] == ["POST", "GET", "GET"]
    assert "10 codes generated" in result.stderr


def test_a_failed_job_exits_1(monkeypatch, serve) -> None:
    job = {"id": "batch_1", "requested": 10, "generated": 0, "status": "failed", "error": "boom"}
    use(monkeypatch, serve, {("POST", "/v1/campaigns/cmp_1/code-batches"): (202, job)})
    result = runner.invoke(app, ["codes", "generate", "cmp_1", "--count", "10"])
    assert result.exit_code == 1 and "error: job_failed: batch batch_1: boom" in result.stderr


def test_export_writes_the_file(monkeypatch, serve, tmp_path) -> None:
    csv = b"code,contact_id\nAAA,\nBBB,c1\n"
    use(monkeypatch, serve, {("GET", "/v1/campaigns/cmp_1/codes.csv"): (200, csv)})
    out = tmp_path / "codes.csv"
    result = runner.invoke(app, ["codes", "export", "cmp_1", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == csv


def test_export_error_is_one_line(monkeypatch, serve, tmp_path) -> None:
    error = {"error": {"code": "campaign_not_found", "message": "no campaign x", "field": None}}
    use(monkeypatch, serve, {("GET", "/v1/campaigns/x/codes.csv"): (404, error)})
    result = runner.invoke(app, ["codes", "export", "x", "-o", str(tmp_path / "x.csv")])
    assert result.exit_code == 1 and "error: campaign_not_found: no campaign x" in result.stderr


def test_an_unreachable_service_is_one_line(monkeypatch, serve) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    monkeypatch.setattr(api, "transport", httpx.MockTransport(refuse))
    result = runner.invoke(app, ["redemptions", "show", "red_1"])
    assert result.exit_code == 1 and result.stderr.strip().splitlines()[-1].startswith(
        "error: unreachable:"
    )


def test_a_non_json_error_keeps_the_status(monkeypatch, serve) -> None:
    use(monkeypatch, serve, {("GET", "/v1/redemptions/red_1"): (502, b"bad gateway")})
    result = runner.invoke(app, ["redemptions", "show", "red_1"])
    assert result.exit_code == 1 and "error: http_502: bad gateway" in result.stderr


def test_every_command_has_help() -> None:
    for group in ("campaigns", "codes", "redemptions", "keys", "projections", "stripe"):
        result = runner.invoke(app, [group, "--help"])
        assert result.exit_code == 0 and "Commands" in result.stdout


def test_an_unknown_projection_is_refused_before_connecting(monkeypatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://nowhere.invalid/none")
    result = runner.invoke(app, ["projections", "rebuild", "nope"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: unknown_projection: ")


def test_export_to_an_unreachable_service_is_one_line(monkeypatch, serve, tmp_path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    monkeypatch.setattr(api, "transport", httpx.MockTransport(refuse))
    result = runner.invoke(app, ["codes", "export", "x", "-o", str(tmp_path / "x.csv")])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: unreachable: ")


def test_an_unreachable_database_is_one_line(monkeypatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/none")
    result = runner.invoke(app, ["keys", "list"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: database_unreachable: ")
