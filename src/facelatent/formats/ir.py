"""Read OpenVINO IR v10 files (`.xml` graph + `.bin` constants) with numpy.

The native PyTorch generators load their weights from the same IR files that the OpenVINO
backend runs, so both backends share one verified set of model files. This reader knows the
graph (layers, edges) and the constant blobs; it never executes anything. It keeps count of
which float constants a loader has taken so the loader can fail on any it did not use.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facelatent.errors import WeightsError

_DTYPES = {"f32": np.float32, "f16": np.float16, "i64": np.int64, "i32": np.int32, "u8": np.uint8}


@dataclass
class IRLayer:
    id: str
    type: str
    name: str
    attrs: dict[str, str]
    inputs: list[tuple[str, str]] = field(default_factory=list)  # (producer id, port) per input port


class IRGraph:
    """An IR graph with its constants; `take*` methods hand out float constants exactly once."""

    def __init__(self, xml_path: str | Path, bin_path: str | Path) -> None:
        self.path = Path(xml_path)
        try:
            root = ET.parse(xml_path).getroot()
            blob = np.fromfile(bin_path, dtype=np.uint8)
        except (OSError, ET.ParseError) as exc:
            raise WeightsError(f"cannot read IR {xml_path}: {exc}") from exc
        self.layers: dict[str, IRLayer] = {}
        self._values: dict[str, np.ndarray] = {}
        layers_node, edges_node = root.find("layers"), root.find("edges")
        if layers_node is None or edges_node is None:
            raise WeightsError(f"{xml_path} is not an OpenVINO IR graph (no layers/edges); "
                               "run `facelatent weights fetch`")
        for node in layers_node:
            data = node.find("data")
            attrs = dict(data.attrib) if data is not None else {}
            layer = IRLayer(node.get("id", ""), node.get("type", ""), node.get("name", ""), attrs)
            self.layers[layer.id] = layer
            if layer.type == "Const":
                self._values[layer.id] = self._read_const(attrs, blob)
        ports: dict[str, dict[int, tuple[str, str]]] = {}
        self._consumers: dict[str, list[str]] = {}
        for edge in edges_node:
            src, dst = edge.get("from-layer", ""), edge.get("to-layer", "")
            ports.setdefault(dst, {})[int(edge.get("to-port", "0"))] = (src, edge.get("from-port", ""))
            self._consumers.setdefault(src, []).append(dst)
        for lid, by_port in ports.items():
            self.layers[lid].inputs = [by_port[p] for p in sorted(by_port)]
        self._by_name = {l.name: l for l in self.layers.values() if l.type == "Const"}
        self._taken: set[str] = set()

    def _read_const(self, attrs: dict[str, str], blob: np.ndarray) -> np.ndarray:
        dtype = _DTYPES.get(attrs.get("element_type", ""))
        if dtype is None:
            raise WeightsError(f"{self.path}: unsupported constant type {attrs.get('element_type')}")
        try:
            offset, size = int(attrs["offset"]), int(attrs["size"])
            shape = [int(d) for d in attrs.get("shape", "").split(",") if d.strip()]
        except (KeyError, ValueError) as exc:
            raise WeightsError(f"{self.path}: malformed constant ({exc}); "
                               "run `facelatent weights fetch`") from exc
        if offset + size > blob.size:
            raise WeightsError(f"{self.path}: constant data runs past the end of the .bin file "
                               "(truncated download?); run `facelatent weights fetch`")
        try:
            return blob[offset:offset + size].view(dtype).reshape(shape)
        except ValueError as exc:
            raise WeightsError(f"{self.path}: constant size does not match its shape {shape}; "
                               "run `facelatent weights fetch`") from exc

    # --- navigation -----------------------------------------------------------------------
    def consumers(self, layer: IRLayer) -> list[IRLayer]:
        return [self.layers[i] for i in self._consumers.get(layer.id, [])]

    def only_consumer(self, layer: IRLayer, type_: str) -> IRLayer:
        found = [c for c in self.consumers(layer) if c.type == type_]
        if len(found) != 1:
            raise WeightsError(f"{self.path}: expected one {type_} after {layer.name!r}, "
                               f"found {[c.type for c in self.consumers(layer)]}")
        return found[0]

    def producer(self, layer: IRLayer, port: int) -> IRLayer:
        return self.layers[layer.inputs[port][0]]

    def const_input(self, layer: IRLayer) -> IRLayer:
        """The single Const input of `layer` (for weights, biases and scalars of an op)."""
        consts = [self.producer(layer, p) for p in range(len(layer.inputs))
                  if self.producer(layer, p).type == "Const"]
        if len(consts) != 1:
            raise WeightsError(f"{self.path}: expected one constant input to {layer.name!r}")
        return consts[0]

    def other_input(self, layer: IRLayer, exclude: IRLayer) -> IRLayer:
        others = [self.producer(layer, p) for p in range(len(layer.inputs))
                  if layer.inputs[p][0] != exclude.id]
        if len(others) != 1:
            raise WeightsError(f"{self.path}: {layer.name!r} does not have two inputs")
        return others[0]

    # --- constants ------------------------------------------------------------------------
    def const_layer(self, name: str) -> IRLayer:
        try:
            return self._by_name[name]
        except KeyError:
            raise WeightsError(f"{self.path}: tensor {name!r} not found; is this the right "
                               "model file? run `facelatent weights verify`") from None

    def take(self, layer: IRLayer) -> np.ndarray:
        """Value of a Const layer, marking it as used (each float constant may be used once)."""
        if layer.type != "Const":
            raise WeightsError(f"{self.path}: {layer.name!r} is a {layer.type}, not a constant")
        if layer.id in self._taken:
            raise WeightsError(f"{self.path}: constant {layer.name!r} used twice")
        self._taken.add(layer.id)
        return np.array(self._values[layer.id], dtype=np.float32)

    def take_named(self, name: str) -> np.ndarray:
        return self.take(self.const_layer(name))

    def take_scalar(self, layer: IRLayer, expected: float, what: str, rtol: float = 1e-5) -> float:
        """Take a scalar constant and check it equals the architecture's value."""
        value = self.take(layer)
        if value.size != 1 or not np.allclose(value, expected, rtol=rtol, atol=0):
            raise WeightsError(f"{self.path}: {what} is {value.ravel()[:4]}, expected {expected}")
        return float(value.ravel()[0])

    def float_consts(self) -> list[IRLayer]:
        return [l for l in self.layers.values()
                if l.type == "Const" and l.attrs.get("element_type") in ("f32", "f16")]

    def check_all_taken(self) -> None:
        """Fail if any float constant of the graph was not mapped onto the module."""
        left = [l.name for l in self.float_consts() if l.id not in self._taken]
        if left:
            raise WeightsError(f"{self.path}: {len(left)} tensors were not used by the loader "
                               f"(first: {left[:5]}); the file does not match this architecture")
