"""Topics, events, the durable inbox, fan-out and live delivery, the WebSocket consumer and the REST API."""
