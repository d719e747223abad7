"""Fixtures for the provider tests: a transcript server on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ._transcript_server import TranscriptServer


@pytest.fixture
def server() -> Iterator[TranscriptServer]:
    """A real HTTP server on 127.0.0.1 (port chosen by the kernel), closed after the test."""
    srv = TranscriptServer()
    try:
        yield srv
    finally:
        srv.close()
