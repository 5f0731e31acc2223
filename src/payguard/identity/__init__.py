"""Customers, staff, credentials and sessions."""
