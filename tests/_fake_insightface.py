"""Stand-in InsightFace model files (ONNX) for offline tests of the insightface backend.

The real buffalo_l files (det_10g.onnx, 2d106det.onnx) cannot be obtained
offline. InsightFace recognises model files by shape (see
../shared/reference/data_landmarks.md 3.3, 3.5), so two small graphs do:

* ``fake_det.onnx``: SCRFD-shaped, input ``(1, 3, H, W)`` (dynamic), 9 outputs
  (scores, box distances, 5 keypoints for strides 8/16/32, 2 anchors). Scores of
  strides 8 and 16 are 0. The stride-32 score of a 32x32 cell is the mean of the
  normalised pixels ``(v - 127.5) / 128`` of that cell (a Conv with all weights
  ``1 / (3*32*32)``): about +1 for a white cell, -1 for a black one. Box
  distances are ``box_distance`` strides on every side (a constant bias).
  With ``face_score=False`` every score is 0 ("no face" anywhere).
* ``fake_2d106.onnx``: input ``(1, 3, 192, 192)`` -> ``(1, 212)``: zero weights
  and a bias = ``landmark_bias`` (the normalised (x, y) of the 106 points, in
  [-1, 1] of the 192x192 landmark crop).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

STRIDES = (8, 16, 32)


def _init(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array, dtype=np.float32), name)


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def make_detector(path: Path, *, face_score: bool = True, box_distance: float = 1.0) -> Path:
    """Write the SCRFD stand-in (module docstring) to ``path``."""
    nodes, inits, outputs = [], [], []
    heads = {"score": 1, "bbox": 4, "kps": 10}
    for head, width in heads.items():
        for s in STRIDES:
            cout = 2 * width  # 2 anchors per location
            w = np.zeros((cout, 3, s, s), np.float32)
            b = np.zeros((cout,), np.float32)
            if head == "score" and s == 32 and face_score:
                w[:] = 1.0 / (3 * s * s)
            if head == "bbox":
                b[:] = box_distance
            name = f"{head}_{s}"
            inits += [_init(f"{name}_w", w), _init(f"{name}_b", b),
                      numpy_helper.from_array(np.array([-1, width], np.int64), f"{name}_shape")]
            nodes += [
                helper.make_node("Conv", ["input.1", f"{name}_w", f"{name}_b"], [f"{name}_conv"],
                                 kernel_shape=[s, s], strides=[s, s]),
                helper.make_node("Transpose", [f"{name}_conv"], [f"{name}_t"], perm=[0, 2, 3, 1]),
                helper.make_node("Reshape", [f"{name}_t", f"{name}_shape"], [name]),
            ]
            outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [f"n{s}", width]))
    graph = helper.make_graph(
        nodes, "fake_scrfd",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, "height", "width"])],
        outputs, initializer=inits,
    )
    return _save(graph, path)


def make_landmark(path: Path, landmark_bias: np.ndarray) -> Path:
    """Write the 2d106 stand-in whose output is always ``landmark_bias`` ((106, 2) in [-1, 1])."""
    bias = np.asarray(landmark_bias, np.float32).reshape(212)
    nodes = [
        helper.make_node("GlobalAveragePool", ["data"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["fc1"]),
    ]
    graph = helper.make_graph(
        nodes, "fake_2d106",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 192, 192])],
        [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, [1, 212])],
        initializer=[_init("fc_w", np.zeros((3, 212))), _init("fc_b", bias)],
    )
    return _save(graph, path)


def default_landmark_bias() -> np.ndarray:
    """(106, 2) distinct normalised points: x = -0.8 + 1.6 i / 105, y = 0.5 - i / 105."""
    i = np.arange(106, dtype=np.float64)
    return np.stack([-0.8 + 1.6 * i / 105, 0.5 - i / 105], axis=1)


def make_pack(folder: Path, *, detector: bool = True, landmark: bool = True, face_score: bool = True,
              landmark_bias: np.ndarray | None = None) -> Path:
    """A model directory with the stand-in detector and/or landmark model; returns ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    if detector:
        make_detector(folder / "fake_det.onnx", face_score=face_score)
    if landmark:
        make_landmark(folder / "fake_2d106.onnx",
                      default_landmark_bias() if landmark_bias is None else landmark_bias)
    return folder
