"""The generator contract on OpenVINO IR files: fast CPU inference, no gradients.

The IR's synthesis network takes one style vector and feeds it to all of its style inputs.
We rewrite the graph once so it takes W+ (`[N, num_ws, w_dim]`), each style input reading its
own row, and make the batch dimension dynamic, so any batch size runs on one compiled model.
Precision is pinned to f32 (the CPU plugin's default is bf16 where the CPU supports it).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from facelatent.errors import WeightsError
from facelatent.generators.base import check_ws, check_z, truncate

_STYLE_INPUT = re.compile(r"^m\.(conv1\.conv|layers\.(\d+)\.(up|conv1\.conv|conv2\.conv|to_img\.conv))"
                          r"\.modulation\.weight$")
_BLOCK_OFFSET = {"up": 1, "conv1.conv": 2, "conv2.conv": 3}


def style_index(weight_name: str, num_blocks: int) -> int | None:
    """Which W+ row feeds the style affine whose weight constant is `weight_name`."""
    match = _STYLE_INPUT.match(weight_name)
    if match is None:
        return None
    if match.group(1) == "conv1.conv":
        return 0
    if match.group(3) == "to_img.conv":
        return 1 + 3 * num_blocks
    return 3 * int(match.group(2)) + _BLOCK_OFFSET[match.group(3)]


def _wplus_synthesis(model, num_ws: int, w_dim: int):  # type: ignore[no-untyped-def]
    """Rebuild the synthesis graph with a `[N, num_ws, w_dim]` input, one row per style input."""
    import openvino as ov
    import openvino.opset13 as ops

    (old,) = model.get_parameters()
    ws = ops.parameter([-1, num_ws, w_dim], np.float32, name="ws")
    rows: dict[int, object] = {}
    num_blocks = (num_ws - 2) // 3
    used = set()
    for target in list(old.output(0).get_target_inputs()):
        node = target.get_node()
        index = 0  # shape-only consumers (batch size) read row 0
        if node.get_type_name() == "MatMul":
            weight = node.input_value(1).get_node()
            found = style_index(weight.get_friendly_name(), num_blocks)
            if found is None:
                raise WeightsError(f"unexpected consumer of the style input: {node.get_friendly_name()}")
            index = found
            used.add(index)
        if index not in rows:
            rows[index] = ops.gather(ws, ops.constant(np.int64(index)), ops.constant(np.int64(1)))
        target.replace_source_output(rows[index].output(0))  # type: ignore[attr-defined]
    if used != set(range(num_ws)):
        raise WeightsError(f"the synthesis IR has style inputs {sorted(used)}, expected 0..{num_ws - 1}")
    return ov.Model(model.get_results(), [ws], "synthesis_wplus")


class OpenVINOGenerator:
    """`Generator` contract over (mapping, synthesis) IR pairs, run by the OpenVINO CPU plugin."""

    def __init__(self, mapping_xml: Path, synthesis_xml: Path, *, name: str, num_ws: int,
                 w_avg: np.ndarray, threads: int | None = None) -> None:
        import openvino as ov

        core = ov.Core()
        config: dict[str, object] = {"INFERENCE_PRECISION_HINT": "f32"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        try:
            mapping = core.read_model(str(mapping_xml))
            synthesis = core.read_model(str(synthesis_xml))
        except RuntimeError as exc:
            raise WeightsError(f"OpenVINO cannot read {synthesis_xml.parent}: {exc}; "
                               "run `facelatent weights verify`") from exc
        self.z_dim = int(mapping.inputs[0].get_partial_shape()[1].get_length())
        self.w_dim = int(synthesis.inputs[0].get_partial_shape()[1].get_length())
        self.num_ws = num_ws
        mapping.reshape({mapping.inputs[0]: ov.PartialShape([-1, self.z_dim])})
        synthesis = _wplus_synthesis(synthesis, num_ws, self.w_dim)
        self._mapping = core.compile_model(mapping, "CPU", config)
        self._synthesis = core.compile_model(synthesis, "CPU", config)
        self.resolution = int(self._synthesis.outputs[0].get_partial_shape()[-1].get_length())
        self.name = name
        self.device = torch.device("cpu")
        self._w_avg = torch.from_numpy(np.asarray(w_avg, dtype=np.float32))

    @property
    def w_avg(self) -> torch.Tensor:
        return self._w_avg

    def mapping_raw(self, z: torch.Tensor) -> torch.Tensor:
        """Mapping network output without truncation, `[N, w_dim]`."""
        out = self._mapping(z.detach().cpu().numpy().astype(np.float32, copy=False))
        return torch.from_numpy(np.array(out[0]))

    def mapping(self, z: torch.Tensor, truncation_psi: float = 1.0) -> torch.Tensor:
        check_z(z, self.z_dim)
        return truncate(self.mapping_raw(z), self._w_avg, truncation_psi)

    def synthesis(self, ws: torch.Tensor) -> torch.Tensor:
        ws = check_ws(ws, self.w_dim, self.num_ws)
        arr = np.ascontiguousarray(ws.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(np.array(self._synthesis(arr)[0]))
