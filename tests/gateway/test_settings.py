"""Settings: the README's example config is valid, env vars override, bad values are refused."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_config_example_loads(tmp_path):
    blocks = re.findall(r"```toml\n(.*?)```", README.read_text(), re.S)
    example = next(b for b in blocks if "[[tenants]]" in b)
    path = tmp_path / "tidegate.toml"
    path.write_text(example)
    settings = Settings.load(path)
    assert settings.vm.replicas == 1 and settings.burst.memory_mb == 1024
    assert settings.tenants[0].name == "acme" and settings.tenants[0].rate_per_s == 50


def test_environment_overrides_the_file_and_flags_override_both(tmp_path, monkeypatch):
    path = tmp_path / "t.toml"
    path.write_text("port = 9001\n[vm]\nreplicas = 3\n")
    monkeypatch.setenv("TIDEGATE_VM__REPLICAS", "2")
    settings = Settings.load(path, port=9100)
    assert (settings.port, settings.vm.replicas) == (9100, 2)


@pytest.mark.parametrize(
    "text",
    [
        'routing_policy = "cheapest"',
        "[vm]\nreplicas = -1",
        "unknown_key = 1",
        '[burst]\ntransport = "carrier pigeon"',
        "[autoscaling]\ntick_s = 1e-300",  # (ticks back to back would starve the event loop)
    ],
)
def test_bad_settings_are_refused(tmp_path, text):
    path = tmp_path / "bad.toml"
    path.write_text(text + "\n")
    with pytest.raises(ValidationError):
        Settings.load(path)
