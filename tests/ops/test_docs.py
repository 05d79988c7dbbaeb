"""The docs a clone carries: the configuration reference is generated from the settings."""

from __future__ import annotations

from pathlib import Path

from ops.config_reference import render

ROOT = Path(__file__).resolve().parents[2]


def test_configuration_reference_matches_the_settings():
    committed = (ROOT / "docs/configuration.md").read_text()
    assert committed == render(), (
        "docs/configuration.md is stale: python -m ops.config_reference > docs/configuration.md"
    )


def test_every_settings_field_is_described():
    from gateway.settings import Settings

    missing = [
        line
        for line in render().splitlines()
        if line.startswith("| `") and line.rstrip().endswith("|  |")
    ]
    assert not missing, missing
    assert Settings.model_config.get("extra") == "forbid"


def test_readme_points_at_docs_that_exist():
    readme = (ROOT / "README.md").read_text()
    for doc in ("docs/architecture.md", "docs/configuration.md", "docs/operations.md"):
        assert doc in readme and (ROOT / doc).is_file()
    assert "../shared" not in readme
