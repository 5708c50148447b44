"""WebSocket frames as raw bytes (RFC 6455 §5.2), for servers that write what a test wants, and
the handshake answer those servers give."""

from __future__ import annotations

import base64
import hashlib
import struct

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, BINARY, CONT, CLOSE, PING, PONG = 1, 2, 0, 8, 9, 10


def frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bytes | None = None) -> bytes:
    size = len(payload)
    bit = 0x80 if mask else 0
    head = bytes(((0x80 if fin else 0) | opcode,))
    if size < 126:
        head += bytes((bit | size,))
    elif size < 65536:
        head += bytes((bit | 126,)) + struct.pack("!H", size)
    else:
        head += bytes((bit | 127,)) + struct.pack("!Q", size)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        head += mask
    return head + payload


def text(payload: bytes | str) -> bytes:
    return frame(TEXT, payload.encode() if isinstance(payload, str) else payload)


def accept_key(key: bytes) -> bytes:
    """The ``Sec-WebSocket-Accept`` answer to a client's ``Sec-WebSocket-Key``."""
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def handshake_response(request: bytes) -> bytes:
    """The ``101 Switching Protocols`` answer to a client's upgrade request."""
    key = next(
        line.split(b":", 1)[1].strip()
        for line in request.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key:")
    )
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept_key(key) + b"\r\n\r\n"
    )
