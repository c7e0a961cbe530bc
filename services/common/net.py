"""Small network helpers: free ports for agents and the launcher, and who a proxied caller is."""

from __future__ import annotations

import ipaddress
import socket


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> tuple[Network, ...]:
    """A comma-separated list of CIDRs (or bare addresses) as networks; ValueError names a bad entry."""
    networks = []
    for entry in text.split(","):
        if entry.strip():
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError as exc:
                raise ValueError(f"{entry.strip()!r} is not an address or CIDR") from exc
    return tuple(networks)


def _is_trusted(address: str, trusted: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False  # not an address (a test client's name, garbage): never a proxy we trust
    return any(ip in network for network in trusted)


def client_address(peer: str, forwarded: str | None, trusted: tuple[Network, ...]) -> str:
    """The caller's address: X-Forwarded-For is read from the right only through trusted proxies.

    Each proxy appends the address it was called from, so the rightmost entry a trusted proxy wrote is the
    first one nobody but that proxy could have chosen; entries further left are whatever the client sent.
    """
    if not _is_trusted(peer, trusted):
        return peer
    hops = [hop.strip() for hop in (forwarded or "").split(",") if hop.strip()]
    address = peer
    while hops:
        address = hops.pop()
        if not _is_trusted(address, trusted):
            return address
    return address


def client_bucket(address: str) -> str:
    """What counts as one client for rate limits: an IPv4 address, or an IPv6 address's /64.

    One IPv6 host is usually given a whole /64, so counting single addresses would let it pick a fresh one per
    guess.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)
