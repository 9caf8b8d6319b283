"""Who sent a request: the connecting peer, or, behind a proxy named in SKINCARE_TRUSTED_PROXIES,
the client that proxy says it forwarded for.

X-Forwarded-For is whatever the sender wrote, so it is read only when the peer is a trusted
proxy, and then from the right: each trusted proxy appends the address it received from, so
the right-most address that is not a trusted proxy is the first one nobody can forge.
Without trusted proxies the header is ignored, and everyone behind one load balancer shares its
address (the admin sign-in back-off then judges them together).
"""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network, ip_address

from aiohttp import web

Network = IPv4Network | IPv6Network


def _trusted(address: str, proxies: tuple[Network, ...]) -> bool:
    try:
        parsed = ip_address(address)
    except ValueError:
        return False
    return any(parsed in network for network in proxies)


def forwarded_from(peer: str | None, forwarded_for: list[str], proxies: tuple[Network, ...]) -> str:
    """The client's address: `peer`, or through trusted proxies the X-Forwarded-For entry they
    received from (`forwarded_for`: the header's values, in the order received)."""
    peer = peer or "unknown"
    if not _trusted(peer, proxies):
        return peer
    hops = [hop.strip() for value in forwarded_for for hop in value.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, proxies):
            return hop[:64]  # a key, never parsed further: a long forged value stays short
    return hops[0][:64] if hops else peer


def client_address(request: web.Request, proxies: tuple[Network, ...]) -> str:
    return forwarded_from(request.remote, request.headers.getall("X-Forwarded-For", []), proxies)


def is_https(request: web.Request, proxies: tuple[Network, ...]) -> bool:
    """Whether the client's connection is HTTPS: a trusted proxy that ends TLS says so in
    X-Forwarded-Proto (so the admin cookies get their Secure flag behind it too)."""
    if request.secure:
        return True
    forwarded_proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip()
    return _trusted(request.remote or "", proxies) and forwarded_proto.lower() == "https"
