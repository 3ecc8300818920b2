"""HTTP routes: admin, REST API (+ schema and Swagger UI), dashboard pages, health checks."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from accounts.views import TokenMintView, UserTokensRevokeView
from config import health

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/tokens", TokenMintView.as_view(), name="tokens"),
    path("api/v1/users/<str:user_id>/revoke-tokens", UserTokensRevokeView.as_view(), name="user-revoke-tokens"),
    path("api/v1/", include("notifications.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", health.metrics_view, name="metrics"),
    path("", include("dashboard.urls")),
]

handler404 = "config.errors.not_found"
handler500 = "config.errors.server_error"
