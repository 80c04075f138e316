from __future__ import annotations


class ReadOnlyAdminMixin:
    """Admin for rows that only services write (ledgers, logs, the key pool): view, never edit."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
