"""``tidegate tune --config FILE`` writes that serve config with the tuned policy in place: served
as is (as tune's help says), it keeps the file's ledger, admin key, VM provisioner and burst
settings. It used to write the policy and tenants alone: a production config served from it
billed to a local SQLite file with the admin API off."""

from __future__ import annotations

import math
import tomllib

from gateway.settings import Settings
from ops.cli import main
from ops.sim.config import load_config
from ops.tune_config import dumps

BASE = """\
routing_policy = "threshold"
admin_api_key = "adm-\u00e9t\u00e9"

[ledger]
url = "postgresql://tidegate:pw@db.internal:5432/ledger"
retain_days = 90

[vm]
provisioner = "static"
urls = ["http://10.0.0.5:9000"]

[burst]
enabled = false

[[tenants]]
name = "caf\u00e9 \U0001f600"
api_keys = ["k-1"]
slo_ms = 400

[trace]
seed = 3
"""


def test_a_tuned_config_keeps_what_the_given_config_set(tmp_path, capsys):
    config, out = tmp_path / "prod.toml", tmp_path / "tuned.toml"
    config.write_text(BASE, encoding="utf-8")
    argv = ["tune", "--trace", "synth:steady:duration_s=300,rps=5", "--trials", "2"]
    argv += ["--config", str(config), "--slo-attainment", "0.5", "--out", str(out)]
    assert main(argv) == 0, capsys.readouterr().err

    served = Settings.load(str(out), data_dir=tmp_path / "data")  # what serve --config reads
    assert served.ledger.url == "postgresql://tidegate:pw@db.internal:5432/ledger"
    assert served.ledger.retain_days == 90
    assert served.admin_api_key == "adm-\u00e9t\u00e9"
    assert served.vm.provisioner == "static" and served.vm.urls == ["http://10.0.0.5:9000"]
    assert served.burst.enabled is False
    assert served.routing_policy == "slo-aware"  # the tuned policy, not the file's threshold
    assert [t.name for t in served.tenants] == ["caf\u00e9 \U0001f600"]
    assert served.tenants[0].slo_ms == 400
    assert "k-1" not in out.read_text()  # keys as hashes, as the snippet had them
    tuned = load_config(out)  # simulate --config reproduces the best trial's policy
    assert tuned.spec.routing == "slo-aware" and tuned.spec.autoscaling == "predictive"


def test_without_config_it_is_the_snippet_still(tmp_path, capsys):
    out = tmp_path / "tuned.toml"
    argv = ["tune", "--trace", "synth:steady:duration_s=300,rps=5", "--trials", "1"]
    argv += ["--slo-attainment", "0.5", "--out", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    doc = tomllib.loads(out.read_text())
    assert set(doc) == {"routing_policy", "autoscaling", "vm"}


def test_the_toml_written_reads_back_equal():
    doc = {
        "a": 'quote " back \\ tab \t nl \n del \x7f nul \x00 \u00e9 \U0001f600',
        "odd key.with dots": 1,
        "f": 0.1,
        "big": 10**18,
        "inf": math.inf,
        "flags": [True, False],
        "empty": [],
        "nested": {"deep": {"x": 1.5e-300}, "list": [1, 2]},
        "tenants": [{"name": "a", "limits": {"rps": 2}}, {"name": "b", "models": ["m"]}],
        "inline": [{"a": 1}, 2],
    }
    assert tomllib.loads(dumps(doc)) == doc
