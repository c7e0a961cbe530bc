"""WebSockets the gateway hosts itself."""

from __future__ import annotations

from litestar import WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect

from services.common.security import Principal


@websocket("/api/ws/echo")
async def echo(socket: WebSocket, principal: Principal) -> None:
    """Echo every text frame back, tagged with the caller: proves WebSocket auth end to end."""
    await socket.accept()
    try:
        while True:
            text = await socket.receive_text()
            await socket.send_json({"echo": text, "user": principal.username})
    except WebSocketDisconnect:
        return
