"""MediaPipe FaceMesh backend: offline, its models ship inside the ``mediapipe`` wheel.

Engine: ``mediapipe==0.10.21`` legacy Solutions API,
``mediapipe.solutions.face_mesh.FaceMesh`` (BlazeFace short-range detector +
468-vertex face mesh, ``modules/face_detection/face_detection_short_range.tflite``
and ``modules/face_landmark/face_landmark.tflite``, Apache-2.0). It is the last
release that bundles these models; later releases only have the Tasks API whose
models are downloaded. Install with ``pip install 'qafe-bench[mediapipe]'``
(Python <= 3.12, numpy < 2, protobuf < 5).

Landmark scheme ``facemesh_inner_116`` (the analogue of the paper's 73
non-contour InsightFace 2d106 points, ``insightface_73``): the union of
MediaPipe's own index sets ``FACEMESH_LEFT_EYE`` (16), ``FACEMESH_LEFT_EYEBROW``
(10), ``FACEMESH_LIPS`` (40), ``FACEMESH_NOSE`` (24), ``FACEMESH_RIGHT_EYE``
(16) and ``FACEMESH_RIGHT_EYEBROW`` (10) from
``mediapipe/python/solutions/face_mesh_connections.py``: 116 disjoint mesh
vertices, none on the face oval (the contour is left out, as QAFE-Net leaves out
2d106 points 0-32, dataset/PAIN2landmarks_insightface.py). Stored point order =
the groups in the order above (the region order of the 2d106 points 33..105:
eye, eyebrow, mouth, nose, eye, eyebrow), mesh indices ascending inside each
group; :data:`FACEMESH_INNER_116` lists the mesh index of every stored point.
MediaPipe's LEFT/RIGHT is the subject's side (LEFT_EYE is on the image's right in
a non-mirrored frame).

Caveat (a documented deviation from the paper): the region densities differ from
the 73-point scheme: lips 40 points vs 20, eyes 32 vs 20, eyebrows 20 vs 18,
nose 24 vs 15. QAFE-Net's landmark heatmap is a max-normalised SUM of Gaussians,
so lips and eyes carry relatively more mass than in the paper's heatmaps; and the
official renderer skips keypoint 0 (here mesh vertex 249, a left-eye point, not
2d106 point 33). Record the scheme with every result and compare FaceMesh runs to
published numbers only as the "landmark backend" ablation.

Bounding box: the tight axis-aligned box around all 468 mesh vertices
(min/max of x and y, no margin): ear to ear and chin to the top of the mesh at
about the hairline. It plays the role of the SCRFD box in the official crop; it
is of similar extent to a SCRFD face box but not identical.

Modes: ``static_image_mode=False`` (default) tracks the face from frame to frame
(about 330 frames/s for 256x256 on 2 cores, decode excluded; it kept the face
through the head turn of the real test video ``head_turn_woman.mp4``, where
per-frame detection loses 3 near-profile frames); ``static_image_mode=True``
detects in every frame (about 215 frames/s), the right choice for frames that are
not consecutive. The tracker is reset at the start of every video.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ...errors import BackendUnavailableError
from ..prepared import LandmarkScheme, sha256_file
from .base import Detection, LandmarkBackend

#: Mesh vertex indices per region (subject's left/right), ascending; = the unique
#: vertices of the corresponding ``FACEMESH_*`` edge sets of mediapipe 0.10.21.
FACEMESH_REGIONS: dict[str, tuple[int, ...]] = {
    "left_eye": (249, 263, 362, 373, 374, 380, 381, 382, 384, 385, 386, 387, 388, 390, 398, 466),
    "left_eyebrow": (276, 282, 283, 285, 293, 295, 296, 300, 334, 336),
    "mouth": (0, 13, 14, 17, 37, 39, 40, 61, 78, 80, 81, 82, 84, 87, 88, 91, 95, 146, 178, 181, 185, 191,
              267, 269, 270, 291, 308, 310, 311, 312, 314, 317, 318, 321, 324, 375, 402, 405, 409, 415),
    "nose": (1, 2, 4, 5, 6, 19, 45, 48, 64, 94, 97, 98, 115, 168, 195, 197, 220, 275, 278, 294, 326, 327, 344, 440),
    "right_eye": (7, 33, 133, 144, 145, 153, 154, 155, 157, 158, 159, 160, 161, 163, 173, 246),
    "right_eyebrow": (46, 52, 53, 55, 63, 65, 66, 70, 105, 107),
}
#: Which ``FACEMESH_*`` constant each region comes from.
FACEMESH_CONSTANTS = {
    "left_eye": "FACEMESH_LEFT_EYE", "left_eyebrow": "FACEMESH_LEFT_EYEBROW", "mouth": "FACEMESH_LIPS",
    "nose": "FACEMESH_NOSE", "right_eye": "FACEMESH_RIGHT_EYE", "right_eyebrow": "FACEMESH_RIGHT_EYEBROW",
}
#: Mesh vertex index of each of the 116 stored points, in stored order.
FACEMESH_INNER_116: tuple[int, ...] = tuple(i for region in FACEMESH_REGIONS.values() for i in region)


def _scheme() -> LandmarkScheme:
    groups, start = {}, 0
    for name, idx in FACEMESH_REGIONS.items():
        groups[name] = list(range(start, start + len(idx)))
        start += len(idx)
    return LandmarkScheme(name="facemesh_inner_116", num_points=len(FACEMESH_INNER_116), groups=groups)


#: The stored landmark scheme: 116 points, groups re-indexed to 0..115.
FACEMESH_INNER_116_SCHEME = _scheme()


class MediaPipeBackend(LandmarkBackend):
    """Face box + 116 inner-face landmarks with MediaPipe FaceMesh (offline).

    Args:
        static_image_mode: False (default): detect once, then track between
            consecutive frames; True: detect in every frame.
        refine_landmarks: use the attention mesh model (better eyes/lips, about
            20 % slower; the 116 stored vertices are the same).
        min_detection_confidence, min_tracking_confidence: FaceMesh thresholds in [0, 1].

    Raises:
        BackendUnavailableError: ``mediapipe`` (0.10.x with the Solutions API) is not installed.
    """

    name = "mediapipe"
    scheme = FACEMESH_INNER_116_SCHEME

    def __init__(
        self,
        *,
        static_image_mode: bool = False,
        refine_landmarks: bool = False,
        min_detection_confidence: float = 0.5,
        min_tracking_confidence: float = 0.5,
    ) -> None:
        try:
            import mediapipe as mp
            from mediapipe.python.solutions import face_mesh
        except ImportError as exc:
            raise BackendUnavailableError(
                f"the mediapipe landmark backend needs mediapipe 0.10.21 ({exc}): "
                "pip install 'qafe-bench[mediapipe]' (Python <= 3.12, numpy < 2)"
            ) from None
        self._mp_version = getattr(mp, "__version__", "unknown")
        self._face_mesh_mod = face_mesh
        self._package_dir = Path(mp.__file__).resolve().parent
        self.settings = {
            "static_image_mode": bool(static_image_mode),
            "refine_landmarks": bool(refine_landmarks),
            "min_detection_confidence": float(min_detection_confidence),
            "min_tracking_confidence": float(min_tracking_confidence),
            "max_num_faces": 1,
        }
        self._mesh = None
        self._open()

    def _open(self) -> None:
        self._mesh = self._face_mesh_mod.FaceMesh(**self.settings)

    def reset(self) -> None:
        """Start a new video: drop the tracked face (tracking mode only)."""
        if not self.settings["static_image_mode"]:
            self.close()
            self._open()

    def close(self) -> None:
        if self._mesh is not None:
            self._mesh.close()
            self._mesh = None

    def detect(self, frame: np.ndarray) -> Detection | None:
        """Run FaceMesh on one ``(H, W, 3)`` uint8 RGB frame.

        Returns:
            None when no face is found, else a :class:`Detection` whose ``points``
            are the ``(116, 2)`` stored vertices (x, y in pixels: MediaPipe's
            normalised coordinates times width/height), ``bbox`` the min/max box of
            all 468 vertices and ``score`` None (FaceMesh gives no confidence).
        """
        frame = self._check_frame(frame)
        if self._mesh is None:
            self._open()
        result = self._mesh.process(frame)
        faces = result.multi_face_landmarks
        if not faces:
            return None
        h, w = frame.shape[:2]
        mesh = np.array([(p.x, p.y) for p in faces[0].landmark], dtype=np.float64)[:468]
        mesh *= (w, h)
        bbox = np.concatenate([mesh.min(axis=0), mesh.max(axis=0)])
        points = mesh[list(FACEMESH_INNER_116)].astype(np.float32)
        return Detection(bbox=bbox, points=points, score=None)

    def model_files(self) -> list[Path]:
        """The bundled model files FaceMesh loads with the current settings."""
        landmark = "face_landmark_with_attention.tflite" if self.settings["refine_landmarks"] else "face_landmark.tflite"
        return [
            self._package_dir / "modules" / "face_detection" / "face_detection_short_range.tflite",
            self._package_dir / "modules" / "face_landmark" / landmark,
        ]

    def provenance(self) -> dict:
        files = []
        for p in self.model_files():
            files.append({"file": os.path.relpath(p, self._package_dir.parent),
                          "sha256": sha256_file(p) if p.is_file() else None})
        return {
            "name": self.name,
            "package": "mediapipe",
            "version": self._mp_version,
            "api": "mediapipe.solutions.face_mesh.FaceMesh",
            "scheme": self.scheme.name,
            "mesh_indices": list(FACEMESH_INNER_116),
            "bbox": "min/max of all 468 mesh vertices (x, y), no margin",
            "model_files": files,
            "settings": dict(self.settings),
        }
