"""The thin HTTP client the CLI's service commands use, and the one-line failure."""

import logging
import os
from typing import Any, NoReturn

import httpx
import typer

DEFAULT_URL = "http://127.0.0.1:8000"


def fail(code: str, message: str) -> NoReturn:
    """One line on stderr, `error: <code>: <message>`, and exit status 1."""
    typer.echo(f"error: {code}: {message}", err=True)
    raise typer.Exit(1)


class Api:
    """The service's REST API with a key; every non-2xx answer becomes `fail` with its code."""

    def __init__(self, url: str, key: str, transport: httpx.BaseTransport | None = None):
        self.url = url
        self.http = httpx.Client(
            base_url=url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
            transport=transport,
        )

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            fail("unreachable", f"{self.url}: {error}")
        return self.check(response)

    def check(self, response: httpx.Response) -> httpx.Response:
        if response.is_success:
            return response
        try:
            body = response.json()["error"]
            code, message = body["code"], body["message"]
            if body.get("field"):
                message = f"{message} (field {body['field']})"
        except (ValueError, KeyError, TypeError):
            code, message = f"http_{response.status_code}", response.text[:200] or "no body"
        fail(code, message)

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params).json()

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self.request("POST", path, json=body).json()


# Tests set this to an httpx.MockTransport; None means the network.
transport: httpx.BaseTransport | None = None


def from_environment() -> Api:
    """COUPONS_URL (default the local service) and COUPONS_API_KEY; says which on stderr."""
    url = os.environ.get("COUPONS_URL", DEFAULT_URL).rstrip("/")
    key = os.environ.get("COUPONS_API_KEY")
    if not key:
        fail("no_api_key", "set COUPONS_API_KEY (make key SCOPE=admin NAME=me prints one)")
    typer.echo(f"service: {url}", err=True)
    # httpx logs every request at INFO, which would mix log lines into the command's output.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return Api(url, key, transport)


def get_all(api: Api, path: str, limit: int = 100) -> list[dict[str, Any]]:
    """Every item of a cursor-paged listing."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        page = api.get(path, **params)
        items.extend(page["data"])
        cursor = page.get("next_cursor")
        if not cursor:
            return items
