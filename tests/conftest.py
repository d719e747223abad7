"""Shared fixtures: every anyio test runs on asyncio and on trio."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]  # tests/integrations runs small pytest sessions


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """The library claims both backends, so every async test runs on both."""
    return str(request.param)
