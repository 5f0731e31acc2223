"""Incidents: grades, status flow, roles, tasks, links, timeline, playbooks, reports."""
