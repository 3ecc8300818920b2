"""Dashboard routes."""

from django.urls import path

from dashboard import views

urlpatterns = [
    path("", views.live_page, name="live"),
]
