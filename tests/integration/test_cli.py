"""`coupons` as an operator runs it: a real process against a real service (Kafka, PostgreSQL)."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.coupons.settings import Settings
from tests.integration.conftest import ServiceFactory

pytestmark = pytest.mark.integration


def coupons(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.coupons.cli", *args],
        env={**os.environ, "COLUMNS": "200", **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def test_an_operator_session(
    start_service: ServiceFactory, settings: Settings, tmp_path: Path
) -> None:
    admin, _ = start_service()
    env = {
        "COUPONS_URL": str(admin.base_url),
        "COUPONS_API_KEY": admin.headers["Authorization"].removeprefix("Bearer "),
    }

    created = coupons(
        env, "campaigns", "create", "--name", "CLI shared", "--percent-off", "20", "--code", "CLI20"
    )
    assert created.returncode == 0, created.stderr
    shared = created.stdout.strip().splitlines()[-1]
    assert f"service: {admin.base_url}" in created.stderr
    unique = coupons(env, "campaigns", "create", "--name", "CLI unique", "--amount-off", "500")
    assert unique.returncode == 1 and "error: " in unique.stderr  # an amount needs a currency
    assert len(unique.stderr.strip().splitlines()) == 2  # "service: …" then the one error line
    unique = coupons(
        env, "campaigns", "create", "--name", "CLI unique", "--amount-off", "500",
        "--currency", "EUR",
    )  # fmt: skip
    assert unique.returncode == 0, unique.stderr
    unique_id = unique.stdout.strip().splitlines()[-1]

    listed = coupons(env, "campaigns", "list", "--json")
    assert {c["id"] for c in json.loads(listed.stdout)} >= {shared, unique_id}
    table = coupons(env, "campaigns", "list")
    assert "CLI shared" in table.stdout and "CLI unique" in table.stdout

    paused = coupons(env, "campaigns", "pause", shared, "--reason", "checking the CLI")
    assert paused.returncode == 0 and paused.stdout.strip() == f"{shared}: paused"
    shown = json.loads(coupons(env, "campaigns", "show", shared, "--json").stdout)
    assert shown["campaign"]["status"] == "paused"
    assert coupons(env, "campaigns", "resume", shared).returncode == 0
    assert "active" in coupons(env, "campaigns", "show", shared).stdout

    generated = coupons(env, "codes", "generate", unique_id, "--count", "2000", "--poll", "0.2")
    assert generated.returncode == 0, generated.stderr
    batch = admin.get(f"/v1/code-batches/{generated.stdout.strip().splitlines()[-1]}").json()
    assert batch["status"] == "done" and batch["generated"] == 2000
    assert "2000 codes generated" in generated.stderr

    exported = tmp_path / "codes.csv"
    done = coupons(env, "codes", "export", unique_id, "-o", str(exported))
    assert done.returncode == 0, done.stderr
    with exported.open() as file:
        assert len(list(csv.DictReader(file))) == 2000

    body = {
        "code": "CLI20",
        "customer": {"contact_id": "c1"},
        "cart": {"currency": "EUR", "amount": 1000},
        "order_ref": "o1",
    }
    redeemed = admin.post("/v1/redemptions", json=body, headers={"Idempotency-Key": "o1"})
    assert redeemed.status_code == 201, redeemed.text
    redemption_id = redeemed.json()["redemption_id"]
    read = json.loads(coupons(env, "redemptions", "show", redemption_id, "--json").stdout)
    assert read["redemption_id"] == redemption_id and read["discount"] == 200
    assert redemption_id in coupons(env, "redemptions", "show", redemption_id).stdout

    unknown = coupons(env, "campaigns", "show", "cmp_does_not_exist")
    assert unknown.returncode == 1 and unknown.stdout == ""
    last = unknown.stderr.strip().splitlines()[-1]
    assert last.startswith("error: campaign_not_found: "), unknown.stderr

    assert coupons(env, "campaigns", "end", shared).returncode == 0


def test_keys_create_list_revoke(settings: Settings) -> None:
    env = {"DATABASE_URL": settings.database_url}
    created = coupons(env, "keys", "create", "--scope", "analyst", "--name", "cli-test")
    assert created.returncode == 0, created.stderr
    comment, secret = created.stdout.strip().splitlines()[-2:]
    key_id = comment.split()[1]
    assert secret.startswith("cpn_") and "database: DATABASE_URL" in created.stderr

    listed = json.loads(coupons(env, "keys", "list", "--json").stdout)
    mine = next(k for k in listed if k["id"] == key_id)
    assert mine["scope"] == "analyst" and mine["revoked_at"] is None
    assert secret not in json.dumps(listed)
    assert "cli-test" in coupons(env, "keys", "list").stdout

    assert coupons(env, "keys", "revoke", key_id).returncode == 0
    listed = json.loads(coupons(env, "keys", "list", "--json").stdout)
    assert next(k for k in listed if k["id"] == key_id)["revoked_at"] is not None
    again = coupons(env, "keys", "revoke", key_id)
    assert again.returncode == 1
    assert again.stderr.strip().splitlines()[-1] == f"error: key_not_found: no active key {key_id}"
