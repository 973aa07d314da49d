"""Outgoing email over SMTP (aiosmtplib), configured by site settings or config.

The site settings ``email_smtp_*`` (server_settings table) win over the ``--smtp-*`` options,
so an admin can change them without a restart. No server configured means "email is not
configured": callers report that to the user instead of pretending a message went out.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from email.message import EmailMessage

import aiosmtplib

from .config import Settings
from .db import settings as site_settings
from .db.engine import Database

log = logging.getLogger("cohub.mail")

SEND_TIMEOUT_S = 20.0


class MailError(Exception):
    """Email could not be sent; the message says why and what to configure."""


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    host: str
    port: int
    username: str
    password: str
    sender: str
    security: str  # "", "starttls" or "tls"


async def smtp_settings(db: Database, config: Settings | None) -> SmtpSettings | None:
    """The SMTP settings in force, or None when no server is configured."""
    stored = await site_settings.get_settings(db, list(site_settings.SMTP_SETTINGS))
    host = stored.get("email_smtp_server") or (config.smtp_host if config else "")
    if not host:
        return None
    port_text = stored.get("email_smtp_port") or ""
    port = int(port_text) if port_text.isdigit() else (config.smtp_port if config else 25)
    return SmtpSettings(
        host=host,
        port=port,
        username=stored.get("email_smtp_login") or (config.smtp_username if config else ""),
        password=stored.get("email_smtp_password") or (config.smtp_password if config else ""),
        sender=stored.get("email_smtp_from")
        or (config.smtp_from if config else "")
        or f"noreply@{host}",
        security=(stored.get("email_smtp_secure") or (config.smtp_security if config else ""))
        .strip()
        .lower(),
    )


async def send_email(smtp: SmtpSettings, to: str, subject: str, body: str) -> None:
    """Send a plain-text email; MailError when the server refuses or cannot be reached."""
    message = EmailMessage()
    message["From"] = smtp.sender
    message["To"] = to
    message["Subject"] = subject
    message.set_content(body)
    try:
        await aiosmtplib.send(
            message,
            hostname=smtp.host,
            port=smtp.port,
            username=smtp.username or None,
            password=smtp.password or None,
            use_tls=smtp.security == "tls",
            start_tls=True if smtp.security == "starttls" else False,
            timeout=SEND_TIMEOUT_S,
        )
    except (aiosmtplib.SMTPException, OSError) as e:
        log.warning("sending email to %s via %s:%s failed: %s", to, smtp.host, smtp.port, e)
        raise MailError(
            f"could not send email via {smtp.host}:{smtp.port} ({type(e).__name__}); "
            "check the email_smtp_* site settings"
        ) from e
