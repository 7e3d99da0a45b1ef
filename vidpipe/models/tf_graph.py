"""Read the constants of a TensorFlow frozen graph (``GraphDef`` protobuf) without TensorFlow.

Only the few message types needed are described here, built at import time with protobuf's descriptor
API; unknown fields are skipped by the parser.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

F = descriptor_pb2.FieldDescriptorProto
_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 9: np.int64, 10: np.bool_}


def _message(
    file: descriptor_pb2.FileDescriptorProto, name: str, fields: list[tuple]
) -> descriptor_pb2.DescriptorProto:
    msg = file.message_type.add(name=name)
    for field_name, number, kind, label, type_name in fields:
        field = msg.field.add(name=field_name, number=number, type=kind, label=label)
        if type_name:
            field.type_name = type_name
    return msg


def _build_classes() -> dict[str, type]:
    file = descriptor_pb2.FileDescriptorProto(name="vidpipe_tf_graph.proto", package="vidpipe_tf", syntax="proto3")
    opt, rep = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    _message(file, "Dim", [("size", 1, F.TYPE_INT64, opt, None)])
    _message(file, "TensorShape", [("dim", 2, F.TYPE_MESSAGE, rep, ".vidpipe_tf.Dim")])
    _message(
        file,
        "Tensor",
        [
            ("dtype", 1, F.TYPE_INT32, opt, None),
            ("tensor_shape", 2, F.TYPE_MESSAGE, opt, ".vidpipe_tf.TensorShape"),
            ("tensor_content", 4, F.TYPE_BYTES, opt, None),
            ("float_val", 5, F.TYPE_FLOAT, rep, None),
            ("int_val", 7, F.TYPE_INT32, rep, None),
        ],
    )
    _message(
        file,
        "AttrValue",
        [
            ("s", 2, F.TYPE_BYTES, opt, None),
            ("i", 3, F.TYPE_INT64, opt, None),
            ("f", 4, F.TYPE_FLOAT, opt, None),
            ("b", 5, F.TYPE_BOOL, opt, None),
            ("tensor", 8, F.TYPE_MESSAGE, opt, ".vidpipe_tf.Tensor"),
        ],
    )
    node = _message(
        file,
        "Node",
        [
            ("name", 1, F.TYPE_STRING, opt, None),
            ("op", 2, F.TYPE_STRING, opt, None),
            ("input", 3, F.TYPE_STRING, rep, None),
            ("attr", 5, F.TYPE_MESSAGE, rep, ".vidpipe_tf.Node.AttrEntry"),
        ],
    )
    entry = node.nested_type.add(name="AttrEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=F.TYPE_STRING, label=opt)
    entry.field.add(name="value", number=2, type=F.TYPE_MESSAGE, label=opt, type_name=".vidpipe_tf.AttrValue")
    _message(file, "Graph", [("node", 1, F.TYPE_MESSAGE, rep, ".vidpipe_tf.Node")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"vidpipe_tf.{name}"))
        for name in ("Graph", "Tensor")
    }


_CLASSES = _build_classes()


def tensor_to_numpy(tensor) -> np.ndarray:
    """Convert a TensorFlow ``TensorProto`` to a numpy array."""
    dtype = _DTYPES.get(tensor.dtype)
    if dtype is None:
        raise ValueError(f"unsupported tensor dtype {tensor.dtype}")
    shape = [d.size for d in tensor.tensor_shape.dim]
    if tensor.tensor_content:
        return np.frombuffer(tensor.tensor_content, dtype=dtype).reshape(shape).copy()
    values = tensor.float_val if dtype in (np.float32, np.float64) else tensor.int_val
    array = np.array(values, dtype=dtype)
    if array.size == 1:
        return np.full(shape, array[0], dtype=dtype)
    return array.reshape(shape)


def read_graph(path: str | Path):
    """Parse a frozen ``GraphDef`` file; raises ``ValueError`` when it is not one."""
    graph = _CLASSES["Graph"]()
    try:
        graph.ParseFromString(Path(path).read_bytes())
    except DecodeError as exc:
        raise ValueError(f"not a TensorFlow graph ({exc})") from None
    if not graph.node:
        raise ValueError("not a TensorFlow graph (no nodes)")
    return graph


def constants(graph) -> dict[str, np.ndarray]:
    """Every ``Const`` node of a graph as ``{name: array}``."""
    return {
        node.name: tensor_to_numpy(node.attr["value"].tensor)
        for node in graph.node
        if node.op == "Const" and node.attr["value"].tensor.dtype in _DTYPES
    }
