"""Payment instructions and their lifecycle, idempotency, limits, fees and rails."""
