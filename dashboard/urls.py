"""Dashboard routes: the notification center at `/`, sign in and out, the connection tokens of
the center's script, and the test-notification form."""

from django.urls import path

from dashboard import views

app_name = "dashboard"

urlpatterns = [
    path("", views.live_page, name="live"),
    path("login/", views.StaffLoginView.as_view(), name="login"),
    path("logout/", views.StaffLogoutView.as_view(), name="logout"),
    path("send/", views.send_notification, name="send"),
    path("token/", views.connection_token, name="token"),
]
