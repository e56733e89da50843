"""Every service's /docs and /redoc on a closed network: each script, style sheet and icon the
pages load is served by the service itself, and nothing points at another host."""

from __future__ import annotations

import importlib
import re

import httpx
import pytest

from services.common.settings import SERVICE_PORTS, Settings

ASSET = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url:\s*["']([^"']+)["']""")
SIZES = {".js": 100_000, ".css": 10_000, ".png": 100}


@pytest.mark.parametrize("service", sorted(SERVICE_PORTS))
@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_the_api_docs_load_only_from_the_service_itself(service: str, page: str) -> None:
    build_app = importlib.import_module(f"services.{service}.app").build_app
    app = build_app(Settings())
    # No lifespan: the pages need neither Kafka nor MongoDB.
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://servis") as http:
        html = (await http.get(page)).text
        loaded = [a or b for a, b in ASSET.findall(html)]

        assert loaded, html
        assert not [url for url in loaded if "//" in url], "a page asks another host"
        assert '"validatorUrl": null' in html or page == "/redoc"
        assert "fonts.googleapis" not in html
        for url in loaded:
            response = await http.get(url)
            assert response.status_code == 200, url
            extension = url[url.rfind(".") :]
            assert len(response.content) >= SIZES.get(extension, 1), url
