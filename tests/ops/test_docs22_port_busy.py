"""A busy port says what to do about it (docs22: a second `make serve` beside the first)."""

from __future__ import annotations

import socket

import pytest

from gateway.settings import Settings
from ops.cli import CliError
from ops.commands.serve_checks import check_ports


@pytest.fixture
def busy_port():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_a_busy_http_port_names_the_flags_that_get_past_it(busy_port):
    with pytest.raises(CliError) as refused:
        check_ports(Settings(port=busy_port, grpc_port=-1))
    text = str(refused.value)
    assert f"cannot listen on 127.0.0.1:{busy_port}: Address already in use" in text
    assert "another gateway" in text and "--port" in text and "--data-dir" in text
    assert "TIDEGATE_PORT and TIDEGATE_DATA_DIR" in text  # what make serve takes
    assert "\n" not in text


def test_a_busy_grpc_port_given_names_grpc_port(busy_port):
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        http_port = free.getsockname()[1]
    with pytest.raises(CliError) as refused:
        check_ports(Settings(port=http_port, grpc_port=busy_port))
    text = str(refused.value)
    assert f"127.0.0.1:{busy_port}" in text and "--grpc-port" in text
    assert "TIDEGATE_GRPC_PORT" in text
