"""Read a TFLite flatbuffer into plain Python: tensors with their data, operators with options.

Only reading, no execution: the graph is rebuilt by hand as a PyTorch module elsewhere (one
architecture per file), and this module gives that loader what it needs to map every constant
explicitly. Parsing uses the flatbuffer schema from the ``tflite`` PyPI package (pure Python).

Weights stored as float16 are handed out as float32. TFLite keeps such weights behind
``DEQUANTIZE`` ops (fp16 constant -> fp32 tensor); :class:`TFLiteGraph` folds those ops away, so
the consuming op reads the fp16 constant directly (converted to float32), exactly what the
reference interpreter computes in float32 mode.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["TFLiteGraph", "TFLiteOperator", "TFLiteTensor"]

# TensorType enum value -> numpy dtype, for the types a float model's constants use.
_NUMPY_DTYPES = {
    "FLOAT32": np.float32, "FLOAT16": np.float16, "FLOAT64": np.float64,
    "INT8": np.int8, "UINT8": np.uint8, "INT16": np.int16, "INT32": np.int32,
    "INT64": np.int64, "BOOL": np.bool_,
}


def _enum_names(enum_class: type) -> dict[int, str]:
    """The flatbuffer enum class's value -> name table (they are plain classes of ints)."""
    return {v: k for k, v in vars(enum_class).items() if not k.startswith("_") and isinstance(v, int)}


def _snake(name: str) -> str:
    """``StrideH`` -> ``stride_h``, ``FusedActivationFunction`` -> ``fused_activation_function``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


@dataclass(frozen=True)
class TFLiteTensor:
    """One tensor of the graph.

    ``dtype`` is the file's type name ("FLOAT32", "FLOAT16", "INT32", ...). ``data`` is the
    constant's value (float16 converted to float32, shape ``shape``), or None for activations.
    """

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    data: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def is_constant(self) -> bool:
        return self.data is not None


@dataclass(frozen=True)
class TFLiteOperator:
    """One operator: ``op`` is the builtin name ("CONV_2D"); ``inputs``/``outputs`` are tensor
    indices (-1 for an optional input left out); ``options`` the builtin options in snake case,
    with enums as names (``{"padding": "SAME", "stride_h": 2, "fused_activation_function":
    "RELU", ...}``)."""

    index: int
    op: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: dict[str, Any] = field(compare=False)


class TFLiteGraph:
    """The first subgraph of a ``.tflite`` file, with DEQUANTIZE-of-constant ops folded away.

    Attributes: ``tensors`` (list indexed by tensor index), ``operators`` (execution order,
    without the folded DEQUANTIZE ops), ``inputs`` and ``outputs`` (tensor indices).
    """

    def __init__(self, tensors: list[TFLiteTensor], operators: list[TFLiteOperator],
                 inputs: tuple[int, ...], outputs: tuple[int, ...]) -> None:
        self.tensors = tensors
        self.operators = operators
        self.inputs = inputs
        self.outputs = outputs

    @classmethod
    def from_file(cls, path: str | Path) -> TFLiteGraph:
        """Parse ``path``; ValueError if it is not a readable TFLite flatbuffer."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ValueError(f"cannot read TFLite file {path}: {exc}") from exc
        return cls.from_bytes(data, source=str(path))

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "<bytes>") -> TFLiteGraph:
        """Parse a flatbuffer held in memory (``source`` only names it in errors)."""
        import tflite  # the schema package; imported here so importing facelatent stays light

        if len(data) < 8 or data[4:8] != b"TFL3":
            raise ValueError(f"{source} is not a TFLite flatbuffer (no 'TFL3' identifier)")
        model = tflite.Model.GetRootAsModel(data, 0)
        if model.SubgraphsLength() < 1:
            raise ValueError(f"{source} holds no subgraph")
        graph = model.Subgraphs(0)
        type_names = _enum_names(tflite.TensorType)
        op_names = _enum_names(tflite.BuiltinOperator)

        tensors = []
        for i in range(graph.TensorsLength()):
            t = graph.Tensors(i)
            dtype = type_names.get(t.Type(), f"TYPE_{t.Type()}")
            shape = tuple(int(s) for s in t.ShapeAsNumpy()) if t.ShapeLength() else ()
            tensors.append(TFLiteTensor(i, t.Name().decode("utf-8"), shape, dtype,
                                        _constant(model, t, dtype, shape, data, source)))

        operators = []
        for i in range(graph.OperatorsLength()):
            o = graph.Operators(i)
            code = model.OperatorCodes(o.OpcodeIndex())
            # Newer files keep codes above 127 in BuiltinCode, older ones in the deprecated byte.
            op = op_names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "UNKNOWN")
            operators.append(TFLiteOperator(
                i, op,
                tuple(int(k) for k in o.InputsAsNumpy()) if o.InputsLength() else (),
                tuple(int(k) for k in o.OutputsAsNumpy()) if o.OutputsLength() else (),
                _options(tflite, o)))

        inputs = tuple(int(k) for k in graph.InputsAsNumpy())
        outputs = tuple(int(k) for k in graph.OutputsAsNumpy())
        return cls._fold_dequantize(tensors, operators, inputs, outputs)

    @classmethod
    def _fold_dequantize(cls, tensors: list[TFLiteTensor], operators: list[TFLiteOperator],
                         inputs: tuple[int, ...], outputs: tuple[int, ...]) -> TFLiteGraph:
        """Drop each DEQUANTIZE whose input is a float16 constant; its readers read the constant."""
        alias: dict[int, int] = {}
        kept = []
        for op in operators:
            if (op.op == "DEQUANTIZE" and len(op.inputs) == 1 and len(op.outputs) == 1
                    and tensors[op.inputs[0]].is_constant
                    and tensors[op.inputs[0]].dtype == "FLOAT16"):
                alias[op.outputs[0]] = op.inputs[0]
                continue
            kept.append(op)
        folded = [
            TFLiteOperator(op.index, op.op, tuple(alias.get(k, k) for k in op.inputs),
                           op.outputs, op.options)
            for op in kept
        ]
        return cls(tensors, folded, inputs, outputs)

    def constants(self) -> list[TFLiteTensor]:
        """Every tensor that holds data (weights, biases, shape and padding operands)."""
        return [t for t in self.tensors if t.is_constant]

    def op_counts(self) -> dict[str, int]:
        """How many operators of each kind the (folded) graph has."""
        counts: dict[str, int] = {}
        for op in self.operators:
            counts[op.op] = counts.get(op.op, 0) + 1
        return counts


def _constant(model: Any, tensor: Any, dtype: str, shape: tuple[int, ...], data: bytes,
              source: str) -> np.ndarray | None:
    """A constant tensor's value as numpy (float16 -> float32), or None for an activation."""
    buffer = model.Buffers(tensor.Buffer())
    if buffer is None:
        return None
    raw: bytes
    if buffer.DataLength():
        raw = buffer.DataAsNumpy().tobytes()
    elif buffer.Offset() > 1:  # files over 2 GB keep buffers after the flatbuffer
        raw = data[buffer.Offset(): buffer.Offset() + buffer.Size()]
    else:
        return None
    if dtype not in _NUMPY_DTYPES:
        raise ValueError(f"{source}: constant {tensor.Name().decode()!r} has type {dtype}, "
                         f"which this reader does not handle")
    arr = np.frombuffer(raw, dtype=_NUMPY_DTYPES[dtype])
    if arr.size != int(np.prod(shape, dtype=np.int64)):
        raise ValueError(f"{source}: constant {tensor.Name().decode()!r} holds {arr.size} values "
                         f"for shape {list(shape)}")
    arr = arr.reshape(shape)
    return arr.astype(np.float32) if dtype == "FLOAT16" else arr.copy()


def _options(tflite: Any, op: Any) -> dict[str, Any]:
    """An operator's builtin options as a dict, read through the schema's generated accessors."""
    kind = _enum_names(tflite.BuiltinOptions).get(op.BuiltinOptionsType(), "NONE")
    table = op.BuiltinOptions()
    if kind == "NONE" or table is None or not hasattr(tflite, kind):
        return {}
    opts = getattr(tflite, kind)()
    opts.Init(table.Bytes, table.Pos)
    enums = {"Padding": _enum_names(tflite.Padding),
             "FusedActivationFunction": _enum_names(tflite.ActivationFunctionType)}
    out: dict[str, Any] = {}
    for name in dir(opts):
        if not name[:1].isupper() or name.startswith(("GetRootAs", "Init")) \
                or name.endswith(("BufferHasIdentifier", "IsNone", "Length", "AsNumpy")):
            continue
        accessor = getattr(opts, name)
        if not callable(accessor) or accessor.__code__.co_argcount != 1:
            continue  # vector element accessors take an index; their AsNumpy form is skipped too
        value = accessor()
        out[_snake(name)] = enums[name].get(value, value) if name in enums else value
    return out
