"""Security drills: scenarios that attack the platform, the runner, scoring, records."""
