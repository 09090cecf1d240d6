"""Schemathesis over the service's own OpenAPI document: every operation, with valid and
invalid data it derives from the schema (boundary values, NUL bytes, wrong types), answers
without a server error. Before the bounds of issue 22 it found 5xx on seven operations.
Operations under an existing campaign are driven with real ids by `test_bounds.py`."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import RELAXED, ServiceFactory

pytestmark = pytest.mark.integration


def test_no_operation_answers_a_server_error(start_service: ServiceFactory, tmp_path: Path) -> None:
    client, log_path = start_service(
        **RELAXED,
        # code batches and Stripe mirrors are accepted as jobs but not run: the fuzzer asks
        # for up to a million codes, which would only load the machine
        COUPONS_COMPONENTS="decider,projector",
        STRIPE_WEBHOOK_SECRET="whsec_schemathesis",
        STRIPE_API_KEY="sk_test_schemathesis",
    )
    st = Path(sys.executable).with_name("st")
    done = subprocess.run(
        [
            str(st),
            "run",
            f"{client.base_url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            os.environ.get("COUPONS_SCHEMATHESIS_EXAMPLES", "50"),
            "--phases",
            "examples,coverage,fuzzing",
            "--workers",
            "1",  # hypothesis describes strategies with ast.parse, not thread-safe in 3.11
            "--exclude-path",
            "/readyz",  # 503 while a projection catches up is its documented answer
            "--header",
            f"Authorization: {client.headers['Authorization']}",
            "--request-timeout",
            "30",
            "--generation-database",
            "none",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=tmp_path,
    )
    report = done.stdout[-6000:] + done.stderr[-2000:]
    assert done.returncode == 0, report + "\n--- service log ---\n" + log_path.read_text()[-3000:]
    assert re.search(r"\d+ generated, \d+ passed", done.stdout), report
