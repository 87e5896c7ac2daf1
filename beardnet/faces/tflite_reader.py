"""A minimal TFLite flatbuffer reader: tensors, constant buffers and operators of subgraph 0.

Only what a small float model needs (BlazeFace): float32/float16/int32 constant buffers and the
builtin options of the ops listed in ``OPS``. Field slots follow TensorFlow Lite's
``schema.fbs`` (slot ``i`` sits at vtable offset ``4 + 2 * i``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flatbuffers import number_types as nt
from flatbuffers.table import Table

#: Builtin operator codes (schema.fbs ``BuiltinOperator``) this reader names.
OPS = {
    0: "ADD", 2: "CONCATENATION", 3: "CONV_2D", 4: "DEPTHWISE_CONV_2D", 6: "DEQUANTIZE",
    14: "LOGISTIC", 17: "MAX_POOL_2D", 18: "MUL", 19: "RELU", 21: "RELU6", 22: "RESHAPE",
    23: "RESIZE_BILINEAR", 34: "PAD", 54: "PRELU", 1: "AVERAGE_POOL_2D",
}
#: Tensor types (schema.fbs ``TensorType``) -> numpy dtypes.
DTYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 9: np.int8}
#: Fused activations (schema.fbs ``ActivationFunctionType``).
ACTIVATIONS = {0: None, 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH"}
#: Builtin option tables: op name -> field names by slot (scalar fields only) and defaults.
_OPTIONS: dict[str, tuple[tuple[str, Any, Any], ...]] = {
    # (name, flatbuffers number type, default)
    "CONV_2D": (("padding", nt.Int8Flags, 0), ("stride_w", nt.Int32Flags, 0),
                ("stride_h", nt.Int32Flags, 0), ("activation", nt.Int8Flags, 0),
                ("dilation_w", nt.Int32Flags, 1), ("dilation_h", nt.Int32Flags, 1)),
    "DEPTHWISE_CONV_2D": (("padding", nt.Int8Flags, 0), ("stride_w", nt.Int32Flags, 0),
                          ("stride_h", nt.Int32Flags, 0), ("depth_multiplier", nt.Int32Flags, 0),
                          ("activation", nt.Int8Flags, 0), ("dilation_w", nt.Int32Flags, 1),
                          ("dilation_h", nt.Int32Flags, 1)),
    "MAX_POOL_2D": (("padding", nt.Int8Flags, 0), ("stride_w", nt.Int32Flags, 0),
                    ("stride_h", nt.Int32Flags, 0), ("filter_w", nt.Int32Flags, 0),
                    ("filter_h", nt.Int32Flags, 0), ("activation", nt.Int8Flags, 0)),
    "ADD": (("activation", nt.Int8Flags, 0),),
    "MUL": (("activation", nt.Int8Flags, 0),),
    "CONCATENATION": (("axis", nt.Int32Flags, 0), ("activation", nt.Int8Flags, 0)),
}
_OPTIONS["AVERAGE_POOL_2D"] = _OPTIONS["MAX_POOL_2D"]


@dataclass
class TfTensor:
    """A tensor: name, shape, numpy dtype and constant data (None for activations)."""

    name: str
    shape: tuple[int, ...]
    dtype: Any
    data: np.ndarray | None


@dataclass
class TfOp:
    """An operator: builtin name, input/output tensor indices (-1: absent) and options."""

    op: str
    inputs: list[int]
    outputs: list[int]
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class TfModel:
    """Subgraph 0 of a TFLite model."""

    tensors: list[TfTensor]
    ops: list[TfOp]
    inputs: list[int]
    outputs: list[int]


def _sub(t: Table, slot: int) -> Table | None:
    """The sub-table at field ``slot`` of ``t`` (None when absent)."""
    o = t.Offset(4 + 2 * slot)
    return Table(t.Bytes, t.Indirect(t.Pos + o)) if o else None


def _vec_tables(t: Table, slot: int) -> list[Table]:
    o = t.Offset(4 + 2 * slot)
    if not o:
        return []
    start, n = t.Vector(o), t.VectorLen(o)
    return [Table(t.Bytes, t.Indirect(start + 4 * i)) for i in range(n)]


def _vec_np(t: Table, slot: int, dtype: Any) -> np.ndarray:
    o = t.Offset(4 + 2 * slot)
    if not o:
        return np.zeros(0, dtype)
    start, n = t.Vector(o), t.VectorLen(o)
    return np.frombuffer(t.Bytes, dtype=dtype, count=n, offset=start)


def _scalar(t: Table, slot: int, flags: Any, default: Any) -> Any:
    o = t.Offset(4 + 2 * slot)
    return t.Get(flags, t.Pos + o) if o else default


def _string(t: Table, slot: int) -> str:
    o = t.Offset(4 + 2 * slot)
    return t.String(t.Pos + o).decode("utf-8") if o else ""


def read_tflite(path: str) -> TfModel:
    """Parse ``path`` (a .tflite file) into a :class:`TfModel` of its first subgraph."""
    with open(path, "rb") as f:
        buf = bytearray(f.read())
    model = Table(buf, nt.UOffsetTFlags.py_type(int.from_bytes(buf[0:4], "little")))
    # Model: version 0, operator_codes 1, subgraphs 2, description 3, buffers 4.
    codes = []
    for oc in _vec_tables(model, 1):
        # OperatorCode: deprecated_builtin_code (int8) 0, custom_code 1, version 2,
        # builtin_code (int32) 3 -- the larger of the two is the real code.
        code = max(_scalar(oc, 0, nt.Int8Flags, 0), _scalar(oc, 3, nt.Int32Flags, 0))
        codes.append(OPS.get(code, f"OP_{code}"))
    buffers = [_vec_np(b, 0, np.uint8) for b in _vec_tables(model, 4)]  # Buffer.data: slot 0
    sub = _vec_tables(model, 2)[0]
    tensors = []
    # SubGraph: tensors 0, inputs 1, outputs 2, operators 3, name 4.
    for t in _vec_tables(sub, 0):
        # Tensor: shape 0, type 1, buffer 2, name 3.
        shape = tuple(int(s) for s in _vec_np(t, 0, np.int32))
        dtype = DTYPES.get(_scalar(t, 1, nt.Int8Flags, 0), np.float32)
        bi = _scalar(t, 2, nt.Uint32Flags, 0)
        raw = buffers[bi] if bi < len(buffers) else np.zeros(0, np.uint8)
        data = raw.view(dtype).reshape(shape).copy() if raw.size else None
        tensors.append(TfTensor(_string(t, 3), shape, dtype, data))
    ops = []
    # Operator: opcode_index 0, inputs 1, outputs 2, builtin_options_type 3, builtin_options 4.
    for o in _vec_tables(sub, 3):
        name = codes[_scalar(o, 0, nt.Uint32Flags, 0)]
        opts: dict[str, Any] = {}
        tab = _sub(o, 4)
        if tab is not None and name in _OPTIONS:
            for slot, (key, flags, default) in enumerate(_OPTIONS[name]):
                opts[key] = _scalar(tab, slot, flags, default)
            if "activation" in opts:
                opts["activation"] = ACTIVATIONS.get(opts["activation"], opts["activation"])
            if "padding" in opts:
                opts["padding"] = "SAME" if opts["padding"] == 0 else "VALID"
        ops.append(TfOp(name, [int(i) for i in _vec_np(o, 1, np.int32)],
                        [int(i) for i in _vec_np(o, 2, np.int32)], opts))
    return TfModel(tensors, ops, [int(i) for i in _vec_np(sub, 1, np.int32)],
                   [int(i) for i in _vec_np(sub, 2, np.int32)])
