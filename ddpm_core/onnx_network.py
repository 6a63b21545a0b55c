"""The ε-network in ONNX Runtime: exported from PyTorch once per set of weights, run on the CPU in fp32.

ONNX Runtime's CPU kernels fuse the U-Net's small convolutions, norms and activations and pay less per
operation than eager PyTorch, which matters at 28×28 pixels. Whether that wins on a given CPU is for
:mod:`ddpm_core.runtime` to measure; this module only builds and runs the session. The export happens in
memory (nothing is written to disk) and is redone when the model's weights change, so an EMA model that
is still training is never sampled with stale weights.
"""

from __future__ import annotations

import importlib.util
import io
import threading
import warnings
import weakref
from typing import Any

import numpy as np
import torch
from torch import nn

from ddpm_core.unet import takes_guidance, unfused_attention

INPUT_NAMES = ("x", "t", "labels")
OPSET = 17


def available() -> bool:
    """True when both onnxruntime (to run) and onnx (which PyTorch's exporter needs) are installed."""
    return importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None


def input_names(model: nn.Module) -> tuple[str, ...]:
    """The graph's inputs: x, t and labels, and w for a student that takes the guidance weight."""
    return (*INPUT_NAMES, "w") if takes_guidance(model) else INPUT_NAMES


def export_onnx(model: nn.Module) -> bytes:
    """The model as an ONNX graph f(x [B,C,H,W], t/T [B], labels [B][, w [B]]) → ε, with a free batch size."""
    cfg = model.config  # type: ignore[attr-defined]
    x = torch.zeros(2, cfg.image_channels, cfg.image_size, cfg.image_size)
    t = torch.full((2,), 0.5)
    labels = torch.zeros(2, dtype=torch.long)
    names = input_names(model)
    inputs = (x, t, labels, torch.full((2,), 2.0)) if "w" in names else (x, t, labels)
    buffer = io.BytesIO()
    was_training = model.training
    model.eval()
    batch_axis = {name: {0: "batch"} for name in (*names, "eps")}
    try:
        with torch.no_grad(), unfused_attention(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
            torch.onnx.export(
                model,
                inputs,
                buffer,
                input_names=list(names),
                output_names=["eps"],
                dynamic_axes=batch_axis,
                opset_version=OPSET,
                dynamo=False,
            )
    finally:
        model.train(was_training)
    return buffer.getvalue()


class OnnxNetwork:
    """An ONNX Runtime session that takes and returns torch tensors, like the model's forward."""

    def __init__(self, graph: bytes, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only
        # No memory arena: ONNX Runtime's keeps the largest batch's buffers for the session's life (190 MB
        # after one batch of 160 here, per model); without it a batch of 20 runs as fast, 160 about 10% slower.
        options.enable_cpu_mem_arena = False
        self.session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])

    def __call__(self, x: torch.Tensor, t_in: torch.Tensor, labels: torch.Tensor, *w: torch.Tensor) -> torch.Tensor:
        feeds = {
            "x": np.ascontiguousarray(x.detach().float().cpu().numpy()),
            "t": np.ascontiguousarray(t_in.detach().float().cpu().numpy()),
            "labels": np.ascontiguousarray(labels.detach().long().cpu().numpy()),
        }
        if w:
            feeds["w"] = np.ascontiguousarray(w[0].detach().float().cpu().numpy())
        (eps,) = self.session.run(None, feeds)
        return torch.from_numpy(eps)


def weights_fingerprint(model: nn.Module) -> tuple[Any, ...]:
    """Changes whenever a weight tensor is replaced or updated in place (PyTorch counts in-place writes)."""
    return tuple((id(v), v._version) for v in model.state_dict(keep_vars=True).values())


_SESSIONS: weakref.WeakKeyDictionary[nn.Module, tuple[tuple[Any, ...], OnnxNetwork]] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def session_for(model: nn.Module) -> OnnxNetwork:
    """The ONNX Runtime session for ``model``'s current weights at the current torch thread count."""
    key = (weights_fingerprint(model), torch.get_num_threads())
    with _LOCK:
        cached = _SESSIONS.get(model)
        if cached is not None and cached[0] == key:
            return cached[1]
        session = OnnxNetwork(export_onnx(model), torch.get_num_threads())
        _SESSIONS[model] = (key, session)
        return session
