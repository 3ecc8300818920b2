"""Dashboard views: sign in and out, the notification center of a tenant staff member (with the
endpoint that gives it connection tokens), the form that sends them a test notification, and the
operations page (with the JSON of its recent-events table).
Thin: they authorise, call one selector or service, and render."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import LoginView, LogoutView
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import get_token
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from accounts.exceptions import HeraldError
from accounts.models import Membership
from dashboard import selectors, services
from dashboard.forms import SendNotificationForm
from notifications import protocol
from notifications.protocol import PATH as WEBSOCKET_PATH

# A URL name: login_required and the auth views resolve it. Django's admin login (settings.LOGIN_URL)
# would refuse tenant staff who are not is_staff, so the dashboard has its own.
LOGIN_URL = "dashboard:login"


class StaffLoginView(LoginView):
    template_name = "dashboard/login.html"
    redirect_authenticated_user = True
    next_page = "dashboard:live"


class StaffLogoutView(LogoutView):
    next_page = LOGIN_URL


@require_GET
@login_required(login_url=LOGIN_URL)
def live_page(request: HttpRequest) -> HttpResponse:
    membership = selectors.staff_membership(user=request.user)
    problem = selectors.membership_problem(membership=membership)
    if problem is not None or membership is None:
        return _no_access(request, problem)
    return _render_live(request, membership, SendNotificationForm())


@require_POST
@login_required(login_url=LOGIN_URL)
def send_notification(request: HttpRequest) -> HttpResponse:
    """Send the signed-in staff member a notification. A fetch() that accepts JSON gets JSON
    (202 with the event id, or the error); a plain form post is redirected back, or the page is
    rendered again with the errors."""
    wants_json = "application/json" in request.headers.get("Accept", "")
    membership = selectors.staff_membership(user=request.user)
    problem = selectors.membership_problem(membership=membership)
    if problem is not None or membership is None:
        if wants_json:
            return _json_error(403, "forbidden", _PROBLEMS[problem or "no_membership"])
        return _no_access(request, problem)
    form = SendNotificationForm(request.POST)
    status, code, retry_after = 400, "invalid", None
    if form.is_valid():
        try:
            event_id = services.demo_notification_send(
                membership=membership, title=form.cleaned_data["title"], body=form.cleaned_data["body"]
            )
        except HeraldError as error:
            form.add_error(None, error.message)
            status, code, retry_after = error.status_code, error.code, error.retry_after
        else:
            if wants_json:
                return JsonResponse({"id": event_id}, status=202)
            messages.success(request, "Sent. It appears in your inbox in a moment.")
            return redirect("dashboard:live")
    response: HttpResponse
    if wants_json:
        fields = {name: [str(message) for message in errors] for name, errors in form.errors.items()}
        general = fields.pop("__all__", ["Some fields are not valid."])
        response = _json_error(status, code, general[0], fields)
    else:
        response = _render_live(request, membership, form, status=status)
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    return response


@never_cache
@require_POST
def connection_token(request: HttpRequest) -> HttpResponse:
    """A fresh connection token for the signed-in staff member's own end-user id: what the
    notification center's herald.js `getToken()` fetches before each connection. Session
    authenticated and CSRF protected (a POST with the X-CSRFToken header), so another site cannot
    obtain a token with the visitor's cookies. JSON in every case: a page script, not a person,
    reads it, so an expired session is a 401, not a redirect to the login page."""
    if not request.user.is_authenticated:
        return _json_error(401, "unauthorized", "Sign in again: your session has ended.")
    membership = selectors.staff_membership(user=request.user)
    problem = selectors.membership_problem(membership=membership)
    if problem is not None or membership is None:
        code = "tenant_inactive" if problem == "tenant_inactive" else "forbidden"
        return _json_error(403, code, _PROBLEMS[problem or "no_membership"])
    try:
        token, expires_at = services.member_connection_token_mint(membership=membership)
    except HeraldError as error:
        return _json_error(error.status_code, error.code, error.message)
    return JsonResponse(
        {"token": token, "expires_at": protocol.timestamp(expires_at), "user_id": membership.external_id}
    )


# The operations page's live figures (notifications/routing.py routes it to dashboard.consumers).
OPS_WEBSOCKET_PATH = f"{WEBSOCKET_PATH}ops/"
# How often the page reloads its recent-events table: a burst shows up while it is still news,
# and a page left open costs one small query every few seconds.
OPS_EVENTS_REFRESH_MS = 3000


@require_GET
@login_required(login_url=LOGIN_URL)
def ops_page(request: HttpRequest) -> HttpResponse:
    """The operations page of a tenant: its staff see their own tenant; a platform admin picks any
    (`?tenant=<slug>` preselects one). The figures arrive over /ws/v1/ops/; the page itself carries
    only what to watch."""
    tenants = selectors.ops_tenants(user=request.user)
    if not tenants:
        return _ops_no_access(request)
    tenant = None
    if request.user.is_superuser and request.GET.get("tenant"):
        tenant = selectors.ops_tenant(user=request.user, slug=request.GET["tenant"])
    tenant = tenant or selectors.ops_tenant(user=request.user)
    if tenant is None:  # a superuser's tenants were all deleted since the line above
        return _ops_no_access(request)
    membership = selectors.staff_membership(user=request.user)
    context: dict[str, Any] = {
        "tenant": tenant,
        "tenants": tenants,
        "can_switch": request.user.is_superuser,
        "has_center": selectors.membership_problem(membership=membership) is None,
        # Read by ops.js (rendered with json_script, so it cannot break out of its tag).
        "ops_config": {
            "websocketPath": OPS_WEBSOCKET_PATH,
            "eventsUrl": reverse("dashboard:ops-events"),
            "loginUrl": f"{reverse(LOGIN_URL)}?next={reverse('dashboard:ops')}",
            "tenant": tenant.slug,
            "canSwitch": request.user.is_superuser,
            "eventsRefreshMs": OPS_EVENTS_REFRESH_MS,
        },
    }
    return render(request, "dashboard/ops.html", context)


@never_cache
@require_GET
def ops_events(request: HttpRequest) -> HttpResponse:
    """The latest events of a tenant, for the operations page's table: `?tenant=<slug>`, or the
    staff member's own tenant without it. Session authenticated; JSON in every case (a page script
    reads it). A tenant the user may not watch and one that does not exist get the same 404."""
    if not request.user.is_authenticated:
        return _json_error(401, "unauthorized", "Sign in again: your session has ended.")
    if not selectors.ops_tenants(user=request.user):
        return _json_error(403, "forbidden", _OPS_NO_ACCESS)
    slug = request.GET.get("tenant") or None
    tenant = selectors.ops_tenant(user=request.user, slug=slug)
    if tenant is None:
        return _json_error(404, "not_found", "No such tenant.")
    return JsonResponse({"tenant": tenant.slug, "events": selectors.recent_events(tenant=tenant)})


_OPS_NO_ACCESS = "Your account is not staff of any tenant, so there is no tenant to watch."


def _ops_no_access(request: HttpRequest) -> HttpResponse:
    explanation = (
        "There are no tenants yet: create one in the admin (or with manage.py create_tenant)."
        if request.user.is_superuser
        else _OPS_NO_ACCESS
    )
    return render(request, "dashboard/ops_no_access.html", {"explanation": explanation}, status=403)


_PROBLEMS = {
    "no_membership": "Your account is not staff of any tenant, so it has no inbox to show.",
    "tenant_inactive": "Your tenant is deactivated: it can neither publish nor connect.",
    "invalid_external_id": "Your membership has no valid end-user id; ask a platform admin to set one.",
}


def _no_access(request: HttpRequest, problem: str | None) -> HttpResponse:
    context = {"problem": problem, "explanation": _PROBLEMS[problem or "no_membership"]}
    return render(request, "dashboard/no_access.html", context, status=403)


def _render_live(
    request: HttpRequest, membership: Membership, form: SendNotificationForm, *, status: int = 200
) -> HttpResponse:
    state = selectors.live_page_state(membership=membership)
    context: dict[str, Any] = {
        "membership": membership,
        "tenant": membership.tenant,
        "state": state,
        "form": form,
        # Read by center.js (rendered with json_script, so it cannot break out of its tag).
        "center_config": {
            "websocketPath": WEBSOCKET_PATH,
            "apiPath": "/api/v1",
            "tokenUrl": reverse("dashboard:token"),
            "since": state.cursor,
            "nextCursor": state.next_cursor,
            "csrfToken": get_token(request),
        },
    }
    return render(request, "dashboard/center.html", context, status=status)


def _json_error(status: int, code: str, message: str, fields: dict[str, list[str]] | None = None) -> JsonResponse:
    error: dict[str, Any] = {"code": code, "message": message}
    if fields:
        error["fields"] = fields
    return JsonResponse({"error": error}, status=status)
