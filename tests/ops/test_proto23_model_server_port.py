"""``tidegate model-server`` defaults to a port none of Tidegate's other servers takes by default
(it was 8001, the gateway's gRPC default: a gateway and a model server started with their
defaults on one host collided); an explicit ``--port`` still wins."""

from __future__ import annotations

import argparse
import inspect

from gateway.settings import Settings
from ops.cli import build_parser
from vmpool.runner import run_model_server


def defaults(name: str, *argv: str) -> argparse.Namespace:
    parser = build_parser(name)
    return parser.parse_args([name, *argv])


def test_the_default_ports_of_every_server_differ(tmp_path):
    settings = Settings.load(None, data_dir=tmp_path)
    model_server = defaults("model-server", "--repo", str(tmp_path)).port
    function_runtime = defaults("function-runtime").port
    ports = [settings.port, settings.grpc_port, model_server, function_runtime]
    assert len(set(ports)) == 4, ports
    assert model_server == 8080  # (the docs and the help say so)
    assert inspect.signature(run_model_server).parameters["port"].default == model_server


def test_an_explicit_port_wins_and_the_help_names_the_default(capsys, tmp_path):
    assert defaults("model-server", "--repo", str(tmp_path), "--port", "8001").port == 8001
    assert defaults("model-server", "--repo", str(tmp_path), "--port", "0").port == 0
    try:
        build_parser("model-server").parse_args(["model-server", "--help"])
    except SystemExit:
        pass
    assert "default 8080" in " ".join(capsys.readouterr().out.split())
