"""Convert MediaPipe's short-range BlazeFace (``face_detection_short_range.tflite``) to ONNX.

The locator runs this network over whole pyramid levels with onnxruntime (see
``beardnet.faces.blazeface``); MediaPipe's graph only takes fixed 128x128 inputs. The ONNX file is
committed (``beardnet/assets/models/``); this script is how it was made, offline, from the
model inside the pinned mediapipe wheel. It needs ``onnx``, which is not a beardnet dependency
(it pins a protobuf that mediapipe 0.10.21 rejects), so run it from a separate environment::

    python3.11 -m venv /tmp/convert && /tmp/convert/bin/pip install onnx flatbuffers numpy
    MP=.venv/lib/python3.11/site-packages/mediapipe
    /tmp/convert/bin/python infra/models/tflite_to_onnx.py \\
        $MP/modules/face_detection/face_detection_short_range.tflite \\
        $MP/tasks/metadata/schema_py_generated.py \\
        beardnet/assets/models/blazeface_short_range.onnx

Only the operators this model uses are handled (float16 weights dequantized to float32). The
graph takes NHWC float input in [-1, 1] of any height and width (multiples of 16 give whole
anchor grids) and returns the TFLite outputs ``regressors`` (N x anchors x 16) and
``classificators`` (N x anchors x 1), anchors in row-major order of the stride-8 grid (2 per
cell) then the stride-16 grid (6 per cell).
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

_DTYPES = {0: np.float32, 1: np.float16, 2: np.int32, 4: np.int64}
_NHWC_TO_NCHW = [0, 3, 1, 2]


def convert(tflite_path: str, schema_path: str, out_path: str) -> None:
    spec = importlib.util.spec_from_file_location("tflite_schema", schema_path)
    S = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(S)
    with open(tflite_path, "rb") as f:
        raw = f.read()
    model = S.Model.GetRootAsModel(raw, 0)
    op_names = {v: k for k, v in S.BuiltinOperator.__dict__.items() if not k.startswith("_")}
    codes = [model.OperatorCodes(i) for i in range(model.OperatorCodesLength())]
    g = model.Subgraphs(0)

    def name(j: int) -> str:
        return g.Tensors(j).Name().decode()

    def data(j: int) -> np.ndarray:
        t = g.Tensors(j)
        buf = model.Buffers(t.Buffer()).DataAsNumpy()
        return np.frombuffer(buf.tobytes(), _DTYPES[t.Type()]).reshape(t.ShapeAsNumpy())

    consts: dict[str, np.ndarray] = {}
    nodes, inits = [], []

    def const(key: str, arr: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), key))
        return key

    inp = int(g.InputsAsNumpy()[0])
    nodes.append(helper.make_node("Transpose", [name(inp)], ["x_nchw"], perm=_NHWC_TO_NCHW))
    alias = {name(inp): "x_nchw"}

    def src(j: int) -> str:
        return alias.get(name(j), name(j))

    def weight(j: int) -> np.ndarray:
        return consts[name(j)] if name(j) in consts else data(j).astype(np.float32)

    def emit(op_type: str, inputs: list[str], out: str, fused: int = 0, **attrs) -> None:
        if fused not in (0, 1):
            raise NotImplementedError(f"fused activation {fused}")
        nodes.append(helper.make_node(op_type, inputs, [out + "_pre" if fused else out], **attrs))
        if fused:
            nodes.append(helper.make_node("Relu", [out + "_pre"], [out]))

    for i in range(g.OperatorsLength()):
        op = g.Operators(i)
        code = codes[op.OpcodeIndex()]
        kind = op_names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]
        ins = [int(j) for j in op.InputsAsNumpy()]
        out = name(int(op.OutputsAsNumpy()[0]))
        table = op.BuiltinOptions()

        def options(cls, table=table):
            o = cls()
            o.Init(table.Bytes, table.Pos)
            return o

        if kind == "DEQUANTIZE":
            consts[out] = data(ins[0]).astype(np.float32)
        elif kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            depthwise = kind == "DEPTHWISE_CONV_2D"
            o = options(S.DepthwiseConv2DOptions if depthwise else S.Conv2DOptions)
            w = weight(ins[1]).transpose(3, 0, 1, 2) if depthwise else weight(ins[1]).transpose(
                0, 3, 1, 2)
            args = [src(ins[0]), const(out + "_W", w)]
            if len(ins) > 2 and ins[2] >= 0:
                args.append(const(out + "_B", weight(ins[2])))
            attrs = {"strides": [o.StrideH(), o.StrideW()], "kernel_shape": list(w.shape[2:]),
                     "auto_pad": "SAME_UPPER" if o.Padding() == 0 else "VALID"}
            if depthwise:
                attrs["group"] = int(w.shape[0])
            emit("Conv", args, out, o.FusedActivationFunction(), **attrs)
        elif kind == "RELU":
            emit("Relu", [src(ins[0])], out)
        elif kind == "ADD":
            emit("Add", [src(ins[0]), src(ins[1])], out,
                 options(S.AddOptions).FusedActivationFunction())
        elif kind == "PAD":
            p = data(ins[1]).astype(np.int64)  # NHWC rows of (before, after)
            pads = [p[d, 0] for d in _NHWC_TO_NCHW] + [p[d, 1] for d in _NHWC_TO_NCHW]
            emit("Pad", [src(ins[0]), const(out + "_pads", np.array(pads, np.int64))], out)
        elif kind == "MAX_POOL_2D":
            o = options(S.Pool2DOptions)
            emit("MaxPool", [src(ins[0])], out, o.FusedActivationFunction(),
                 kernel_shape=[o.FilterHeight(), o.FilterWidth()],
                 strides=[o.StrideH(), o.StrideW()],
                 auto_pad="SAME_UPPER" if o.Padding() == 0 else "VALID")
        elif kind == "RESHAPE":  # NHWC row-major flattening, as TFLite does
            last = int(g.Tensors(int(op.OutputsAsNumpy()[0])).ShapeAsNumpy()[-1])
            emit("Transpose", [src(ins[0])], out + "_nhwc", perm=[0, 2, 3, 1])
            emit("Reshape", [out + "_nhwc", const(out + "_shape", np.array([0, -1, last]))], out)
        elif kind == "CONCATENATION":
            o = options(S.ConcatenationOptions)
            emit("Concat", [src(j) for j in ins], out, o.FusedActivationFunction(), axis=o.Axis())
        else:
            raise NotImplementedError(kind)

    outputs = [int(j) for j in g.OutputsAsNumpy()]
    last_dims = [int(g.Tensors(j).ShapeAsNumpy()[-1]) for j in outputs]
    graph = helper.make_graph(
        nodes, "blazeface_short_range",
        [helper.make_tensor_value_info(name(inp), TensorProto.FLOAT, ["N", "H", "W", 3])],
        [helper.make_tensor_value_info(name(j), TensorProto.FLOAT, ["N", "anchors", d])
         for j, d in zip(outputs, last_dims, strict=True)],
        inits,
    )
    sha = hashlib.sha256(raw).hexdigest()
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                                   producer_name="beardnet infra/models/tflite_to_onnx.py")
    onnx_model.ir_version = 8
    helper.set_model_props(onnx_model, {"source_sha256": sha})
    onnx.checker.check_model(onnx_model)
    onnx.save(onnx_model, out_path)
    print(f"{out_path}: {len(nodes)} nodes from {tflite_path} (sha256 {sha})")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    convert(*sys.argv[1:])
