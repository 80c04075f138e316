"""The operator's rich text (product descriptions, the notice, the note after purchase): Markdown
rendered to HTML, then cleaned by nh3 down to a short list of harmless tags. This is the only
place operator text becomes HTML; templates reach it through the ``markdown`` filter
(``shop/templatetags/richtext.py``) and emails may call ``markdown_render`` directly."""

from __future__ import annotations

from functools import lru_cache

import markdown
import nh3
from django.utils.safestring import SafeString, mark_safe

# Markdown passes raw HTML through; whatever it lets by is cut here. No attribute that can run
# code, carry a style (the CSP forbids inline styles), or clobber the page's ids survives, and no
# link scheme but http(s) and mailto (no javascript:, data:, vbscript:).
ALLOWED_TAGS = {
    "p",
    "br",
    "hr",
    "strong",
    "b",
    "em",
    "i",
    "u",
    "s",
    "del",
    "ins",
    "mark",
    "small",
    "sub",
    "sup",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "ul",
    "ol",
    "li",
    "blockquote",
    "code",
    "pre",
    "kbd",
    "a",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
}
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "ol": {"start"},
    "th": {"colspan", "rowspan"},
    "td": {"colspan", "rowspan"},
}
URL_SCHEMES = {"http", "https", "mailto"}
# Removed with their content, not just unwrapped: their text is code or styling, never prose.
DROPPED_WITH_CONTENT = {
    "script",
    "style",
    "template",
    "iframe",
    "object",
    "embed",
    "noscript",
    "svg",
    "math",
    "textarea",
    "select",
}
# nl2br: an operator's single line breaks stay line breaks, as in the plain text shown before.
MARKDOWN_EXTENSIONS = ["nl2br", "sane_lists", "tables", "fenced_code"]


def markdown_render(source: str) -> SafeString:
    """``source`` (Markdown, possibly with HTML in it) as sanitised HTML, safe to put on a page
    or in an email. Never raises on any input text."""
    return mark_safe(_markdown_render_cached(source or ""))  # noqa: S308 - cleaned by nh3 below


# Pure function of its input, so memoised: the notice is rendered on every storefront page.
@lru_cache(maxsize=256)
def _markdown_render_cached(source: str) -> str:
    html = markdown.markdown(source, extensions=MARKDOWN_EXTENSIONS, output_format="html")
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        clean_content_tags=DROPPED_WITH_CONTENT,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel="nofollow noopener noreferrer",
        strip_comments=True,
    )
