"""Where webhooks may go: public addresses, and what an admin allows (LLMCT_WEBHOOK_ALLOW).

A URL's host is resolved when the endpoint is registered and again at each send; every address it resolves to is
checked, and the request connects to the address checked (the URL's host stays in `Host` and in TLS's SNI), so a
name that resolves differently between the check and the connect (DNS rebinding) reaches nothing refused.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from services.common.net import Network, parse_networks

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_URL = 2048
RESOLVE_S = 5.0  # a name server that does not answer refuses the URL, it does not hold a request or a slot


class Refused(Exception):
    """A URL webhooks may not be sent to; the message says why."""


@dataclass(frozen=True)
class Allowed:
    """The admin's allow list: networks and host names (lowercase)."""

    networks: tuple[Network, ...] = ()
    hosts: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, text: str) -> Allowed:
        """`10.0.0.0/8,hooks.internal,127.0.0.1`: entries that read as addresses or CIDRs are networks."""
        networks: list[Network] = []
        hosts: set[str] = set()
        for entry in (part.strip() for part in text.split(",")):
            if not entry:
                continue
            try:
                networks.extend(parse_networks(entry))
            except ValueError:
                hosts.add(entry.lower().rstrip("."))
        return cls(tuple(networks), frozenset(hosts))


def is_public(ip: Address) -> bool:
    """Reachable on the internet: not loopback, private, link-local (cloud metadata), multicast, unspecified,
    reserved, shared (100.64/10) or unique-local; an IPv4 address inside IPv6 is judged as itself."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (ip.is_multicast or ip.is_unspecified or ip.is_reserved or ip.is_link_local)


def permitted(ip: Address, host: str, allowed: Allowed) -> bool:
    """May a webhook for `host` connect to `ip`?"""
    if host.lower().rstrip(".") in allowed.hosts:
        return True
    return is_public(ip) or any(ip in network for network in allowed.networks)


def parse_url(url: str) -> SplitResult:
    """The URL's parts, or Refused: http(s) only, a host, no credentials, no fragment games."""
    if len(url) > MAX_URL:
        raise Refused(f"the URL is longer than {MAX_URL} characters")
    try:
        parts = urlsplit(url)
        _ = parts.port  # a port that is not a number raises here
    except ValueError as exc:
        raise Refused(f"not a URL: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise Refused("the URL must start with https:// or http://")
    if not parts.hostname:
        raise Refused("the URL names no host")
    if parts.username is not None or parts.password is not None:
        raise Refused("the URL must not hold credentials (user:password@): the signature says who sends")
    if any(ord(c) < 33 for c in url):
        raise Refused("the URL holds spaces or control characters")
    return parts


async def resolve(host: str, port: int) -> list[Address]:
    """Every address `host` resolves to (a literal address: itself)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        async with asyncio.timeout(RESOLVE_S):
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except TimeoutError as exc:
        raise Refused(f"the host {host!r} did not resolve within {RESOLVE_S:g} s") from exc
    except (OSError, UnicodeError) as exc:
        raise Refused(f"the host {host!r} does not resolve ({exc})") from exc
    return list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos))


def default_port(parts: SplitResult) -> int:
    return parts.port or (443 if parts.scheme == "https" else 80)


async def checked_address(url: str, allowed: Allowed) -> tuple[SplitResult, Address]:
    """The URL's parts and the address to connect to; Refused when any address its host resolves to is refused
    (a name that also resolves to a private address is refused whole: which one a client picks is not ours)."""
    parts = parse_url(url)
    host = parts.hostname or ""
    addresses = await resolve(host, default_port(parts))
    if not addresses:
        raise Refused(f"the host {host!r} has no address")
    for ip in addresses:
        if not permitted(ip, host, allowed):
            raise Refused(
                f"{host} resolves to {ip}, an address webhooks may not reach (private, loopback, link-local or "
                "similar): an admin may allow it in LLMCT_WEBHOOK_ALLOW"
            )
    return parts, addresses[0]


def pinned_url(parts: SplitResult, ip: Address) -> str:
    """The URL with its host replaced by the checked address (the request connects there and nowhere else)."""
    literal = f"[{ip}]" if isinstance(ip, ipaddress.IPv6Address) else str(ip)
    netloc = f"{literal}:{default_port(parts)}"
    return parts._replace(netloc=netloc, fragment="").geturl()
