"""Django's own messages that buyers read, marked here so ``make messages`` keeps our wording of
them in locale/ (LOCALE_PATHS come before Django's catalogs): Django's Chinese for these
reads badly to a buyer ("确保该变量至少包含…", "不允许是用空字符串"). Nothing imports the names;
the strings are the point."""

from django.utils.translation import gettext_lazy, ngettext_lazy

MIN_LENGTH = ngettext_lazy(
    "Ensure this value has at least %(limit_value)d character (it has %(show_value)d).",
    "Ensure this value has at least %(limit_value)d characters (it has %(show_value)d).",
    "limit_value",
)
MAX_LENGTH = ngettext_lazy(
    "Ensure this value has at most %(limit_value)d character (it has %(show_value)d).",
    "Ensure this value has at most %(limit_value)d characters (it has %(show_value)d).",
    "limit_value",
)
NULL_CHARACTERS = gettext_lazy("Null characters are not allowed.")
