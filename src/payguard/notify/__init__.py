"""Notification channels (outbox, webhook, SMTP) and message templates (zh-CN, en)."""
