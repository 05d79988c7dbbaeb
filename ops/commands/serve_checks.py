"""``tidegate serve``'s checks before anything starts: settings, ports, data directory, model
repository. Each mistake is a ``CliError`` (one line, exit status 2), found before a model is
exported or a replica booted for nothing."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from ops.cli import CliError


def load_settings(args):
    """The settings from defaults, ``--config``, ``TIDEGATE_*`` and the flags; one line if not."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from gateway.settings import Settings, UnknownSetting, describe_error

    overrides = {
        "host": args.host,
        "port": args.port,
        "grpc_port": args.grpc_port,
        "data_dir": args.data_dir,
        "repo": args.repo,
    }
    if args.replicas is not None:  # validated with the rest, not patched in afterwards
        overrides["vm"] = {"replicas": args.replicas}
    try:
        return Settings.load(args.config, **overrides)
    except FileNotFoundError:
        raise CliError(f"config file not found: {args.config}") from None
    except (ValidationError, UnknownSetting) as exc:
        raise CliError(describe_error(exc)) from None
    except SettingsError as exc:  # a TIDEGATE_* value that is not the JSON its field takes
        raise CliError(
            f"environment: {exc} (a list or table is JSON there, e.g. "
            """TIDEGATE_CORS_ORIGINS='["*"]')"""
        ) from None
    except OSError as exc:  # a directory, unreadable
        raise CliError(f"cannot read settings file {args.config}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise CliError(f"cannot read settings file {args.config}: not UTF-8 text") from None
    except ValueError as exc:  # tomllib.TOMLDecodeError: the message names line and column
        raise CliError(f"cannot read settings file {args.config}: not valid TOML: {exc}") from None


def check_port_free(host: str, port: int, flag: str = "--port") -> None:
    """Fail in one line before exporting models or booting replicas for nothing; a port in use
    (most often a gateway already running: a second `make serve`) says how to start beside it."""
    import errno
    import socket

    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            hint = ""
            if exc.errno == errno.EADDRINUSE:
                env = "TIDEGATE_" + flag.removeprefix("--").replace("-", "_").upper()
                also = (
                    (" and --data-dir", " and TIDEGATE_DATA_DIR") if flag == "--port" else ("", "")
                )
                hint = (
                    f" (another gateway running? give this one its own {flag}{also[0]}, "
                    f"or {env}{also[1]})"
                )
            raise CliError(f"cannot listen on {host}:{port}: {exc.strerror or exc}{hint}") from None


def grpc_beside_http(settings):
    """HTTP and gRPC on one port is an error; HTTP given gRPC's default port (8001, Triton's)
    leaves gRPC off, as a busy default port does; HTTP on a free port (0) with gRPC's port not
    given puts gRPC on a free port too (two such gateways, as tests start them, would race for
    8001), and the banner names both."""
    if settings.port == 0 and "grpc_port" not in settings.model_fields_set:
        return settings.model_copy(update={"grpc_port": 0})
    if settings.grpc_port > 0 and settings.grpc_port == settings.port:
        if "grpc_port" in settings.model_fields_set:
            raise CliError(f"port and grpc_port are both {settings.port}: give gRPC its own port")
        return settings.model_copy(update={"grpc_port": -1})
    return settings


def check_ports(settings):
    """The settings, once their ports are usable: ``CliError`` for a busy or shared one."""
    settings = grpc_beside_http(settings)
    check_port_free(settings.host, settings.port)
    if settings.grpc_port > 0 and "grpc_port" in settings.model_fields_set:
        # asked for explicitly: a busy port is an error; the default 8001 when busy is logged
        # and HTTP serves alone (another local server often holds Triton's port)
        check_port_free(settings.host, settings.grpc_port, "--grpc-port")
    return settings


HELD: list[int] = []  # the data directory's lock, held while this gateway runs


def lock_data_dir(data_dir: Path) -> None:
    """One gateway per data directory, whatever its ledger (the async queue, objects and logs
    are there too): a second one is one line naming the first."""
    import fcntl

    fd = os.open(data_dir / "gateway.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        pid = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise CliError(
            f"data directory {data_dir} is in use by another gateway (pid {pid}): "
            "give each gateway its own --data-dir"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    HELD.append(fd)


def prepare_data_dir(settings) -> None:
    """Create the data directory, or say in one line why it cannot be used."""
    if settings.data_dir.exists() and not settings.data_dir.is_dir():
        raise CliError(f"cannot use data directory {settings.data_dir}: it is a file")
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        probe = settings.data_dir / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise CliError(
            f"cannot use data directory {settings.data_dir}: {exc.strerror or exc}"
        ) from None
    _check_dirs(settings)
    if settings.ledger.kind != "postgresql":
        from gateway.ledger.journal import holder

        database = Path(settings.ledger.target(settings.data_dir))
        pid = holder(database)
        if pid is not None:
            raise CliError(
                f"ledger {database} is in use by another gateway (pid {pid}): "
                "give each gateway its own --data-dir"
            )
    lock_data_dir(settings.data_dir)


def _check_dirs(settings) -> None:
    """The ledger's file and the directory stores the settings name, made or refused here."""
    places = []
    if settings.ledger.kind != "postgresql":
        ledger = Path(settings.ledger.target(settings.data_dir))
        if ledger.is_dir():
            raise CliError(f"invalid setting ledger.url: {ledger} is a directory, not a file")
        places.append(("ledger.url", ledger.parent))
    stores = [
        ("burst.store", settings.burst.store),
        ("async_queue.store", settings.async_queue.store),
    ]
    for where, store in stores:
        backing = getattr(store, "backing", None)
        for key, table in ((where, store), (f"{where}.backing", backing)):
            if getattr(table, "kind", None) == "dir" and table.root:
                places.append((f"{key}.root", Path(table.root)))
    for key, place in places:
        try:
            place.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CliError(f"invalid setting {key}: cannot use {place}: {exc.strerror}") from None


def ensure_models(settings) -> list[str]:
    """The repository's models (the demo model exported into an empty default one), each
    checked: a config.toml a model server would refuse, or a truncated model.pt2, is one line
    here rather than replicas that fail to boot, retried for ever."""
    from vmpool.artifact import CONFIG_FILE, PROGRAM_FILE, list_models

    repo = settings.repo_path
    if repo.exists() and not repo.is_dir():
        raise CliError(f"model repository {repo} is a file, not a directory")
    for place in sorted(repo.iterdir()) if repo.is_dir() else ():
        halves = [(place / f).is_file() for f in (PROGRAM_FILE, CONFIG_FILE)]
        if any(halves) and not all(halves):  # a model copied in part
            missing = CONFIG_FILE if halves[0] else PROGRAM_FILE
            raise CliError(f"model repository {repo}: model {place.name} has no {missing}")
    models = list_models(repo)
    if not models:
        models = _export_demo(settings)
    for name in models:
        check_model(repo, name)
    return models


def _export_demo(settings) -> list[str]:
    from vmpool.artifact import ArtifactError, list_models

    repo = settings.repo_path
    if settings.repo is not None:
        raise CliError(
            f"no models in repository {repo} (export one: tidegate export resnet18 --out {repo})"
        )
    if not settings.demo_model:
        raise CliError(f"no models in {repo} and no demo model configured")
    from vmpool import zoo

    try:
        zoo.entry(settings.demo_model)
    except KeyError as exc:
        raise CliError(f"invalid setting demo_model: {exc.args[0]}") from None
    from vmpool.export import export_zoo

    print(f"first run: exporting demo model {settings.demo_model} into {repo} ...", flush=True)
    try:
        export_zoo(settings.demo_model, repo)
    except (ArtifactError, OSError) as exc:
        raise CliError(f"cannot export demo model {settings.demo_model}: {exc}") from None
    return list_models(repo)


def check_model(repo: Path, name: str) -> None:
    """``CliError`` unless model ``name`` has a config that loads and a whole ``model.pt2``."""
    from vmpool.artifact import ArtifactError, load_artifact

    try:
        artifact = load_artifact(repo, name)
    except ArtifactError as exc:
        raise CliError(f"model repository {repo}: {exc}") from None
    except OSError as exc:
        raise CliError(f"model repository {repo}: model {name}: {exc.strerror or exc}") from None
    program = artifact.program_path
    try:
        with zipfile.ZipFile(program) as archive:
            bad = archive.testzip()  # reads every member: a truncated or corrupt file fails
            names = archive.namelist()
            formats = [n for n in names if n.endswith("/archive_format")]
            is_pt2 = any(archive.read(n).strip() == b"pt2" for n in formats)
    except (OSError, zipfile.BadZipFile, EOFError, ValueError) as exc:
        raise CliError(f"model {name}: {program} is not a readable model.pt2 ({exc})") from None
    if bad is not None:
        raise CliError(f"model {name}: {program} is corrupt (member {bad} fails its checksum)")
    has_program = any(n.endswith("/models/model.json") for n in names)
    if not (is_pt2 and has_program) and "version" not in names:  # "version": torch 2.7's layout
        raise CliError(
            f"model {name}: {program} is a zip but not a torch.export program "
            "(export it with tidegate export)"
        )
