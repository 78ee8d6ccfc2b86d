"""``bridge discover``: find Ultra Stream encoders on the LAN by their multicast datagram.

Best effort, after the manual's "Discovery" section (``../shared/research/seed-ultrastream.md``
§1.8): an encoder's datagram is JSON ``{"version", "flag": "ssip", "product": "Ultra Stream",
"boxname", "serialnumber", "wifiip", "ethip", "status"}`` on 239.255.255.250, UDP port 2538. The
manual does not say whether encoders send it on their own or only answer a probe, nor what a
probe looks like: the bridge joins the group, sends ``{"flag":"ssip"}`` once, and listens.
"""

from __future__ import annotations

import json
import re
import socket
import struct
from dataclasses import dataclass
from typing import Any

import anyio
import structlog
from anyio.abc import SocketAttribute

log = structlog.get_logger("bridge.discover")

GROUP = "239.255.255.250"
PORT = 2538
PROBE = b'{"flag":"ssip"}'
ANY = "0.0.0.0"  # noqa: S104 - a multicast listener binds the wildcard address


@dataclass(frozen=True, slots=True)
class Encoder:
    """One encoder's announcement: its serial number, name and addresses."""

    serial: str
    name: str
    address: str
    product: str

    @property
    def device_id(self) -> str:
        """A config ``id`` from the name (``[LH-SDI]-1.2.1`` -> ``lh-sdi-1-2-1``), or the serial."""
        slug = re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")
        if not slug or not slug[0].isalnum():
            slug = self.serial.lower()
        return slug[:64]


def parse_announcement(data: bytes) -> Encoder | None:
    """The encoder a datagram announces, or None for anything else (our own probe included)."""
    try:
        body: Any = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(body, dict) or body.get("flag") != "ssip":
        return None
    serial, address = body.get("serialnumber"), body.get("ethip") or body.get("wifiip")
    if not isinstance(serial, str) or not serial or not isinstance(address, str) or not address:
        return None
    name = body.get("boxname") if isinstance(body.get("boxname"), str) else serial
    product = body.get("product") if isinstance(body.get("product"), str) else "Ultra Stream"
    return Encoder(serial=serial, name=str(name), address=address, product=str(product))


def snippet(found: list[Encoder]) -> str:
    """The ``devices:`` entries to paste into a config, one per encoder."""
    lines = ["devices:"]
    for encoder in found:
        lines += [
            f"  - id: {encoder.device_id}                # {encoder.product} {encoder.serial}",
            f"    name: {json.dumps(encoder.name)}",
            "    driver: ultrastream",
            f"    url: http://{encoder.address}",
            "    username: Admin",
            "    password_file: /run/secrets/" + encoder.device_id,
        ]
    return "\n".join(lines) + "\n"


async def listen(seconds: float, *, port: int = PORT, group: str = GROUP) -> list[Encoder]:
    """Listen ``seconds`` for announcements; each encoder once, by serial number, in the order
    they answered. Joining the group or sending the probe may fail (no multicast route): the
    bridge then still hears datagrams sent to this host."""
    found: dict[str, Encoder] = {}
    async with await anyio.create_udp_socket(
        family=socket.AF_INET, local_host=ANY, local_port=port, reuse_port=True
    ) as udp:
        raw = udp.extra(SocketAttribute.raw_socket)
        try:
            membership = struct.pack("4s4s", socket.inet_aton(group), socket.inet_aton(ANY))
            raw.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
            await udp.sendto(PROBE, group, port)
        except OSError as exc:
            log.info("discover_multicast_unavailable", group=group, port=port, error=str(exc))
        with anyio.move_on_after(seconds):
            async for data, (sender, _) in udp:
                encoder = parse_announcement(data)
                if encoder is not None and encoder.serial not in found:
                    found[encoder.serial] = encoder
                    log.debug("discover_found", serial=encoder.serial, sender=sender)
    return list(found.values())
