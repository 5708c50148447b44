"""Shared helpers for SIP and WebRTC (sideband) call tests."""

from __future__ import annotations

import asyncio

from callrecord.history import HistoryItem
from tests.support.service import RunningService


async def wait_for_status(
    svc: RunningService, call_id: str, statuses: set[str], timeout_s: float = 30.0
) -> dict[str, str]:
    """Poll the call's meta in Redis until its status is one of ``statuses``."""
    meta: dict[str, str] = {}
    async with asyncio.timeout(timeout_s):
        while True:
            meta = await svc.services.history.get_meta(call_id)
            if meta.get("status") in statuses:
                return meta
            await asyncio.sleep(0.05)


async def ended_call_items(svc: RunningService, call_id: str, timeout_s: float = 30.0) -> list[HistoryItem]:
    await wait_for_status(svc, call_id, {"ended", "failed"}, timeout_s)
    return await svc.services.history.get_items(call_id)


def spoken(items: list[HistoryItem]) -> list[tuple[str, str]]:
    return [(i.role or "", i.text or "") for i in items if i.kind == "message"]
