"""Email through Django's email backends (EMAIL_URL): subject, text and HTML templates."""

from __future__ import annotations

import smtplib
from email.utils import make_msgid

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.template import Context, Engine, TemplateSyntaxError
from django.template.loader import render_to_string
from django.utils import translation

from delivery.channels.base import Channel, ChannelError, DeliveryContent


def _render(own: str, default_template: str, context: dict, *, autoescape: bool) -> str:
    """The product's own template when it has one, else the shop's default file."""
    if not own:
        return render_to_string(default_template, context)
    return Engine.get_default().from_string(own).render(Context(context, autoescape=autoescape))


def email_render(*, recipient: str, content: DeliveryContent) -> EmailMultiAlternatives:
    """The email carrying an order's keys, or a notice about the order, in the buyer's language
    (the shop's for orders that did not record one), branded with the shop's name, logo and
    support contacts. The keys email uses the product's own subject, text and HTML templates
    when the operator wrote them; notices always use the shop's."""
    context = {"content": content}
    if content.notice:
        name = content.notice.split(".", 1)[0]  # exception, refunded
        own = ("", "", "")
    else:
        name = "keys"
        own = (content.email_subject, content.email_text, content.email_html)
    with translation.override(content.language or settings.LANGUAGE_CODE):
        subject = " ".join(_render(own[0], f"delivery/email/{name}_subject.txt", context, autoescape=False).split())
        text = _render(own[1], f"delivery/email/{name}_body.txt", context, autoescape=False)
        html = _render(own[2], f"delivery/email/{name}_body.html", context, autoescape=True)
    email = EmailMultiAlternatives(
        subject=subject, body=text, to=[recipient], headers={"Message-ID": make_msgid(domain="kameng")}
    )
    email.attach_alternative(html, "text/html")
    return email


def smtp_failure(exc: Exception) -> ChannelError:
    """Classify an SMTP/socket error: 5xx answers are permanent, everything else transient."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _msg in exc.recipients.values()]
        return ChannelError(f"recipient refused: {codes}", permanent=all(500 <= c < 600 for c in codes))
    if isinstance(exc, smtplib.SMTPResponseException):
        return ChannelError(f"SMTP {exc.smtp_code}", permanent=500 <= exc.smtp_code < 600)
    return ChannelError(f"{type(exc).__name__}: {exc}"[:500], permanent=False)


class EmailChannel(Channel):
    identifier = "email"

    def send(self, *, recipient: str, content: DeliveryContent) -> str:
        try:
            email = email_render(recipient=recipient, content=content)
        except TemplateSyntaxError as exc:  # an operator's product template: staff must fix it
            raise ChannelError(f"email template: {exc}"[:300], permanent=True) from exc
        email.connection = get_connection(timeout=settings.EMAIL_TIMEOUT)
        try:
            email.send()
        except (smtplib.SMTPException, OSError) as exc:
            raise smtp_failure(exc) from exc
        return email.extra_headers["Message-ID"]
