"""Data tests: the ``fashion_mnist`` marker (tests that read the installed Fashion-MNIST files)."""

from __future__ import annotations


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers",
        "fashion_mnist: reads the real Fashion-MNIST files (apt-get install "
        "dataset-fashion-mnist); skipped when they are absent",
    )
