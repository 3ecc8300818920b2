"""Forms of the dashboard pages."""

from __future__ import annotations

from django import forms

from dashboard.services import BODY_MAX_LENGTH, TITLE_MAX_LENGTH


class SendNotificationForm(forms.Form):
    title = forms.CharField(max_length=TITLE_MAX_LENGTH)
    body = forms.CharField(max_length=BODY_MAX_LENGTH, required=False, widget=forms.Textarea(attrs={"rows": 3}))
