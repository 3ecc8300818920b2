"""Dashboard views."""

from django.http import HttpRequest, HttpResponse


def live_page(request: HttpRequest) -> HttpResponse:
    return HttpResponse("Herald")
