"""A model's program checked against its zip checksums when the model server loads it."""

from __future__ import annotations

import pytest

from vmpool.export import export_zoo


def _flip_a_weight_byte(path) -> None:
    """One byte in the middle of the largest member's data (a weight), as a disk might."""
    import struct
    import zipfile

    with zipfile.ZipFile(path) as archive:
        info = max(archive.infolist(), key=lambda i: i.compress_size)
    with open(path, "r+b") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = struct.unpack("<HH", f.read(4))
        f.seek(info.header_offset + 30 + name_len + extra_len + info.compress_size // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0x40]))


def test_a_program_damaged_on_disk_after_export_is_not_served(tmp_path):
    """torch reads a .pt2's members without their checksums: a weight byte flipped after
    export was loaded and served wrong answers. The model server checks them at load."""
    from vmpool.artifact import ArtifactError
    from vmpool.dataplane import ModelServer

    export_zoo("mlp", tmp_path)
    _flip_a_weight_byte(tmp_path / "mlp" / "model.pt2")
    with pytest.raises(ArtifactError, match="does not match its checksum"):
        ModelServer(tmp_path, ["mlp"])
