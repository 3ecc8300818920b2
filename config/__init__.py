"""Herald project configuration: settings, ASGI application and URL routing."""
