"""Triton's ModelConfig message for a model (``ModelConfig`` over gRPC)."""

from __future__ import annotations

from vmpool.artifact import ModelConfig

from . import inference_pb2 as pb


def model_config(cfg: ModelConfig) -> pb.ModelConfig:
    """Triton's ModelConfig view of a model: with batching, dims leave out the batch dimension."""
    batched = cfg.max_batch_size > 0 and all(t.shape and t.shape[0] == -1 for t in cfg.inputs)

    def dims(shape):
        return list(shape[1:]) if batched else list(shape)

    return pb.ModelConfig(
        name=cfg.name,
        platform=cfg.platform,
        backend="pytorch",
        max_batch_size=cfg.max_batch_size if batched else 0,
        input=[
            pb.ModelInput(name=t.name, data_type=_data_type(t.datatype), dims=dims(t.shape))
            for t in cfg.inputs
        ],
        output=[
            pb.ModelOutput(name=t.name, data_type=_data_type(t.datatype), dims=dims(t.shape))
            for t in cfg.outputs
        ],
        dynamic_batching=pb.ModelDynamicBatching(
            max_queue_delay_microseconds=int(cfg.max_queue_delay_ms * 1000)
        )
        if batched
        else None,
    )


def _data_type(datatype: str) -> int:
    return pb.DataType.Value("TYPE_STRING" if datatype == "BYTES" else f"TYPE_{datatype}")
