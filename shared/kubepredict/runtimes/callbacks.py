"""``X-Callback-Url``: only allow-listed http(s) hosts, never link-local or cloud-metadata addresses.

The URL is checked when the call is submitted (a clear 400) and again when the callback is sent: the host
is resolved then, every address it resolves to is checked, and the request goes to the checked address
(``Host`` and TLS SNI keep the name), so DNS rebinding between check and connect cannot redirect it.
Redirects are not followed; the timeout is short.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from .. import errors

logger = logging.getLogger(__name__)

# Never called, whatever the allow-list says: instance metadata and other platform endpoints.
METADATA_NAMES = frozenset(
    {
        "metadata.google.internal",
        "metadata.goog",
        "metadata",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.azure.com",
    }
)
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean (also covered by link-local)
        "fd00:ec2::254",  # AWS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "168.63.129.16",  # Azure wire server
        "192.0.0.192",  # Oracle Cloud
    )
)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def address_refusal(ip: Address) -> str | None:
    """Why ``ip`` may never be called back, or None."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in METADATA_ADDRESSES:
        return f"{ip} is a cloud metadata address"
    if ip.is_link_local:
        return f"{ip} is a link-local address"
    if ip.is_unspecified or ip.is_multicast:
        return f"{ip} is not a unicast address"
    return None


def _ip(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


@dataclass(frozen=True)
class _Entry:
    host: str  # lower case, no brackets; "*.example.com" matches any name under example.com
    port: int | None

    def matches(self, host: str, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.host.startswith("*."):
            return host.endswith(self.host[1:]) and _ip(host) is None
        if (a := _ip(self.host)) is not None:
            return a == _ip(host)
        return host == self.host


def parse_hosts(spec: str) -> tuple[_Entry, ...]:
    """``KUBEPREDICT_CALLBACK_HOSTS``: comma-separated ``name``, ``name:port``, ``*.domain``, ``[v6]:port``."""
    entries = []
    for raw in (part.strip().lower() for part in spec.split(",")):
        if not raw:
            continue
        host, port = raw, None
        if raw.startswith("["):
            host, _, rest = raw[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else None
        elif raw.count(":") == 1:
            host, port = raw.split(":")
        try:
            entries.append(_Entry(host.rstrip("."), int(port) if port else None))
        except ValueError as exc:
            raise errors.ConfigError(f"KUBEPREDICT_CALLBACK_HOSTS: bad port in {raw!r}") from exc
    return tuple(entries)


@dataclass(frozen=True)
class Target:
    url: str
    scheme: str
    host: str
    port: int
    netloc: str  # as the caller wrote it (the Host header)


class CallbackPolicy:
    """Checks and sends callbacks under one allow-list and timeout."""

    def __init__(self, hosts: str, timeout: float, *, verify=True):
        self.entries = parse_hosts(hosts)
        self.timeout = timeout
        self.verify = verify  # httpx's: True (system CAs via certifi) or an ssl.SSLContext (tests)

    def check(self, url: str) -> Target:
        """The parsed target of ``url``, or CallbackRefused (400) saying why not."""

        def refuse(why: str):
            return errors.CallbackRefused(f"X-Callback-Url refused: {why}", details={"callback_url": url[:500]})

        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError as exc:
            raise refuse(f"not a valid URL ({exc})") from None
        if parts.scheme not in ("http", "https"):
            raise refuse("only http and https callbacks are sent")
        if "@" in parts.netloc:
            raise refuse("credentials in the URL are not sent; put them in the path or query")
        host = (parts.hostname or "").rstrip(".")
        if not host:
            raise refuse("the URL names no host")
        port = port or (443 if parts.scheme == "https" else 80)
        if host in METADATA_NAMES:
            raise refuse(f"{host} is a cloud metadata host")
        if (ip := _ip(host)) is not None and (why := address_refusal(ip)):
            raise refuse(why)
        if not self.entries:
            raise refuse("no callback hosts are allowed (set KUBEPREDICT_CALLBACK_HOSTS)")
        if not any(e.matches(host, port) for e in self.entries):
            raise refuse(f"{host}:{port} is not in KUBEPREDICT_CALLBACK_HOSTS")
        return Target(url.strip(), parts.scheme, host, port, parts.netloc)

    def resolve(self, target: Target) -> Address:
        """The address to connect to: every address the host resolves to now must be allowed."""
        try:
            infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise errors.CallbackRefused(f"X-Callback-Url host {target.host} does not resolve: {exc}") from None
        addresses = list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos))
        for ip in addresses:
            if why := address_refusal(ip):
                raise errors.CallbackRefused(f"X-Callback-Url host {target.host} resolves to {ip}: {why}")
        if not addresses:
            raise errors.CallbackRefused(f"X-Callback-Url host {target.host} resolves to no address")
        return addresses[0]

    def post(self, url: str, content: bytes, headers: dict) -> int:
        """POST to the checked, resolved address; no redirects, no proxies. Returns the status."""
        import httpx

        target = self.check(url)
        ip = self.resolve(target)
        netloc = f"[{ip}]:{target.port}" if ip.version == 6 else f"{ip}:{target.port}"
        parts = urlsplit(target.url)
        pinned = urlunsplit((target.scheme, netloc, parts.path or "/", parts.query, ""))
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        with httpx.Client(follow_redirects=False, trust_env=False, timeout=self.timeout, verify=self.verify) as client:
            resp = client.post(
                pinned, content=content, headers={**headers, "Host": target.netloc}, extensions=extensions
            )
        return resp.status_code
