"""The model server's core: loaded models with their batchers, statistics and drain state.

No HTTP types here (``vmpool/rest.py`` translates HTTP to calls on ``ModelServer``, as MLServer's
``DataPlane``). Models load from the repository at start, and later through ``load``/``unload``
(the protocol's model repository extension).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from vmpool.artifact import ArtifactError, ModelConfig, list_models, load_artifact
from vmpool.batch_report import BatchReport
from vmpool.batching import Batcher, BatcherClosed, InferenceError, QueueTimeout
from vmpool.codec import decode_request, encode_answer, validate_inputs
from vmpool.graph_opt import ExactOnNonFinite, optimize
from vmpool.metrics import ModelServerMetrics
from vmpool.stats import ModelStats, StatsRegistry
from vmpool.validation import check_ranges
from vmpool.wire import DATATYPES, QUEUE_TIMEOUT_HEADER, model_metadata, repository_entry

log = logging.getLogger("tidegate.model_server")


class ModelServerError(Exception):
    """An error with the HTTP status it is answered with."""

    def __init__(self, message: str, status: int, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.headers = headers or {}


@dataclass(frozen=True, slots=True)
class Answer:
    """One inferred request, encoded."""

    body: bytes
    header_length: int | None  # of a binary answer's JSON header; None for a JSON answer
    rows: int  # this request's
    batch: BatchReport  # the batch it rode in


@dataclass
class LoadedModel:
    config: ModelConfig
    batcher: Batcher
    stats: ModelStats
    metadata: bytes  # pre-rendered JSON
    ranges: dict = dataclasses.field(default_factory=dict)  # program_specs.input_ranges


class ModelServer:
    """Loaded models with their batchers, plus the ready/draining state."""

    def __init__(
        self,
        repo: str | Path,
        models: list[str] | None = None,
        *,
        threads: int = 1,
        max_batch_size: int | None = None,
        max_queue_delay_ms: float | None = None,
        metrics: ModelServerMetrics | None = None,
    ):
        names = list(dict.fromkeys(models)) if models else list_models(repo)
        if not names:
            raise ArtifactError(f"no models in repository {repo}")
        if max_batch_size is not None and max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        if max_queue_delay_ms is not None and max_queue_delay_ms < 0:
            raise ValueError(f"max_queue_delay_ms must not be negative, got {max_queue_delay_ms}")
        self.repo = Path(repo)
        self.threads = threads
        self.max_batch_size = max_batch_size
        self.max_queue_delay_ms = max_queue_delay_ms
        self.metrics = metrics or ModelServerMetrics()
        self.stats = StatsRegistry()
        self.models: dict[str, LoadedModel] = {}
        self.unavailable: dict[str, str] = {}  # name -> why it is not loaded (failed or unloaded)
        self.draining = False
        self.in_flight = 0  # infer requests inside the HTTP handler
        self._load_lock = threading.Lock()
        try:
            for name in names:
                try:
                    self.load(name)
                except ArtifactError as exc:
                    # a whole repository: one broken model (damaged weights, a bad config)
                    # is unavailable, the others serve. Raised, every replica the pool
                    # booted died on it: the gateway lost its VMs for all of its models.
                    if models or len(names) == 1:
                        raise
                    log.error("model %s not loaded: %s", name, exc)
                    self.unavailable[name] = str(exc).splitlines()[0]
            if not self.models:
                raise ArtifactError("; ".join(self.unavailable.values()))
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------ repository

    def load(self, name: str) -> LoadedModel:
        """Load (or reload) ``name`` from the repository; blocking (call off the event loop)."""
        import torch

        with self._load_lock:
            artifact = load_artifact(self.repo, name)
            cfg = artifact.config
            if self.max_batch_size is not None:
                cfg = dataclasses.replace(cfg, max_batch_size=self.max_batch_size)
            if self.max_queue_delay_ms is not None:
                cfg = dataclasses.replace(cfg, max_queue_delay_ms=self.max_queue_delay_ms)
            artifact.verify()  # its checksums: a byte flipped on disk is not served
            try:
                program = artifact.load_program()
                module = program.module()
            except Exception as exc:
                raise ArtifactError(
                    f"model {name}: cannot load {artifact.program_path}: {exc}"
                ) from exc
            # batch norms folded, convs on oneDNN's layout: resnet18 at batch 1 ~15 % faster
            module, rewrite = optimize(module, _example(cfg, torch))
            log.info("model %s: %s", cfg.name, rewrite)
            if rewrite != "as exported":  # a NaN or an infinity is answered as exported
                module = ExactOnNonFinite(module, _exact_loader(artifact))
            # Requests are checked against the config (names, datatypes, shapes, batch size)
            # before they are batched, and the batcher only stacks rows: torch.export's own
            # per-call input check (a pre-forward hook walking the pytree) is a second check of
            # the same. Measured on the mlp: 680 -> 453 us of CPU per forward.
            module.validate_inputs = False
            model = self._serve(module, cfg, lambda: _warm_up(module, cfg, torch))
            from vmpool.program_specs import input_ranges  # (torch: imported to load)

            model.ranges = input_ranges(program, [t.name for t in cfg.inputs])
            old = self.models.get(cfg.name)
            self.models[cfg.name] = model
            self.unavailable.pop(cfg.name, None)
        if old is not None:
            old.batcher.close(30.0)
        return model

    def _serve(self, module, cfg: ModelConfig, warm_up) -> LoadedModel:
        self.stats.forget(cfg.name)
        stats = self.stats.model(cfg.name, cfg.version)
        holder: list[Batcher] = []
        observe = self.metrics.track_model(
            cfg.name, lambda: holder[0].queue_depth, lambda: holder[0].in_flight
        )

        def on_batch(rows: int, seconds: float) -> None:
            observe(rows, seconds)
            stats.batch_done(rows, int(seconds * 1e9))

        batcher = Batcher(
            module,
            input_names=[t.name for t in cfg.inputs],
            output_names=[t.name for t in cfg.outputs],
            max_batch_size=cfg.max_batch_size,
            max_queue_delay_ms=cfg.max_queue_delay_ms,
            threads=self.threads,
            name=cfg.name,
            on_batch=on_batch,
            warm_up=warm_up,
            upstream_in_flight=lambda: self.in_flight,
        )
        holder.append(batcher)
        return LoadedModel(cfg, batcher, stats, orjson.dumps(model_metadata(cfg)))

    def unload(self, name: str) -> None:
        """Stop serving ``name``; its accepted requests finish first. Blocking."""
        model = self.models.pop(name, None)
        if model is None:
            raise ModelServerError(f"model {name!r} is not loaded", 404)
        self.unavailable[name] = "unloaded"
        model.batcher.close(30.0)

    def repository_index(self) -> list[dict]:
        names = sorted(set(list_models(self.repo)) | set(self.models))
        rows = []
        for name in names:
            model = self.models.get(name)
            if model is not None:
                rows.append(repository_entry(name, model.config.version, "READY"))
            else:
                rows.append(
                    repository_entry(
                        name, None, "UNAVAILABLE", self.unavailable.get(name, "not loaded")
                    )
                )
        return rows

    # ------------------------------------------------------------ serving

    @property
    def ready(self) -> bool:
        # Ready with no model loaded too (as Triton): unloading the last model through the
        # repository extension must not make the pool give up on the replica.
        return not self.draining

    def model(self, name: str, version: str | None = None) -> LoadedModel:
        model = self.models.get(name)
        if model is None:
            why = self.unavailable.get(name)
            raise ModelServerError(
                f"unknown model {name!r}"
                if why is None
                else f"model {name!r} is not loaded ({why})",
                404,
            )
        if version is not None and version != model.config.version:
            raise ModelServerError(
                f"model {name!r} has no version {version!r} (versions: {model.config.version})", 404
            )
        return model

    async def infer(self, model: LoadedModel, body: bytes, header_length: int | None) -> Answer:
        """Decode, validate, run (batched) and encode one request."""
        req = decode_request(body, header_length)
        validate_inputs(req, model.config)
        if model.ranges:
            check_ranges(req, model.ranges, model.config.name)
        try:
            timeout_us = req.parameters.get("timeout") or 0  # (checked: an int >= 0)
            outputs, batch = await model.batcher.infer_reported(req.inputs, timeout_us / 1e6)
        except BatcherClosed as exc:
            raise ModelServerError(str(exc), 503) from None
        except QueueTimeout as exc:  # Triton's UNAVAILABLE; the header: not the replica's fault
            raise ModelServerError(str(exc), 503, {QUEUE_TIMEOUT_HEADER: "expired"}) from None
        except InferenceError as exc:
            raise ModelServerError(str(exc), 500) from None
        cfg = model.config
        body, length = encode_answer(cfg, req, outputs)
        first = next(iter(req.inputs.values()))
        return Answer(body, length, int(first.shape[0]) if first.ndim else 1, batch)

    def start_drain(self) -> None:
        """Stop being ready; new infer requests get 503, accepted ones finish."""
        self.draining = True

    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no request is in flight; False if ``timeout_s`` passed first."""
        deadline = time.monotonic() + timeout_s
        while self.in_flight or any(m.batcher.in_flight for m in self.models.values()):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    def close(self, timeout_s: float | None = 30.0) -> None:
        for m in list(self.models.values()):
            m.batcher.close(timeout_s)


def _example(cfg: ModelConfig, torch) -> tuple:
    """A batch-1 input (seeded normal floats, zeros otherwise) to check a rewrite against."""
    generator = torch.Generator().manual_seed(0)
    args = []
    for spec in cfg.inputs:
        shape = [1 if d == -1 else d for d in spec.shape]
        dtype = getattr(torch, DATATYPES[spec.datatype])
        if dtype.is_floating_point:
            args.append(torch.randn(shape, generator=generator).to(dtype))
        else:
            args.append(torch.zeros(shape, dtype=dtype))
    return tuple(args)


def _exact_loader(artifact):
    """The exported module of ``artifact`` as it is on disk now, or None once the file is no
    longer the one this model was loaded from (a re-export: the reload serves it)."""
    path = artifact.program_path
    stamp = _stamp(path)

    def load():
        if _stamp(path) != stamp:
            log.warning(
                "model %s: %s changed since load; not loaded for NaN input", artifact.name, path
            )
            return None
        module = artifact.load_module()
        return module if _stamp(path) == stamp else None

    return load


def _stamp(path) -> tuple | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _warm_up(module, cfg: ModelConfig, torch) -> None:
    """Batch-1 calls so the first request does not pay for lazy initialisation (twice: the
    second runs on kernels the first one prepared)."""
    args = _example(cfg, torch)
    try:
        with torch.inference_mode():
            module(*args)
            module(*args)
    except Exception as exc:  # the example may be invalid input for some models; not fatal
        log.warning("model %s: warm-up call failed: %s", cfg.name, exc)
