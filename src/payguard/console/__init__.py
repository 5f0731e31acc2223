"""The operations web console: server-rendered pages for staff under ``/console``.

Pages are Jinja2 templates with autoescaping on, one stylesheet and no script
framework. Every page carries a strict Content-Security-Policy; forms that change
state are protected by a SameSite=Strict session cookie plus a per-session CSRF
token. The router lives in ``api.py``.
"""
