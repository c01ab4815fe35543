"""The Siteline example site: a runtime title from the database, a contact form and a health check."""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import ipaddress
import json
import logging
import os
import re
import smtplib
import ssl
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from pathlib import Path
from typing import Any, TypeVar

import migrate
import psycopg

SITE_DIR = Path(__file__).resolve().parent
SMTP_MODES = ("deliver", "sink", "allowlist")
DEFAULT_CONTACT_TO = "webmaster@example.invalid"
DEFAULT_SMTP_FROM = "noreply@example.invalid"
MAX_FORM_BYTES = 64 * 1024
MAX_NAME = 200
MAX_EMAIL = 254
MAX_PHONE = 40
MAX_MESSAGE = 5000
MAX_SITE_TITLE = 200

EMAIL_PATTERN = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)
PHONE_PATTERN = re.compile(r"^[0-9+()./ -]*$")
# Tab, newline and carriage return are allowed in a message body; no other control character is.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;"
    "line-height:1.5;color:#1b1b1b}"
    "header{border-bottom:1px solid #ccc;margin-bottom:1.5rem}"
    ".role{background:#fff3cd;padding:.25rem .5rem;display:inline-block}"
    ".release{color:#555;font-size:.9rem}"
    ".errors{color:#a00}"
    "label{display:block;margin-top:.75rem}"
    "input,textarea{width:100%;padding:.4rem;font:inherit}"
    "button{margin-top:1rem;padding:.4rem 1rem;font:inherit}"
)
# The one inline stylesheet is allowed by its hash, so the policy needs no 'unsafe-inline'.
STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode("utf-8")).digest()).decode(
    "ascii"
)
SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    (
        "Content-Security-Policy",
        (
            f"default-src 'none'; style-src 'sha256-{STYLE_HASH}'; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'"
        ),
    ),
    ("Permissions-Policy", "camera=(), microphone=(), geolocation=()"),
    ("Cache-Control", "no-store"),
)
STATUS_TEXT = {
    200: "OK",
    303: "See Other",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

log = logging.getLogger("siteline.site")
T = TypeVar("T")


@dataclass(frozen=True)
class SiteConfig:
    """The site's environment; every variable not read here is a connector setting and ignored."""

    role: str
    release: str
    smtp_host: str
    smtp_port: int
    smtp_from: str
    smtp_mode: str
    smtp_allow: frozenset[str]
    contact_to: str
    smtp_username: str = ""
    database_url: str = field(default="", repr=False)
    smtp_password: str = field(default="", repr=False)
    admin_token: str = field(default="", repr=False)

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, str], site_dir: Path = SITE_DIR
    ) -> SiteConfig:
        mode = environ.get("SMTP_MODE", "sink").strip().lower() or "sink"
        if mode not in SMTP_MODES:
            raise ValueError(
                f"SMTP_MODE must be one of {', '.join(SMTP_MODES)}, not {mode!r}"
            )
        port_text = environ.get("SMTP_PORT", "25").strip() or "25"
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"SMTP_PORT must be a port number, not {port_text!r}")
        allow = frozenset(
            domain.strip().lower()
            for domain in environ.get("SMTP_ALLOW", "").split(",")
            if domain.strip()
        )
        return cls(
            role=environ.get("SITELINE_ROLE", "dev").strip() or "dev",
            release=read_release(site_dir, environ),
            smtp_host=environ.get("SMTP_HOST", "").strip(),
            smtp_port=int(port_text),
            smtp_from=environ.get("SMTP_FROM", "").strip() or DEFAULT_SMTP_FROM,
            smtp_mode=mode,
            smtp_allow=allow,
            contact_to=environ.get("CONTACT_TO", "").strip() or DEFAULT_CONTACT_TO,
            smtp_username=environ.get("SMTP_USERNAME", ""),
            database_url=environ.get("DATABASE_URL", ""),
            smtp_password=environ.get("SMTP_PASSWORD", ""),
            admin_token=environ.get("ADMIN_TOKEN", ""),
        )


def read_release(site_dir: Path, environ: Mapping[str, str]) -> str:
    """The packaged VERSION wins; SITELINE_RELEASE is the fallback for an unpackaged checkout."""
    from_environment = environ.get("SITELINE_RELEASE", "").strip()
    try:
        packaged = (site_dir / "VERSION").read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        packaged = ""
    if packaged and from_environment and packaged != from_environment:
        log.warning(
            "VERSION file says %s but SITELINE_RELEASE says %s; showing %s",
            packaged,
            from_environment,
            packaged,
        )
    return packaged or from_environment or "unreleased"


def domain_of(address: str) -> str:
    return parseaddr(address)[1].rpartition("@")[2].lower()


class DatabaseUnavailable(Exception):
    """The database could not be reached or answered with an error; the message is redacted."""


class Database:
    """One connection per thread, reused across requests and reopened once if the server dropped it."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._local = threading.local()

    def _connect(self) -> psycopg.Connection[Any]:
        if not self._url:
            raise DatabaseUnavailable("DATABASE_URL is not set")
        try:
            conn = psycopg.connect(
                self._url,
                autocommit=True,
                connect_timeout=5,
                application_name="siteline-site",
                options="-c statement_timeout=5000",
            )
        except psycopg.Error as error:
            raise self._unavailable(error) from None
        self._local.conn = conn
        return conn

    def run(
        self, work: Callable[[psycopg.Connection[Any]], T], *, idempotent: bool = True
    ) -> T:
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        reused = conn is not None and not conn.closed
        if conn is None or conn.closed:
            conn = self._connect()
        try:
            return work(conn)
        except psycopg.Error as error:
            if not conn.closed:
                raise self._unavailable(error) from None
            self._local.conn = None
            if not (reused and idempotent):
                raise self._unavailable(error) from None
        # The reused connection had been dropped by the server (restart, refresh): retry once.
        try:
            return work(self._connect())
        except psycopg.Error as error:
            raise self._unavailable(error) from None

    def _unavailable(self, error: psycopg.Error) -> DatabaseUnavailable:
        return DatabaseUnavailable(migrate.redact(str(error).strip(), self._url))


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)


def json_response(status: int, payload: Mapping[str, object]) -> Response:
    return Response(status, json.dumps(payload).encode("utf-8"), "application/json")


@dataclass(frozen=True)
class ContactMessage:
    name: str
    email: str
    phone: str
    message: str


class FormError(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def read_form(environ: Mapping[str, Any]) -> dict[str, str]:
    content_type = str(environ.get("CONTENT_TYPE", "")).split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise FormError(415, "send the form as application/x-www-form-urlencoded")
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise FormError(400, "invalid Content-Length") from None
    if length > MAX_FORM_BYTES:
        raise FormError(413, "the form is too large")
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    try:
        fields = urllib.parse.parse_qs(
            body.decode("utf-8"),
            keep_blank_values=True,
            max_num_fields=20,
            errors="strict",
        )
    except ValueError:
        raise FormError(400, "the form is not valid UTF-8 url-encoded data") from None
    return {name: values[0] for name, values in fields.items()}


def one_line(text: str) -> str:
    return " ".join(CONTROL_CHARACTERS.sub(" ", text).split())


def validate_contact(form: Mapping[str, str]) -> tuple[ContactMessage, list[str]]:
    name = one_line(form.get("name", ""))
    email = form.get("email", "").strip()
    phone = one_line(form.get("phone", ""))
    message = CONTROL_CHARACTERS.sub("", form.get("message", "")).strip()
    errors = []
    if not name:
        errors.append("Please enter your name.")
    elif len(name) > MAX_NAME:
        errors.append(f"Your name must be at most {MAX_NAME} characters.")
    if not email:
        errors.append("Please enter your email address.")
    elif len(email) > MAX_EMAIL or not EMAIL_PATTERN.match(email):
        errors.append("Please enter a valid email address.")
    if len(phone) > MAX_PHONE or not PHONE_PATTERN.match(phone):
        errors.append("Please enter a valid phone number, or leave it empty.")
    if not message:
        errors.append("Please enter a message.")
    elif len(message) > MAX_MESSAGE:
        errors.append(f"Your message must be at most {MAX_MESSAGE} characters.")
    return ContactMessage(name, email, phone, message), errors


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Mailer:
    """Sends the contact form's mail according to SMTP_MODE; logs recipient domains, never addresses."""

    def __init__(self, config: SiteConfig) -> None:
        self._config = config

    def _open(self) -> smtplib.SMTP:
        config = self._config
        # A sink is local and speaks plain SMTP; real relays (deliver, allowlist) get TLS.
        wants_tls = config.smtp_mode != "sink"
        context = ssl.create_default_context()
        smtp: smtplib.SMTP
        if wants_tls and config.smtp_port == 465:
            smtp = smtplib.SMTP_SSL(
                config.smtp_host, config.smtp_port, timeout=10, context=context
            )
            secure = True
        else:
            smtp = smtplib.SMTP(config.smtp_host, config.smtp_port, timeout=10)
            secure = False
        try:
            smtp.ehlo()
            if wants_tls and not secure and smtp.has_extn("starttls"):
                smtp.starttls(context=context)
                smtp.ehlo()
                secure = True
            if config.smtp_username:
                if wants_tls and not secure and not is_loopback(config.smtp_host):
                    raise smtplib.SMTPException(
                        "the server offers no TLS; refusing to send SMTP credentials in clear text"
                    )
                smtp.login(config.smtp_username, config.smtp_password)
        except BaseException:
            smtp.close()
            raise
        return smtp

    def send_contact(self, contact: ContactMessage, message_id: int) -> bool:
        config = self._config
        domain = domain_of(config.contact_to)
        if config.smtp_mode == "allowlist" and domain not in config.smtp_allow:
            log.info(
                "contact mail suppressed: recipient domain %s is not in SMTP_ALLOW",
                domain,
            )
            return False
        if not config.smtp_host:
            log.warning("contact mail not sent: SMTP_HOST is not set")
            return False
        sender = parseaddr(config.smtp_from)[1] or DEFAULT_SMTP_FROM
        mail = EmailMessage()
        mail["From"] = config.smtp_from
        mail["To"] = config.contact_to
        try:
            mail["Reply-To"] = Address(
                display_name=contact.name, addr_spec=contact.email
            )
        except (ValueError, IndexError):
            log.info(
                "contact mail: the visitor's address cannot be a Reply-To; omitted"
            )
        mail["Subject"] = f"Contact form: {contact.name[:80]}"
        mail["Date"] = formatdate(localtime=False)
        mail["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
        mail.set_content(
            f"A visitor wrote through the contact form (message {message_id}, "
            f"{config.role} environment, release {config.release}).\n\n"
            f"Name: {contact.name}\n"
            f"Email: {contact.email}\n"
            f"Phone: {contact.phone or '-'}\n\n"
            f"{contact.message}\n"
        )
        try:
            with self._open() as smtp:
                smtp.send_message(mail, from_addr=sender, to_addrs=[config.contact_to])
        except OSError as error:
            log.error(
                "contact mail to domain %s not sent: %s: %s",
                domain,
                type(error).__name__,
                error,
            )
            return False
        log.info(
            "contact mail sent to domain %s via %s:%s (%s mode)",
            domain,
            config.smtp_host,
            config.smtp_port,
            config.smtp_mode,
        )
        return True


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


class Site:
    """The WSGI application."""

    def __init__(self, config: SiteConfig, site_dir: Path = SITE_DIR) -> None:
        self.config = config
        self.database = Database(config.database_url)
        self.mailer = Mailer(config)
        self.expected_migrations = [
            m.version for m in migrate.discover(site_dir / "migrations")
        ]
        self.routes: dict[str, dict[str, Callable[[Mapping[str, Any]], Response]]] = {
            "/": {"GET": self.home},
            "/healthz": {"GET": self.healthz},
            "/contact": {"GET": self.contact_form, "POST": self.contact_submit},
            "/admin/settings": {"POST": self.admin_settings},
        }

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        path = str(environ.get("PATH_INFO", "/")) or "/"
        handlers = self.routes.get(path)
        if path == "/admin/settings" and not self.config.admin_token:
            handlers = None
        try:
            if handlers is None:
                response = self.error_page(404, "There is no page at this address.")
            elif (method if method != "HEAD" else "GET") not in handlers:
                response = self.error_page(
                    405, "This page does not accept that method."
                )
                response.headers.append(("Allow", ", ".join(sorted(handlers))))
            else:
                response = handlers[method if method != "HEAD" else "GET"](environ)
        except Exception:
            log.exception("unhandled error on %s %s", method, path)
            response = self.error_page(500, "Something went wrong on our side.")
        headers = [
            ("Content-Type", response.content_type),
            ("Content-Length", str(len(response.body))),
        ]
        headers += response.headers
        headers += SECURITY_HEADERS
        start_response(
            f"{response.status} {STATUS_TEXT.get(response.status, '')}".strip(), headers
        )
        return [b"" if method == "HEAD" else response.body]

    # Pages

    def site_title(self) -> str:
        def fetch(conn: psycopg.Connection[Any]) -> str:
            row = conn.execute(
                "SELECT value FROM site_settings WHERE key = 'site_title'"
            ).fetchone()
            return str(row[0]) if row else "Siteline example site"

        return self.database.run(fetch)

    def page(self, status: int, heading: str, body: str, site_title: str) -> Response:
        role = self.config.role
        banner = (
            "" if role == "live" else f'<p class="role">{esc(role)} environment</p>'
        )
        document = (
            "<!doctype html>\n"
            '<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(heading)}</title><style>{STYLE}</style></head><body>"
            f'<header><h1 class="site-title"><a href="/">{esc(site_title)}</a></h1>{banner}</header>'
            f"<main>{body}</main>"
            f'<footer><p class="release">Release {esc(self.config.release)}</p></footer>'
            "</body></html>\n"
        )
        return Response(status, document.encode("utf-8"))

    def error_page(self, status: int, text: str) -> Response:
        body = f"<h2>{esc(STATUS_TEXT.get(status, 'Error'))}</h2><p>{esc(text)}</p>"
        return self.page(status, STATUS_TEXT.get(status, "Error"), body, "Siteline")

    def unavailable(self, error: DatabaseUnavailable) -> Response:
        log.error("database unavailable: %s", error)
        return self.error_page(
            503, "The site is temporarily unavailable. Please try again shortly."
        )

    def home(self, environ: Mapping[str, Any]) -> Response:
        try:
            title = self.site_title()
        except DatabaseUnavailable as error:
            return self.unavailable(error)
        body = (
            f"<h2>Welcome to {esc(title)}</h2>"
            "<p>This small site is delivered by Siteline: one package, built once and promoted "
            "from dev to test to live.</p>"
            '<p><a href="/contact">Contact us</a></p>'
        )
        return self.page(200, title, body, title)

    def healthz(self, environ: Mapping[str, Any]) -> Response:
        release = self.config.release

        def applied(conn: psycopg.Connection[Any]) -> set[str]:
            conn.execute("SELECT 1")
            try:
                return {
                    row[0]
                    for row in conn.execute("SELECT version FROM schema_migrations")
                }
            except psycopg.errors.UndefinedTable:
                return set()

        try:
            versions = self.database.run(applied)
        except DatabaseUnavailable as error:
            log.error("health check: database unavailable: %s", error)
            return json_response(
                503,
                {
                    "status": "error",
                    "release": release,
                    "database": "unavailable",
                    "reason": "the database does not answer",
                },
            )
        missing = [
            version for version in self.expected_migrations if version not in versions
        ]
        if missing:
            return json_response(
                503,
                {
                    "status": "error",
                    "release": release,
                    "database": "not migrated",
                    "reason": f"migrations not applied: {', '.join(missing)}",
                },
            )
        return json_response(
            200, {"status": "ok", "release": release, "database": "ok"}
        )

    def render_contact(
        self,
        status: int,
        title: str,
        values: Mapping[str, str],
        errors: list[str],
        sent: bool,
    ) -> Response:
        notice = '<p class="sent">Thank you, your message was sent.</p>' if sent else ""
        error_list = ""
        if errors:
            items = "".join(f"<li>{esc(error)}</li>" for error in errors)
            error_list = f'<ul class="errors">{items}</ul>'

        def value(name: str) -> str:
            return esc(values.get(name, ""))

        body = (
            f"<h2>Contact</h2>{notice}{error_list}"
            '<form method="post" action="/contact">'
            f'<label>Name <input name="name" required maxlength="{MAX_NAME}" value="{value("name")}"></label>'
            f'<label>Email <input name="email" type="email" required maxlength="{MAX_EMAIL}" '
            f'value="{value("email")}"></label>'
            f'<label>Phone (optional) <input name="phone" maxlength="{MAX_PHONE}" value="{value("phone")}"></label>'
            f'<label>Message <textarea name="message" required rows="6" maxlength="{MAX_MESSAGE}">'
            f"{value('message')}</textarea></label>"
            '<button type="submit">Send</button></form>'
        )
        return self.page(status, f"Contact - {title}", body, title)

    def contact_form(self, environ: Mapping[str, Any]) -> Response:
        query = urllib.parse.parse_qs(str(environ.get("QUERY_STRING", "")))
        try:
            title = self.site_title()
        except DatabaseUnavailable as error:
            return self.unavailable(error)
        return self.render_contact(200, title, {}, [], sent=query.get("sent") == ["1"])

    def contact_submit(self, environ: Mapping[str, Any]) -> Response:
        try:
            form = read_form(environ)
        except FormError as error:
            return self.error_page(error.status, str(error))
        contact, errors = validate_contact(form)
        try:
            if errors:
                return self.render_contact(
                    400, self.site_title(), form, errors, sent=False
                )

            def store(conn: psycopg.Connection[Any]) -> int:
                row = conn.execute(
                    "INSERT INTO contact_messages (name, email, phone, message)"
                    " VALUES (%s, %s, %s, %s) RETURNING id",
                    (
                        contact.name,
                        contact.email,
                        contact.phone or None,
                        contact.message,
                    ),
                ).fetchone()
                assert row is not None
                return int(row[0])

            message_id = self.database.run(store, idempotent=False)
        except DatabaseUnavailable as error:
            return self.unavailable(error)
        log.info("contact message %d stored", message_id)
        # The message is stored either way; a mail failure is logged for the operator.
        self.mailer.send_contact(contact, message_id)
        return Response(303, b"", headers=[("Location", "/contact?sent=1")])

    def admin_settings(self, environ: Mapping[str, Any]) -> Response:
        scheme, _, token = str(environ.get("HTTP_AUTHORIZATION", "")).partition(" ")
        expected = self.config.admin_token.encode("utf-8")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode("utf-8"), expected
        ):
            log.warning("admin: request with a missing or wrong token refused")
            response = json_response(401, {"error": "unauthorized"})
            response.headers.append(
                ("WWW-Authenticate", 'Bearer realm="siteline-admin"')
            )
            return response
        try:
            form = read_form(environ)
        except FormError as error:
            return json_response(error.status, {"error": str(error)})
        title = one_line(form.get("site_title", ""))
        if not title or len(title) > MAX_SITE_TITLE:
            return json_response(
                400, {"error": f"site_title must be 1 to {MAX_SITE_TITLE} characters"}
            )

        def update(conn: psycopg.Connection[Any]) -> None:
            conn.execute(
                "INSERT INTO site_settings (key, value, updated_at) VALUES ('site_title', %s, now())"
                " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()",
                (title,),
            )

        try:
            self.database.run(update)
        except DatabaseUnavailable as error:
            log.error("admin: database unavailable: %s", error)
            return json_response(503, {"error": "the database does not answer"})
        log.info("admin: site_title updated")
        return json_response(200, {"status": "ok", "site_title": title})


def describe(config: SiteConfig) -> str:
    """A startup line an operator can read: where things are, never credentials."""
    try:
        parsed = urllib.parse.urlsplit(config.database_url)
        database = (
            f"{parsed.hostname or 'local socket'}:{parsed.port or 5432}{parsed.path}"
        )
    except ValueError:
        database = "unparsable DATABASE_URL"
    if not config.database_url:
        database = "not configured"
    return (
        f"role={config.role} release={config.release} database={database} "
        f"smtp={config.smtp_mode} via {config.smtp_host or 'nowhere'}:{config.smtp_port} "
        f"admin={'enabled' if config.admin_token else 'disabled'}"
    )


def create_app(environ: Mapping[str, str], site_dir: Path = SITE_DIR) -> Site:
    config = SiteConfig.from_environ(environ, site_dir)
    if config.smtp_mode == "deliver" and config.role != "live":
        log.warning(
            "SMTP_MODE=deliver outside live: this %s site sends real mail", config.role
        )
    log.info("site starting: %s", describe(config))
    return Site(config, site_dir)


logging.basicConfig(
    level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
)
application = create_app(os.environ)
