"""Security checks of a deployed site: response headers, HTTPS redirect and the TLS versions it accepts."""

from __future__ import annotations

import argparse
import socket
import ssl
import sys
import urllib.error
import urllib.request
from typing import Optional
from urllib.parse import urlsplit

REQUIRED = {
    "X-Content-Type-Options": lambda v: v.lower() == "nosniff",
    "X-Frame-Options": lambda v: v.upper() in ("DENY", "SAMEORIGIN"),
    "Referrer-Policy": lambda v: bool(v),
    "Content-Security-Policy": lambda v: "default-src" in v,
}


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def headers_of(url: str) -> dict[str, str]:
    try:
        with urllib.request.urlopen(url, timeout=15) as response:
            return dict(response.headers)
    except urllib.error.HTTPError as error:
        return dict(error.headers)


def handshake(host: str, port: int, version: ssl.TLSVersion) -> Optional[str]:
    """The negotiated protocol when only `version` is offered, or None when the server refuses it."""
    context = ssl.create_default_context()
    context.minimum_version = context.maximum_version = version
    try:
        with socket.create_connection((host, port), timeout=10) as raw, \
                context.wrap_socket(raw, server_hostname=host) as tls:
            return tls.version()
    except (ssl.SSLError, OSError):
        return None


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--require-hsts", action="store_true", help="fail when Strict-Transport-Security is missing")
    args = parser.parse_args(argv)
    parts = urlsplit(args.url)
    failures: list[str] = []

    found = headers_of(args.url)
    for name, ok in REQUIRED.items():
        value = found.get(name)
        if value is None or not ok(value):
            failures.append(f"header {name}: {value!r}")
    if "Server" in found and any(ch.isdigit() for ch in found["Server"]):
        print(f"note: Server header discloses a version: {found['Server']}")

    if parts.scheme == "https":
        host, port = parts.hostname or "", parts.port or 443
        if "Strict-Transport-Security" not in found:
            if args.require_hsts:
                failures.append("header Strict-Transport-Security missing")
            print("note: no Strict-Transport-Security header")
        modern = [handshake(host, port, v) for v in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3)]
        if not any(modern):
            failures.append("TLS: neither TLS 1.2 nor 1.3 is accepted")
        for old in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
            try:
                accepted = handshake(host, port, old)
            except ValueError:  # this OpenSSL cannot even offer it, so no client here could downgrade
                accepted = None
            if accepted:
                failures.append(f"TLS: the server accepts {accepted}")
        opener = urllib.request.build_opener(NoRedirect)
        try:
            opener.open(f"http://{parts.netloc}{parts.path or '/'}", timeout=15)
            failures.append("http:// is served without a redirect to https")
        except urllib.error.HTTPError as error:
            location = error.headers.get("Location", "")
            if error.code not in (301, 302, 307, 308) or not location.startswith("https://"):
                failures.append(f"http:// answered {error.code} {location!r}, not a redirect to https")
        except OSError:
            pass  # port 80 closed: nothing is served in clear text
    else:
        print(f"note: {args.url} is not https; TLS checks skipped (a local dev site)")

    for failure in failures:
        print(f"FAIL {failure}")
    print(f"security {args.url}: {'failed' if failures else 'passed'} ({len(failures)} problem(s))")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
