"""Keeping tenants' webhook URLs off internal hosts (SSRF): the addresses a host resolves to.

Checked when an endpoint is registered (an address written into the URL) and before every
POST (what its name resolves to now). httpx resolves the name again to connect, so a name
whose DNS answer changes between the two (rebinding) is not caught here; a deployment that
must rule that out routes webhooks through an egress proxy.
"""

from __future__ import annotations

import ipaddress
import socket

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _is_public(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is loopback
    return address.is_global and not address.is_multicast


def literal_address(host: str) -> Address | None:
    """The address when `host` is an IP literal, else None."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def non_public_literal(host: str) -> bool:
    address = literal_address(host)
    return address is not None and not _is_public(address)


def first_non_public_address(host: str, port: int) -> str | None:
    """An address `host` resolves to that is loopback, private, link-local or otherwise not
    public; None when all are public or the name does not resolve (the POST reports that)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not _is_public(address):
            return str(address)
    return None
