"""The demo shop's domain, shared by the legacy Flask app and its FastAPI ports.

Models, repositories, JSON serializers, input validation and the error
envelope live here once; ``legacy_flask_app`` and ``async_app`` both import them.
"""
