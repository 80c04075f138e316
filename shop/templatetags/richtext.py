"""``{{ text|markdown }}``: the operator's Markdown as sanitised HTML (``shop.richtext``)."""

from django import template

from shop.richtext import markdown_render

register = template.Library()


@register.filter(name="markdown")
def markdown_filter(source: str):
    return markdown_render(str(source or ""))
