"""Transactional outbox and in-process subscribers."""
