"""URL routes of the notifications REST API (mounted under /api/v1/)."""

from django.urls import path

from notifications.api import views

urlpatterns = [
    path("events", views.EventPublishView.as_view(), name="events-publish"),
    path("events/batch", views.EventBatchView.as_view(), name="events-batch"),
    path("events/<int:event_id>", views.EventDetailView.as_view(), name="events-detail"),
    path("topics", views.TopicListView.as_view(), name="topics"),
    path("topics/<str:key>", views.TopicDetailView.as_view(), name="topics-detail"),
    path("topics/<str:key>/subscribers", views.TopicSubscribersView.as_view(), name="topics-subscribers"),
    path("users/<str:user_id>/subscriptions", views.UserSubscriptionsView.as_view(), name="user-subscriptions"),
    path(
        "users/<str:user_id>/subscriptions/<str:key>",
        views.UserSubscriptionDetailView.as_view(),
        name="user-subscription-detail",
    ),
    path("inbox", views.InboxView.as_view(), name="inbox"),
    path("inbox/unread-count", views.UnreadCountView.as_view(), name="inbox-unread-count"),
    path("inbox/read", views.InboxReadView.as_view(), name="inbox-read"),
    path("inbox/unread", views.InboxUnreadView.as_view(), name="inbox-unread"),
    path("inbox/read-all", views.InboxReadAllView.as_view(), name="inbox-read-all"),
    path("inbox/archive", views.InboxArchiveView.as_view(), name="inbox-archive"),
    path("inbox/unarchive", views.InboxUnarchiveView.as_view(), name="inbox-unarchive"),
]
