"""`/docs` and `/redoc` load only assets the service itself serves (they worked only online
before: FastAPI's defaults load Swagger UI and ReDoc from a CDN)."""

import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.coupons.api import api_docs


@pytest.fixture
def client() -> TestClient:
    app = FastAPI(docs_url=None, redoc_url=None)
    api_docs.install(app)
    return TestClient(app)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_page_loads_only_local_assets_that_exist(client: TestClient, page: str) -> None:
    html = client.get(page).text
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']|url: ?['"]([^'"]+)['"]""", html)
    assets = [u for pair in urls for u in pair if u and not u.startswith("data:")]
    assert assets, html
    for url in assets:
        assert url.startswith("/"), f"{page} loads {url} from elsewhere"
        assert client.get(url).status_code == 200, url
    assert "cdn" not in html.lower() and "googleapis" not in html
