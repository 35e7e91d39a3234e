"""InsightFace backend: the paper's face detector and landmarks (SCRFD + 2d106det).

QAFE-Net's landmark script (``dataset/PAIN2landmarks_insightface.py`` in
shuchaoduan/QAFE-Net) runs ``insightface.app.FaceAnalysis`` with
``allowed_modules=['detection', 'landmark_2d_106']`` and
``det_size=(640, 640)``, takes the first returned face (the highest detector
score), and keeps the 106-point indices 33..105 ("remove the contour part"):
73 points, scheme ``insightface_73``. This adapter does the same with
``insightface==2.1`` on the CPU (``ctx_id=-1``, ``CPUExecutionProvider``).

Model files are never downloaded. They are read from a user directory:
the ``model_dir`` argument, else ``$QAFE_BENCH_INSIGHTFACE_DIR``, else
``~/.insightface/models/buffalo_l`` (where ``FaceAnalysis()`` puts the
``buffalo_l`` pack). It must hold the SCRFD detector (``det_10g.onnx`` in
buffalo_l) and the 106-point landmark model (``2d106det.onnx``). InsightFace
recognises the ``*.onnx`` files of a directory by their input/output shapes,
not their names, so other files of the pack are simply ignored. The pretrained
InsightFace models are for non-commercial research only.

The 73 points, groups re-indexed from the 2d106 index ranges (names from the
same authors' TraMP-Former code; whether "left" is the subject's or the image's
left is not documented): left_eye 33-42 -> 0-9 (eye centre 34 -> 1),
left_eyebrow 43-51 -> 10-18, mouth 52-71 -> 19-38, nose 72-86 -> 39-53,
right_eye 87-96 -> 54-63 (centre 88 -> 55), right_eyebrow 97-105 -> 64-72.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

import numpy as np

from ...errors import BackendUnavailableError
from ..prepared import LandmarkScheme, sha256_file
from .base import Detection, LandmarkBackend

#: Environment variable naming the model directory.
ENV_MODEL_DIR = "QAFE_BENCH_INSIGHTFACE_DIR"
#: Default model directory (InsightFace's own download location of buffalo_l).
DEFAULT_MODEL_DIR = "~/.insightface/models/buffalo_l"
#: First and last kept 2d106 index (inclusive): the 73 non-contour points.
KEEP_FIRST, KEEP_LAST = 33, 105

_REGIONS_106 = {
    "left_eye": (33, 42),
    "left_eyebrow": (43, 51),
    "mouth": (52, 71),
    "nose": (72, 86),
    "right_eye": (87, 96),
    "right_eyebrow": (97, 105),
}

#: The paper's landmark scheme: 2d106 indices 33..105 stored as 0..72.
INSIGHTFACE_73_SCHEME = LandmarkScheme(
    name="insightface_73",
    num_points=KEEP_LAST - KEEP_FIRST + 1,
    groups={k: list(range(a - KEEP_FIRST, b - KEEP_FIRST + 1)) for k, (a, b) in _REGIONS_106.items()},
)

_NEEDED = (
    "the SCRFD face detector (det_10g.onnx of the buffalo_l pack) and the 106-point landmark model "
    "(2d106det.onnx of the buffalo_l pack)"
)


def resolve_model_dir(model_dir: str | os.PathLike | None = None) -> Path:
    """The InsightFace model directory: argument, else ``$QAFE_BENCH_INSIGHTFACE_DIR``, else ``~/.insightface/models/buffalo_l``."""
    chosen = model_dir or os.environ.get(ENV_MODEL_DIR) or DEFAULT_MODEL_DIR
    return Path(chosen).expanduser()


class InsightFaceBackend(LandmarkBackend):
    """SCRFD face box + 73 InsightFace 2d106 landmarks (the paper's backend), offline.

    Args:
        model_dir: directory holding the detector and 2d106 ONNX files (see
            :func:`resolve_model_dir` for the default).
        det_size: detector input size (width, height) in pixels; the paper's
            script uses (640, 640).
        det_thresh: detector score threshold (InsightFace default 0.5).
        providers: ONNX Runtime providers (CPU by default).
        ctx_id: InsightFace context id; < 0 forces the CPU (default -1).

    Raises:
        BackendUnavailableError: insightface/onnxruntime not installed; the
            directory is missing; it holds no ``*.onnx``; or no detector / no
            106-point landmark model is among its files. The message names the
            directory and the files to put there.
    """

    name = "insightface"
    scheme = INSIGHTFACE_73_SCHEME

    def __init__(
        self,
        model_dir: str | os.PathLike | None = None,
        *,
        det_size: tuple[int, int] = (640, 640),
        det_thresh: float = 0.5,
        providers: tuple[str, ...] | list[str] = ("CPUExecutionProvider",),
        ctx_id: int = -1,
    ) -> None:
        self.model_dir = resolve_model_dir(model_dir).resolve()
        where = (f"{self.model_dir} (from the model_dir argument, ${ENV_MODEL_DIR}, "
                 f"or the default {DEFAULT_MODEL_DIR})")
        if not self.model_dir.is_dir():
            raise BackendUnavailableError(
                f"InsightFace model directory {where} does not exist: create it and put {_NEEDED} there "
                f"(qafe-bench never downloads models), or pass another directory / set ${ENV_MODEL_DIR}"
            )
        onnx_files = sorted(glob.glob(str(self.model_dir / "*.onnx")))
        if not onnx_files:
            raise BackendUnavailableError(
                f"InsightFace model directory {where} holds no *.onnx file: put {_NEEDED} there"
            )
        try:
            import insightface
            from insightface.app import FaceAnalysis
        except ImportError as exc:
            raise BackendUnavailableError(
                f"the insightface landmark backend needs insightface 2.1 and onnxruntime ({exc}): "
                "pip install 'qafe-bench[insightface]'"
            ) from None
        self._if_version = getattr(insightface, "__version__", "unknown")
        self.settings = {
            "allowed_modules": ["detection", "landmark_2d_106"],
            "providers": list(providers),
            "ctx_id": int(ctx_id),
            "det_size": [int(det_size[0]), int(det_size[1])],
            "det_thresh": float(det_thresh),
            "keep_106_indices": [KEEP_FIRST, KEEP_LAST],
        }
        try:
            # ``name`` is an existing directory, so FaceAnalysis loads it as is and
            # never tries to download a pack.
            app = FaceAnalysis(name=str(self.model_dir), allowed_modules=self.settings["allowed_modules"],
                               providers=list(providers))
        except AssertionError:
            raise BackendUnavailableError(
                f"no face detector among the *.onnx files in {where} "
                f"({', '.join(Path(f).name for f in onnx_files)}): put {_NEEDED} there"
            ) from None
        except Exception as exc:  # a broken or foreign ONNX file
            raise BackendUnavailableError(
                f"InsightFace could not load the models in {where}: {type(exc).__name__}: {exc}; "
                f"the directory must hold {_NEEDED}"
            ) from None
        if "landmark_2d_106" not in app.models:
            raise BackendUnavailableError(
                f"no 106-point landmark model among the *.onnx files in {where} "
                f"({', '.join(Path(f).name for f in onnx_files)}): put 2d106det.onnx (buffalo_l pack) there"
            )
        app.prepare(ctx_id=int(ctx_id), det_thresh=float(det_thresh), det_size=tuple(self.settings["det_size"]))
        self._app = app

    def detect(self, frame: np.ndarray) -> Detection | None:
        """Detect faces in one ``(H, W, 3)`` uint8 RGB frame; keep the highest-scoring one.

        Returns:
            None when no face is found, else a :class:`Detection` with the SCRFD
            box (pixels), the 73 points = 2d106 indices 33..105 (pixels), and the
            detector score.
        """
        import cv2

        frame = self._check_frame(frame)
        if self._app is None:
            raise RuntimeError("this InsightFaceBackend was closed; build a new one with get_backend('insightface')")
        faces = self._app.get(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        if not faces:
            return None
        face = max(faces, key=lambda f: float(f.det_score))  # = faces[0]: SCRFD sorts by score
        lmk = np.asarray(face.landmark_2d_106, dtype=np.float32)
        return Detection(
            bbox=np.asarray(face.bbox, dtype=np.float64)[:4],
            points=lmk[KEEP_FIRST:KEEP_LAST + 1].copy(),
            score=float(face.det_score),
        )

    def close(self) -> None:
        self._app = None

    def provenance(self) -> dict:
        files = []
        for task in ("detection", "landmark_2d_106"):
            model = self._app.models[task] if self._app is not None else None
            path = Path(getattr(model, "model_file", "")) if model is not None else None
            if path is not None and path.is_file():
                files.append({"task": task, "file": path.name, "sha256": sha256_file(path)})
        return {
            "name": self.name,
            "package": "insightface",
            "version": self._if_version,
            "api": "insightface.app.FaceAnalysis",
            "scheme": self.scheme.name,
            "model_dir": str(self.model_dir),
            "bbox": "SCRFD detector box of the highest-scoring face",
            "model_files": files,
            "settings": dict(self.settings),
        }
