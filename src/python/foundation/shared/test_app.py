import gc
import sys

import httpx
from fastapi import APIRouter

from foundation.shared.app import GC_THRESHOLDS, SWITCH_INTERVAL, create_service_app
from foundation.shared.settings import ServiceSettings

router = APIRouter()


@router.get("/things")
async def things() -> dict[str, list[str]]:
    return {"items": []}


async def test_a_started_app_has_tuned_its_worker_and_still_serves() -> None:
    thresholds, interval = gc.get_threshold(), sys.getswitchinterval()
    gc.unfreeze()
    try:
        app = create_service_app(ServiceSettings(service_name="heap-test"), title="t", routers=[router])
        async with app.router.lifespan_context(app):
            assert gc.get_freeze_count() > 1000  # modules, the app, its routes
            assert gc.get_threshold() == GC_THRESHOLDS
            assert sys.getswitchinterval() == SWITCH_INTERVAL
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                response = await client.get("/things")
        assert response.status_code == 200
        assert response.json() == {"items": []}
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
        sys.setswitchinterval(interval)
