"""Herald's REST API for notifications: publish, topics, subscriptions, events and the inbox."""
