"""Sending, with the standard library only: urllib.request for webhooks, smtplib (STARTTLS) for email.

Each sender returns None when the message went, else why it did not, in words that never quote the
webhook url or a credential (the caller masks every env_var() value as well).
"""
from __future__ import annotations

import json
import smtplib
import socket
import ssl
import urllib.error
import urllib.request
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from .. import __version__
from .check import Ready


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A webhook answers where it was asked: a redirect (to another host, or from https to http) is a failure."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def post_json(ready: Ready, payload: Any) -> str | None:
    request = urllib.request.Request(
        str(ready["url"]).strip(), data=json.dumps(payload, ensure_ascii=False).encode("utf-8"), method="POST",
        headers={"Content-Type": "application/json; charset=utf-8", "User-Agent": f"kpimetrics/{__version__}"})
    timeout = ready.channel.timeout
    try:
        with _OPENER.open(request, timeout=timeout) as answer:
            answer.read(65536)
            status = answer.status
    except urllib.error.HTTPError as exc:
        return f"the webhook answered HTTP {exc.code} {exc.reason or ''}".rstrip()
    except (TimeoutError, socket.timeout):
        return f"the webhook did not answer within {timeout:g} s"
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, (TimeoutError, socket.timeout)):
            return f"the webhook did not answer within {timeout:g} s"
        return f"cannot reach the webhook: {getattr(reason, 'strerror', None) or reason}"
    except (OSError, ValueError) as exc:  # a malformed address, a connection reset
        return f"cannot reach the webhook: {type(exc).__name__}"
    if not 200 <= status < 300:
        return f"the webhook answered HTTP {status}"
    return None


def send_email(ready: Ready, recipient: str, subject: str, text: str) -> str | None:
    message = EmailMessage()
    message["From"] = str(ready["from_"])
    message["To"] = recipient
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = make_msgid(domain=str(ready["from_"]).rpartition("@")[2] or None)
    message.set_content(text)
    timeout = ready.channel.timeout
    try:
        with smtplib.SMTP(str(ready["host"]), int(ready["port"]), timeout=timeout) as smtp:
            smtp.ehlo()
            if ready["starttls"]:
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if ready["user"]:
                smtp.login(str(ready["user"]), str(ready["password"] or ""))
            smtp.send_message(message)
    except smtplib.SMTPAuthenticationError as exc:
        return f"the SMTP server refused the login (SMTP {exc.smtp_code})"
    except smtplib.SMTPRecipientsRefused as exc:
        codes = sorted({code for code, _ in exc.recipients.values()})
        return f"the SMTP server refused the recipient (SMTP {', '.join(map(str, codes))})"
    except smtplib.SMTPNotSupportedError:
        return "the SMTP server does not offer STARTTLS (set `starttls: false` only for a server on this machine)"
    except smtplib.SMTPResponseException as exc:
        return f"the SMTP server refused the message (SMTP {exc.smtp_code})"
    except ssl.SSLError as exc:
        return f"TLS with the SMTP server failed: {exc.reason or type(exc).__name__}"
    except (TimeoutError, socket.timeout):
        return f"the SMTP server did not answer within {timeout:g} s"
    except smtplib.SMTPException as exc:
        return f"SMTP failed: {type(exc).__name__}"
    except OSError as exc:
        return f"cannot reach the SMTP server: {exc.strerror or type(exc).__name__}"
    except ValueError as exc:  # an address or a header that cannot be encoded for SMTP
        return f"the message cannot be sent as written: {type(exc).__name__}"
    return None
