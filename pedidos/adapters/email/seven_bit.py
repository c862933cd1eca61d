"""An e-mail with 8bit parts made fit for a server without 8BITMIME (RFC 6152): each such part
base64-encoded, every other byte as it was parsed."""

from __future__ import annotations

from email import message_from_bytes
from email.encoders import encode_base64
from email.policy import compat32

_WIRE = compat32.clone(linesep="\r\n")


def seven_bit(data: bytes) -> bytes:
    message = message_from_bytes(data, policy=compat32)
    for part in message.walk():
        if part.is_multipart() or part.get("Content-Transfer-Encoding", "").lower() != "8bit":
            continue
        body = part.get_payload(decode=True)
        assert isinstance(body, bytes)
        del part["Content-Transfer-Encoding"]
        part.set_payload(body)
        encode_base64(part)
    return message.as_bytes(policy=_WIRE)
