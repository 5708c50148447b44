"""The service fixtures of tests/responder, shared with the browser tests."""

from tests.responder.conftest import make_settings, start_service

__all__ = ["make_settings", "start_service"]
