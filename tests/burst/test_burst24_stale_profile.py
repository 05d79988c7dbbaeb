"""A model's profile whose recurrent kinds were fitted before re-reads had their own term
(burst24) takes the bundled reference's recurrent kinds, and keeps its other kinds.

Those kinds priced an LSTM's per-step re-reads inside ``ms_per_weight_mb``; the node's work
now counts the re-reads apart (``reread_bytes``), so read as they were, a profile measured
before would have priced them at nothing: a 256-wide LSTM over 64 steps at ~0.6 of its time."""

from __future__ import annotations

import json

import pytest

from burst.planning import PROFILE_FILE, REFERENCE_PROFILE, load_profile


def _write(tmp_path, kinds_edit) -> None:
    raw = json.loads(REFERENCE_PROFILE.read_text())
    kinds_edit(raw["compute"]["kinds"])
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / PROFILE_FILE).write_text(json.dumps(raw))


def test_recurrent_kinds_from_before_the_reread_term_are_the_references(tmp_path):
    old = {"fixed_ms": 0.115813, "ms_per_gmac": 5.241957, "ms_per_mb": 2.927261}
    old.update(ms_per_step=2.5e-05, ms_per_weight_mb=0.044472)  # session 23's LSTM fit

    def edit(kinds):
        kinds["lstm"] = dict(old)
        kinds["gru"] = {k: v for k, v in kinds["gru"].items() if k != "ms_per_reread_mb"}
        kinds["conv"] = {**kinds["conv"], "fixed_ms": 0.5}  # the model's own, kept

    _write(tmp_path, edit)
    got, ref = load_profile(tmp_path, "m").compute, load_profile().compute
    assert got.kinds["lstm"] == ref.kinds["lstm"]
    assert got.kinds["gru"] == ref.kinds["gru"]
    assert got.kinds["conv"].fixed_ms == pytest.approx(0.5)


def test_a_profile_fitted_with_the_term_keeps_its_own_recurrent_kinds(tmp_path):
    def edit(kinds):
        kinds["lstm"] = {**kinds["lstm"], "ms_per_reread_mb": 0.09}

    _write(tmp_path, edit)
    assert load_profile(tmp_path, "m").compute.kinds["lstm"].ms_per_reread_mb == 0.09
