"""The Dash apps: the one-map command view and the community view (the same app, fitted to a scope)."""

from dashboards.app import create_dash

__all__ = ["create_dash"]
