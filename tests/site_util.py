"""Shared helpers for the site-kit tests."""

from __future__ import annotations

from pathlib import Path

from hpckit.deploy import BACKENDS, list_sites, load_site
from hpckit.core.resources import data_dir

SHIPPED = sorted(p.stem for p in data_dir("sites").glob("*.yaml"))
GOLDEN = Path(__file__).parent / "golden"
CASES = [(s, b) for s in SHIPPED for b in BACKENDS]


def site(name: str, *overrides: str):
    return load_site(name, list(overrides)).site


__all__ = ["BACKENDS", "CASES", "GOLDEN", "SHIPPED", "list_sites", "site"]


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def isolated_sites(tmp_path_factory, monkeypatch):
    """No user site directories leak in: HPCKIT_SITES_PATH unset, HOME a fresh directory."""
    monkeypatch.delenv("HPCKIT_SITES_PATH", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))
