"""The public surface: a sorted `__all__`, every name importable."""

import orket_pipeline


def test_all_is_sorted_and_importable() -> None:
    names = orket_pipeline.__all__
    assert names == sorted(names)
    for name in names:
        assert getattr(orket_pipeline, name) is not None
