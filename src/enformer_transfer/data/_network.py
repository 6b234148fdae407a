"""Where fetch may connect: public internet addresses only, checked after DNS resolution on every hop.

A remote trackDb is untrusted: its ``bigDataUrl`` s, or a redirect from any server, could make
this tool read from the machine it runs on or its private network (127.0.0.1, a cloud's metadata
service at 169.254.169.254, 10.0.0.0/8, ...) and save the answer. So every connection resolves
its host once, refuses the connection when any address is not a public unicast one, and connects
to exactly the addresses it checked (a second lookup could answer differently). Redirects open a
new connection through the same check. ``allow_private_network`` (``--allow-private-network``)
turns the check off for a lab-internal hub.

A proxy from the environment (``http_proxy`` / ``https_proxy``) is the user's own setting and is
trusted; the target host is then checked by resolving it here (the proxy may resolve it
differently; a name that does not resolve here is left to the proxy).
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import urllib.parse
import urllib.request
from dataclasses import dataclass

from ..errors import InputError

FLAG = "--allow-private-network"


class AddressRefused(InputError):
    """A URL whose host resolves to an address that is not public (one line: URL, address, flag)."""


def address_kind(address: str) -> str | None:
    """What makes an IP address off limits ('loopback', 'private', 'link-local', 'multicast',
    'reserved', 'unspecified', 'not globally routable'), or None for a public unicast address.
    IPv6 forms that embed an IPv4 address (mapped, 6to4, Teredo) are judged by that address too."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # fe80::1%eth0: the scope is no part of the address
    for kind in ("loopback", "link_local", "multicast", "unspecified", "reserved", "private"):
        if getattr(ip, f"is_{kind}"):
            return kind.replace("_", "-")
    if not ip.is_global:
        return "not globally routable"
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = [ip.ipv4_mapped, ip.sixtofour, *(ip.teredo or ())]
        for inner in embedded:
            if inner is not None and (kind := address_kind(str(inner))):
                return f"{kind} (embedded in {ip})"
    return None


def resolve_public(url: str, allow_private_network: bool = False, redirected_from: str | None = None,
                   port: int | None = None) -> list[tuple]:
    """The ``getaddrinfo`` entries of ``url``'s host (at ``port``, else the URL's), each checked with
    ``address_kind``; raises ``AddressRefused`` when any one is not public (a host with one private
    address among public ones is refused too: which one a client picks is not ours to know).
    ``socket.gaierror`` (an ``OSError``) when the name does not resolve."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    port = port or parts.port or (443 if parts.scheme.lower() == "https" else 80)
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    if not allow_private_network:
        for *_, sockaddr in infos:
            kind = address_kind(sockaddr[0])
            if kind:
                where = f"{url} (a redirect from {redirected_from})" if redirected_from else url
                named = sockaddr[0] if host.strip("[]") == sockaddr[0] else f"{host} resolves to {sockaddr[0]}"
                raise AddressRefused(
                    f"{where}: refused: {named}, a {kind} address (a hub may not make this tool read from this "
                    f"machine or its private network); pass {FLAG} if this is a lab-internal hub you trust")
    return infos


@dataclass(frozen=True)
class _Guard:
    """How one request's connection is made: straight to checked addresses, or through a proxy."""

    url: str
    allow_private_network: bool
    redirected_from: str | None
    proxied: bool

    def connect(self, address: tuple[str, int], timeout, source_address=None) -> socket.socket:
        if self.proxied or self.allow_private_network:
            return socket.create_connection(address, timeout, source_address)
        last: OSError | None = None
        for family, kind, proto, _, sockaddr in resolve_public(self.url, False, self.redirected_from, address[1]):
            sock = socket.socket(family, kind, proto)
            try:
                if timeout is not socket._GLOBAL_DEFAULT_TIMEOUT:
                    sock.settimeout(timeout)
                if source_address:
                    sock.bind(source_address)
                sock.connect(sockaddr)
                return sock
            except OSError as err:
                sock.close()
                last = err
        raise last or OSError(f"{address[0]}: no address to connect to")


class _GuardedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, *args, guard: _Guard, **kwargs):
        super().__init__(*args, **kwargs)
        self._create_connection = guard.connect


class _GuardedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, *args, guard: _Guard, **kwargs):
        super().__init__(*args, **kwargs)
        self._create_connection = guard.connect  # TLS still verifies the URL's host name


class _GuardedHandler(urllib.request.HTTPHandler, urllib.request.HTTPSHandler):
    """http_open / https_open through ``_Guard``: every request, the first and each redirect."""

    def __init__(self, allow_private_network: bool):
        urllib.request.HTTPHandler.__init__(self)
        urllib.request.HTTPSHandler.__init__(self)
        self.allow_private_network = allow_private_network

    def _guard(self, req: urllib.request.Request) -> _Guard:
        target = urllib.parse.urlsplit(req.full_url)
        proxied = req.host != target.netloc  # urllib put the proxy's address in req.host
        redirected_from = getattr(req, "redirected_from", None)
        if proxied and not self.allow_private_network:
            try:
                resolve_public(req.full_url, False, redirected_from)
            except socket.gaierror:
                pass  # unknown here: the proxy resolves it
        return _Guard(req.full_url, self.allow_private_network, redirected_from, proxied)

    def http_open(self, req):
        return self.do_open(_GuardedHTTPConnection, req, guard=self._guard(req))

    def https_open(self, req):
        return self.do_open(_GuardedHTTPSConnection, req, guard=self._guard(req))


class _RedirectHandler(urllib.request.HTTPRedirectHandler):
    """urllib's redirects (http(s) and ftp targets; no ftp handler is installed), remembering the
    first URL for messages."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None:
            new.redirected_from = getattr(req, "redirected_from", None) or req.full_url
        return new


def opener(allow_private_network: bool = False) -> urllib.request.OpenerDirector:
    """http(s) only, redirects included (urllib's default opener also follows file:// and ftp://),
    every connection to a public address unless ``allow_private_network``."""
    director = urllib.request.OpenerDirector()
    for handler in (urllib.request.ProxyHandler(), urllib.request.UnknownHandler(),
                    _GuardedHandler(allow_private_network), urllib.request.HTTPDefaultErrorHandler(),
                    _RedirectHandler(), urllib.request.HTTPErrorProcessor()):
        director.add_handler(handler)
    return director
