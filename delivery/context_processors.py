from django.utils import timezone

from delivery.models import StockAlert
from delivery.selectors import sales_figures
from delivery.stock_alerts import stock_cover


def stock_alerts(request):
    """Open low-stock alerts for the admin banner, with days of cover; nothing for the storefront."""
    if not request.path.startswith("/admin/") or not getattr(request.user, "is_staff", False):
        return {}
    alerts = list(StockAlert.objects.filter(resolved_at__isnull=True).select_related("product")[:10])
    for alert in alerts:
        alert.cover = stock_cover(product_id=alert.product_id, available=alert.available)
    context = {"open_stock_alerts": alerts}
    if request.path == "/admin/":
        context["sales_figures"] = sales_figures(now=timezone.now())
    return context
