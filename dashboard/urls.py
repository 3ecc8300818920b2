"""Dashboard routes: the notification center at `/`, sign in and out, the connection tokens of
the center's script, the test-notification form, and the operations page with its events JSON."""

from django.urls import path

from dashboard import views

app_name = "dashboard"

urlpatterns = [
    path("", views.live_page, name="live"),
    path("login/", views.StaffLoginView.as_view(), name="login"),
    path("logout/", views.StaffLogoutView.as_view(), name="logout"),
    path("send/", views.send_notification, name="send"),
    path("token/", views.connection_token, name="token"),
    path("ops/", views.ops_page, name="ops"),
    path("ops/events/", views.ops_events, name="ops-events"),
]
