"""The providers package's public surface: a sorted `__all__`, every name importable."""

from __future__ import annotations

import orket_pipeline.providers as providers


def test_all_is_sorted_and_importable() -> None:
    assert providers.__all__ == sorted(providers.__all__)
    for name in providers.__all__:
        assert getattr(providers, name) is not None
