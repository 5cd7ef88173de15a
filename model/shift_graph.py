"""The test-time shift ensemble written in ONNX around one exported pass of the network.

Why in ONNX and not traced from PyTorch: the export and the int8 quantiser both need the
network's one-pass graph. ONNX Runtime's static calibration records every intermediate tensor
of a calibration walk, and on a graph holding five passes that ran out of 24 GB; calibrating
one pass fits, and the five passes then share its weights and its activation ranges (the
shifted frames have the same value range). So ``gaitid export`` exports one pass and
:func:`ensemble_graph` adds the shifts, the sum and the re-normalisation around copies of it,
and ``gaitid quantize`` takes that pass back out (:func:`one_pass_graph`), quantises it and
wraps the result the same way: fp32 and int8 files compute the same function by construction.

The function is ``gaitid.model.test_time``'s: each pass sees the frames moved by one offset of
``gaitid.contract.TEST_TIME_SHIFT_OFFSETS`` (zero-filled), its unit embeddings are summed and
the sum re-normalised. Pass ``k``'s nodes and tensors are named ``pass{k}/...``; pass 0 is the
unshifted one, which is what :func:`one_pass_graph` recognises. torch-free (``onnx`` only).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

import numpy as np
import onnx
from onnx import helper, numpy_helper

from gaitid.contract import (
    FRAME_HEIGHT,
    FRAME_WIDTH,
    INPUT_LENGTHS,
    INPUT_SILHOUETTES,
    OUTPUT_EMBEDDING,
    TEST_TIME_SHIFTS_KEY,
    ContractError,
    shift_offsets,
)

#: Prefix of pass ``k``'s node and tensor names.
PASS_PREFIX: Final = "pass{index}/"
#: Names of the nodes and tensors the ensemble adds around the passes.
_PADDED: Final = "shift/padded"
_PADS: Final = "shift/pads"
_SUM: Final = "shift/sum"
_AXES: Final = "shift/slice_axes"


class ShiftGraphError(ContractError):
    """An ONNX model whose graph the shift ensemble cannot be built around or taken out of."""


def ensemble_graph(one_pass: onnx.ModelProto, shifts: str) -> onnx.ModelProto:
    """``one_pass`` (the contract's inputs -> ``embedding``, one pass) wrapped in the shift
    set ``shifts``; the metadata is ``one_pass``'s with ``test_time_shifts`` set.

    ``none`` returns a copy of ``one_pass`` unchanged. Weights and other initialisers are
    shared by the passes (the file grows by a few kB, not by four networks).
    """
    offsets = shift_offsets(shifts)
    model = onnx.ModelProto()
    model.CopyFrom(one_pass)
    _set_metadata(model, TEST_TIME_SHIFTS_KEY, shifts)
    if len(offsets) == 1:
        return model
    source = one_pass.graph
    _check_one_pass(source)
    constants = {init.name for init in source.initializer}
    graph = model.graph
    del graph.node[:]
    del graph.value_info[:]
    del graph.output[:]
    graph.initializer.append(
        numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], dtype=np.int64), _PADS)
    )
    graph.initializer.append(numpy_helper.from_array(np.array([2, 3], dtype=np.int64), _AXES))
    graph.node.append(
        helper.make_node("Pad", [INPUT_SILHOUETTES, _PADS], [_PADDED], name="shift/pad")
    )
    outputs = []
    for index, (rows, columns) in enumerate(offsets):
        prefix = PASS_PREFIX.format(index=index)
        frames = INPUT_SILHOUETTES
        if (rows, columns) != (0, 0):
            frames = f"{prefix}{INPUT_SILHOUETTES}"
            starts, ends = f"{prefix}slice_starts", f"{prefix}slice_ends"
            graph.initializer.extend(
                [
                    numpy_helper.from_array(np.array([1 - rows, 1 - columns], np.int64), starts),
                    numpy_helper.from_array(
                        np.array([1 - rows + FRAME_HEIGHT, 1 - columns + FRAME_WIDTH], np.int64),
                        ends,
                    ),
                ]
            )
            graph.node.append(
                helper.make_node(
                    "Slice", [_PADDED, starts, ends, _AXES], [frames], name=f"{prefix}shift"
                )
            )
        rename = _renamer(prefix, constants, {INPUT_SILHOUETTES: frames})
        for node in source.node:
            copy = onnx.NodeProto()
            copy.CopyFrom(node)
            copy.name = f"{prefix}{node.name}"
            copy.input[:] = [rename(name) for name in node.input]
            copy.output[:] = [rename(name) for name in node.output]
            graph.node.append(copy)
        for info in source.value_info:
            if info.name not in constants:
                copied = graph.value_info.add()
                copied.CopyFrom(info)
                copied.name = rename(info.name)
        outputs.append(rename(OUTPUT_EMBEDDING))
    graph.node.append(helper.make_node("Sum", outputs, [_SUM], name="shift/sum"))
    graph.node.append(
        helper.make_node(
            "LpNormalization", [_SUM], [OUTPUT_EMBEDDING], name="shift/normalize", axis=1, p=2
        )
    )
    graph.output.extend(source.output)
    return model


def one_pass_graph(model: onnx.ModelProto) -> onnx.ModelProto:
    """The unshifted pass of a model built by :func:`ensemble_graph` (metadata
    ``test_time_shifts`` ``none``); a one-pass model is returned as a copy.

    A multi-pass model exported before the ensemble was written this way (its passes traced
    from PyTorch, not named ``pass{k}/``) raises :class:`ShiftGraphError`: re-export it.
    """
    meta = {p.key: p.value for p in model.metadata_props}
    if meta.get(TEST_TIME_SHIFTS_KEY, "none") == "none":
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        return copy
    prefix = PASS_PREFIX.format(index=0)
    graph = model.graph
    nodes = [node for node in graph.node if node.name.startswith(prefix)]
    if not nodes:
        raise ShiftGraphError(
            f"this model averages the shift set {meta[TEST_TIME_SHIFTS_KEY]!r} but holds no "
            f"'{prefix}' pass (an export older than the ONNX-built ensemble): re-export it "
            "with `gaitid export` from its weights"
        )
    constants = {init.name for init in graph.initializer}
    inputs = {INPUT_SILHOUETTES, INPUT_LENGTHS, ""}

    def restore(name: str) -> str:
        if name in constants or name in inputs:
            return name
        if not name.startswith(prefix):
            raise ShiftGraphError(f"pass 0 reads {name!r}, which is outside it")
        return name[len(prefix) :]

    result = onnx.ModelProto()
    result.CopyFrom(model)
    out = result.graph
    del out.node[:]
    del out.value_info[:]
    del out.initializer[:]
    used: set[str] = set()
    for node in nodes:
        copy = out.node.add()
        copy.CopyFrom(node)
        copy.name = node.name[len(prefix) :]
        copy.input[:] = [restore(name) for name in node.input]
        copy.output[:] = [restore(name) for name in node.output]
        used.update(node.input)
    out.initializer.extend(init for init in graph.initializer if init.name in used)
    for info in graph.value_info:
        if info.name.startswith(prefix):
            copied = out.value_info.add()
            copied.CopyFrom(info)
            copied.name = info.name[len(prefix) :]
    _set_metadata(result, TEST_TIME_SHIFTS_KEY, "none")
    return result


def _renamer(prefix: str, shared: set[str], replaced: dict[str, str]) -> Callable[[str], str]:
    """Map one pass's tensor names into pass ``prefix``: shared weights and the lengths input
    keep their names, ``replaced`` maps inputs to the pass's own, the rest get the prefix."""

    def rename(name: str) -> str:
        if not name or name in shared or name == INPUT_LENGTHS:
            return name
        if name in replaced:
            return replaced[name]
        return f"{prefix}{name}"

    return rename


def _check_one_pass(graph: onnx.GraphProto) -> None:
    """The graph ``ensemble_graph`` can copy: the contract's I/O, no sub-graphs (whose outer
    names the copy would not rename), no names already in the ensemble's namespace."""
    if [i.name for i in graph.input] != [INPUT_SILHOUETTES, INPUT_LENGTHS] or [
        o.name for o in graph.output
    ] != [OUTPUT_EMBEDDING]:
        raise ShiftGraphError("the one-pass graph does not have the contract's inputs and output")
    for node in graph.node:
        if any(
            attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
            for attr in node.attribute
        ):
            raise ShiftGraphError(f"node {node.name!r} holds a sub-graph; cannot copy it per pass")
        if node.name.startswith("shift/") or re.match(r"pass\d+/", node.name):
            raise ShiftGraphError(f"node {node.name!r} is already part of a shift ensemble")


def _set_metadata(model: onnx.ModelProto, key: str, value: str) -> None:
    for prop in model.metadata_props:
        if prop.key == key:
            prop.value = value
            return
    model.metadata_props.add(key=key, value=value)
