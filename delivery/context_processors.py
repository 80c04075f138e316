from delivery.models import StockAlert


def stock_alerts(request):
    """Open low-stock alerts for the admin banner; nothing for the storefront."""
    if not request.path.startswith("/admin/") or not getattr(request.user, "is_staff", False):
        return {}
    return {"open_stock_alerts": list(StockAlert.objects.filter(resolved_at__isnull=True).select_related("product")[:10])}
