"""Read an ONNX graph with the `onnx` package, fold its constant subgraphs, hand out its weights.

The face models ship as ONNX files, several of them int8 *block-quantised*: each weight is stored
as int8 values plus a float scale and an int8 zero point per block of values, and the graph turns
it back into float32 with ``DequantizeLinear`` (and a ``Reshape`` to the conv shape) at run time.
A native PyTorch port wants plain float32 tensors, so this reader evaluates every node whose
inputs are all constants (dequantise, reshape, cast, transpose, ...) once, with numpy, and keeps
only the nodes that compute on activations. It never runs the network itself.

Two quirks of exported files are handled here:

- Old exporters list every weight as a graph input too; newer quantisers replace a weight by its
  quantised form but leave the old name behind as an input that no node reads. Inputs that are
  initialisers, or that nothing consumes, are *stale* and dropped; only real data inputs remain.
- Initialisers that no node reads (leftover shapes) are dead and listed in ``dead_initializers``.

Like :class:`facelatent.formats.ir.IRGraph`, the graph counts which constants a loader has
taken, so the loader can fail on any constant it did not map.

:func:`reference_session` is the other direction: onnxruntime running the file itself, after the
same clean-up, as the reference the ports are tested and benchmarked against.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from facelatent.errors import WeightsError

if TYPE_CHECKING:
    import onnxruntime

__all__ = ["OnnxGraph", "OnnxNode", "dequantize_linear", "reference_session"]


@dataclass
class OnnxNode:
    """One node that computes on activations; constant inputs are resolved in ``constants``."""

    op_type: str
    name: str
    inputs: tuple[str, ...]       # tensor names; "" where an optional input is left out
    outputs: tuple[str, ...]
    attrs: dict[str, Any]         # attribute values as Python/numpy objects
    constants: dict[int, np.ndarray] = field(default_factory=dict)  # input position -> value


def dequantize_linear(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None = None,
                      axis: int = 1, block_size: int = 0) -> np.ndarray:
    """ONNX ``DequantizeLinear`` (opset 10-21): ``(x - zero_point) * scale`` as float32.

    Per tensor when ``scale`` has one value; per axis when it is 1-D along ``axis``; blocked
    (opset 21) when ``block_size`` > 0: ``scale`` has x's rank and ceil(x.shape[axis] / block_size)
    entries along ``axis``, element i using entry i // block_size. The integer difference is exact
    and is multiplied by the float32 scale once, as onnxruntime does.
    """
    if zero_point is None:
        zero_point = np.zeros_like(scale, dtype=np.int32)
    if zero_point.shape != scale.shape:
        raise WeightsError(f"DequantizeLinear: zero point shape {zero_point.shape} differs from "
                           f"scale shape {scale.shape}")
    axis = axis + x.ndim if axis < 0 else axis
    if scale.size == 1 and block_size == 0:
        s, z = scale.reshape(()), zero_point.reshape(())
    elif block_size == 0:
        if scale.ndim != 1 or scale.shape[0] != x.shape[axis]:
            raise WeightsError(f"DequantizeLinear: per-axis scale {scale.shape} does not fit "
                               f"axis {axis} of {x.shape}")
        shape = [1] * x.ndim
        shape[axis] = -1
        s, z = scale.reshape(shape), zero_point.reshape(shape)
    else:
        blocks = -(-x.shape[axis] // block_size)
        expected = x.shape[:axis] + (blocks,) + x.shape[axis + 1:]
        if scale.shape != expected:
            raise WeightsError(f"DequantizeLinear: blocked scale {scale.shape} does not fit "
                               f"{x.shape} with block_size {block_size} on axis {axis} "
                               f"(expected {expected})")
        take = np.arange(x.shape[axis]) // block_size
        s, z = np.take(scale, take, axis=axis), np.take(zero_point, take, axis=axis)
    diff = x.astype(np.int32) - z.astype(np.int32)
    return (diff.astype(np.float32) * s.astype(np.float32)).astype(np.float32)


def _constant_value(attrs: dict[str, Any]) -> np.ndarray:
    for key, dtype in (("value", None), ("value_float", np.float32), ("value_floats", np.float32),
                       ("value_int", np.int64), ("value_ints", np.int64)):
        if key in attrs:
            value = attrs[key]
            return numpy_helper.to_array(value) if dtype is None else np.asarray(value, dtype)
    raise WeightsError(f"Constant node with unsupported attributes {sorted(attrs)}")


def _reshape(data: np.ndarray, shape: np.ndarray, allowzero: int = 0) -> np.ndarray:
    target = [int(d) for d in shape]
    if not allowzero:
        target = [data.shape[i] if d == 0 else d for i, d in enumerate(target)]
    return data.reshape(target)


# Ops folded when every input is a constant: op -> fn(attrs, *inputs) -> outputs.
_FOLDERS: dict[str, Callable[..., list[np.ndarray]]] = {
    "Constant": lambda a: [_constant_value(a)],
    "Identity": lambda a, x: [x],
    "DequantizeLinear": lambda a, x, s, z=None: [dequantize_linear(
        x, s, z, axis=int(a.get("axis", 1)), block_size=int(a.get("block_size", 0)))],
    "Reshape": lambda a, x, shape: [_reshape(x, shape, int(a.get("allowzero", 0)))],
    "Cast": lambda a, x: [x.astype(helper.tensor_dtype_to_np_dtype(int(a["to"])))],
    "Transpose": lambda a, x: [np.transpose(x, a.get("perm"))],
}


class OnnxGraph:
    """An ONNX model's activation nodes in topological order, with folded float32 constants.

    ``inputs``: the real data inputs (stale names dropped, listed in ``stale_inputs``);
    ``outputs``: graph output names; ``nodes``: the nodes that read activations, in an order where
    every node comes after its producers; ``constants``: every constant a node reads, by name.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            model = onnx.load(str(self.path))
        except Exception as exc:  # onnx raises DecodeError, OSError, ... for bad files
            raise WeightsError(f"cannot read ONNX model {self.path}: {exc}; run "
                               "`facelatent weights verify`") from exc
        graph = model.graph
        self.opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                         default=0)
        values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        initializer_names = set(values)
        read = {name for node in graph.node for name in node.input if name}
        self.outputs = [o.name for o in graph.output]
        self.inputs = [i.name for i in graph.input
                       if i.name not in initializer_names and i.name in read]
        self.stale_inputs = [i.name for i in graph.input if i.name not in self.inputs]
        self.nodes: list[OnnxNode] = []
        for proto in self._topological(graph, set(self.inputs) | initializer_names):
            attrs = {a.name: helper.get_attribute_value(a) for a in proto.attribute}
            ins = [name for name in proto.input if name]
            if proto.op_type in _FOLDERS and all(name in values for name in ins):
                if len(proto.output) != 1:
                    raise WeightsError(f"{self.path}: {proto.op_type} {proto.name!r} has "
                                       f"{len(proto.output)} outputs, expected 1")
                args = [values[name] if name else None for name in proto.input]
                try:
                    (values[proto.output[0]],) = _FOLDERS[proto.op_type](attrs, *args)
                except (ValueError, IndexError, TypeError) as exc:
                    raise WeightsError(f"{self.path}: cannot fold {proto.op_type} "
                                       f"{proto.name!r}: {exc}") from exc
                continue
            node = OnnxNode(proto.op_type, proto.name, tuple(proto.input), tuple(proto.output),
                            attrs)
            node.constants = {i: values[n] for i, n in enumerate(proto.input) if n in values}
            self.nodes.append(node)
        live = {node.inputs[i] for node in self.nodes for i in node.constants}
        self.constants = {name: _as_float32(values[name]) for name in sorted(live)}
        for node in self.nodes:
            node.constants = {i: self.constants[node.inputs[i]] for i in node.constants}
        self.dead_initializers = sorted(initializer_names - read - set(self.outputs))
        self._producer = {out: node for node in self.nodes for out in node.outputs}
        self._taken: set[str] = set()

    def _topological(self, graph: onnx.GraphProto, available: set[str]) -> list[onnx.NodeProto]:
        """Kahn's algorithm, keeping the file's order among nodes that are ready together."""
        pending = list(graph.node)
        known = set(available)
        ordered: list[onnx.NodeProto] = []
        while pending:
            ready = [n for n in pending if all(not i or i in known for i in n.input)]
            if not ready:
                missing = sorted({i for n in pending for i in n.input if i and i not in known})
                raise WeightsError(f"{self.path}: graph has a cycle or reads tensors nothing "
                                   f"produces: {missing[:5]}")
            ordered.extend(ready)
            for node in ready:
                known.update(node.output)
            ready_ids = {id(n) for n in ready}
            pending = [n for n in pending if id(n) not in ready_ids]
        return ordered

    # --- navigation -----------------------------------------------------------------------
    def producer(self, name: str) -> OnnxNode | None:
        """The node computing activation ``name``; None for graph inputs and constants."""
        return self._producer.get(name)

    def consumers(self, name: str) -> list[OnnxNode]:
        return [n for n in self.nodes if name in n.inputs]

    # --- constants ------------------------------------------------------------------------
    def take(self, name: str, shape: tuple[int, ...] | None = None, what: str = "") -> np.ndarray:
        """A constant's value, marked as used (each one may be taken once); checks ``shape``."""
        if name not in self.constants:
            raise WeightsError(f"{self.path}: {name!r} is not a constant of this graph; is this "
                               "the right model file? run `facelatent weights verify`")
        if name in self._taken:
            raise WeightsError(f"{self.path}: constant {name!r} used twice")
        value = self.constants[name]
        if shape is not None and tuple(value.shape) != tuple(shape):
            raise WeightsError(f"{self.path}: {what or name} has shape {tuple(value.shape)}, "
                               f"expected {tuple(shape)}; the file does not match this "
                               "architecture")
        self._taken.add(name)
        return value.copy()

    def take_scalar(self, name: str, expected: float, what: str, rtol: float = 1e-6) -> float:
        """Take a one-value constant and check it equals the architecture's value."""
        value = self.take(name)
        if value.size != 1 or not np.allclose(value, expected, rtol=rtol, atol=0):
            raise WeightsError(f"{self.path}: {what} is {value.ravel()[:4]}, expected {expected}")
        return float(value.ravel()[0])

    def check_all_taken(self) -> None:
        """Fail if any constant read by a node was not mapped by the loader."""
        left = [name for name in self.constants if name not in self._taken]
        if left:
            raise WeightsError(f"{self.path}: {len(left)} constants were not used by the loader "
                               f"(first: {left[:5]}); the file does not match this architecture")


def _as_float32(value: np.ndarray) -> np.ndarray:
    """Floating constants as float32; integer ones (shapes, axes) unchanged."""
    return value.astype(np.float32) if np.issubdtype(value.dtype, np.floating) else value


# --- onnxruntime on the file, as the reference ------------------------------------------------

def reference_session(path_or_model: str | Path | onnx.ModelProto, fold_dequantize: bool = False,
                      threads: int = 1, extra_outputs: Sequence[str] = (),
                      ) -> onnxruntime.InferenceSession:
    """An onnxruntime CPU session on a cleaned copy of an ONNX model (the file is not changed).

    The copy has the stale inputs dropped (see the module docstring) and a dynamic first
    (batch) dimension on every input and output, named "N"; graphs whose reshapes fix the batch
    (YuNet's) still run one image at a time. ``fold_dequantize``: replace each DequantizeLinear
    whose inputs are all initialisers by its float32 value (:func:`dequantize_linear`); YuNet
    needs it, as its int8 file gives ``block_size`` to per-tensor scales, which onnxruntime
    rejects. ``threads``: onnxruntime's intra-op threads (inter-op: 1); they never spin, since
    spinning threads starve PyTorch's on a small CPU. ``extra_outputs``: names of intermediate
    float tensors to add as outputs (e.g. the logits before a softmax), after the graph's own.
    """
    import onnxruntime as ort

    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive int, got {threads!r}")
    if isinstance(path_or_model, onnx.ModelProto):
        model = onnx.ModelProto()
        model.CopyFrom(path_or_model)
    else:
        try:
            model = onnx.load(str(path_or_model))
        except Exception as exc:  # onnx raises DecodeError, OSError, ... for bad files
            raise WeightsError(f"cannot read ONNX model {path_or_model}: {exc}; run "
                               "`facelatent weights verify`") from exc
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    read = {name for node in graph.node for name in node.input if name}
    keep = [i for i in graph.input if i.name not in inits and i.name in read]
    del graph.input[:]
    graph.input.extend(keep)
    for value in list(graph.input) + list(graph.output):
        dims = value.type.tensor_type.shape.dim
        if len(dims):
            dims[0].dim_param = "N"   # also clears a fixed dim_value (they are one field)
    produced = {name for node in graph.node for name in node.output}
    have = {o.name for o in graph.output}
    for name in extra_outputs:
        if name not in produced:
            raise ValueError(f"extra_outputs: no node of {graph.name!r} computes {name!r}")
        if name not in have:
            graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
            have.add(name)
    if fold_dequantize:
        nodes = []
        for node in graph.node:
            if node.op_type == "DequantizeLinear" and all(n in inits for n in node.input if n):
                x, scale, *zero = (numpy_helper.to_array(inits[n]) if n else None
                                   for n in node.input)
                attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
                value = dequantize_linear(x, scale, zero[0] if zero else None,
                                          int(attrs.get("axis", 1)),
                                          int(attrs.get("block_size", 0)))
                graph.initializer.append(numpy_helper.from_array(value, node.output[0]))
            else:
                nodes.append(node)
        del graph.node[:]
        graph.node.extend(nodes)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])
