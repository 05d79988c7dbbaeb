"""A config mistake in `tidegate serve` is told before the gateway's heavy imports: the one line
comes at once, not after seconds of importing torch (it did: 3.4 s for a misspelt setting, of
which ~3 s importing gateway.app before the settings were read)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import sys
from ops.cli import main
rc = main(sys.argv[1:])
print(rc, "torch" in sys.modules)
"""


def test_a_misspelt_setting_is_told_before_torch_is_imported(tmp_path):
    config = tmp_path / "tidegate.toml"
    config.write_text("[vm]\nreplica = 2\n")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TIDEGATE_")}
    argv = ["serve", "--config", str(config), "--port", "0", "--data-dir", str(tmp_path / "d")]
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "unknown setting vm.replica" in proc.stderr, proc.stderr
    assert proc.stdout.split() == ["2", "False"], (proc.stdout, proc.stderr)
