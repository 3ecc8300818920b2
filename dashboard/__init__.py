"""Herald's own browser pages: the live demo page for tenant staff."""
