"""Score one real face video with a trained model (``qafe-bench score``).

The video goes through the same steps as a dataset: decoding, face detection
and landmarks (:func:`benchmark.data.prepare.prepare_video`), cropping, a
prepared copy in a temporary folder, the protocol's deterministic test clip,
and the model the run saved (``model.pt``, read with ``weights_only=True``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .api import ClipGeometry
from .cards import load_card
from .data.landmarks import get_backend
from .data.landmarks.crop import CropSpec
from .data.prepare import prepare_video
from .data.prepared import PreparedDataset, PreparedWriter
from .errors import CheckpointError, ConfigError
from .protocols import get_protocol
from .protocols.pfed5 import ClipDataset
from .scales import ClipSettings
from .registry import get_method
from .runs import effective_options, load_model_file


def score_video(video: str | Path, checkpoint: str | Path, *, expression: str, backend: str | None = None,
                backend_options: dict | None = None, device: str = "cpu") -> dict:
    """Predict the score of one video.

    Args:
        video: a video file or a folder of frames.
        checkpoint: a finished run's ``model.pt``.
        expression: the expression performed; must be the one the model was trained on
            (one model per expression, as in the paper).
        backend: landmark backend; default: the training data's backend, or
            ``mediapipe`` when the model was trained on synthetic data.
        backend_options: backend constructor options (e.g. ``{"model_dir": ...}``).

    Returns:
        dict with ``prediction`` (label units, e.g. severity 0..4, not clipped),
        ``expression``, ``label_name``, ``method``, ``num_frames``, ``faces_found``,
        ``landmark_scheme`` and ``warnings``.

    Raises:
        CheckpointError: unreadable model file, or weights that do not fit its method.
        ConfigError: another expression than the model's.
        DataError / CorruptVideoError / NoFaceError: the video cannot be used.
    """
    model_file = load_model_file(checkpoint)
    cfg = model_file["config"]
    card = load_card(cfg["dataset"]["card"])
    wanted = card.expressions[card.expression_index(expression)]
    if wanted != cfg["expression"]:
        raise ConfigError(
            f"{checkpoint} was trained on expression {cfg['expression']!r}, not {wanted!r}: "
            "one model is trained per expression; use the run of that expression"
        )
    settings_json = cfg["clip"]
    geometry = ClipGeometry(**settings_json["geometry"])
    method = get_method(cfg["method"])(effective_options(cfg), geometry, label_range=card.label_range)
    if method.exemplars is not None:
        raise ConfigError(f"{checkpoint}: method {cfg['method']!r} scores relative to training exemplars; "
                          "scoring one video needs the training videos (not supported by `score`)")
    model = method.build_model()
    try:
        model.load_state_dict(model_file["state_dict"], strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{checkpoint}: weights do not fit method {cfg['method']!r} ({exc})") from None
    model.to(device).eval()

    # Crop the face exactly as the training data was cropped (size, mode, margin, ...).
    crop = CropSpec(**cfg["dataset"]["crop"])
    trained_backend = cfg["dataset"].get("backend")
    name = backend or (trained_backend if trained_backend in ("mediapipe", "insightface") else "mediapipe")
    bk = get_backend(name, **(backend_options or {}))
    warnings = []
    inputs = method.input_spec()
    if inputs.heatmap and bk.scheme.name != cfg["dataset"].get("landmark_scheme"):
        warnings.append(
            f"the model's heatmaps were rendered from {cfg['dataset'].get('landmark_scheme')} landmarks; "
            f"this video gets {bk.scheme.name} from the {name} backend"
        )
    try:
        pv = prepare_video(video, bk, crop)
    finally:
        bk.close()
    with tempfile.TemporaryDirectory(prefix="qafe-score-") as tmp:
        writer = PreparedWriter(tmp, card=card.name, crop_size=int(crop.size), landmark_scheme=bk.scheme,
                                backend=bk.provenance())
        writer.add_video("video", pv.frames, pv.points, pv.face_found, subject="unknown", expression=wanted,
                         label=card.label_min, split="test", fps=pv.fps, source=str(video))
        writer.finalize()
        ds = PreparedDataset(tmp)
        settings = ClipSettings.from_json(settings_json, inputs)
        # the test clips of the model's protocol: one even clip (PFED5) or the mean over seeded random ones (UNBC)
        protocol = get_protocol(cfg.get("protocol", card.protocol))
        clips = ClipDataset(ds, pd.DataFrame(ds.videos), settings, train=False, seed=int(cfg.get("seed", 0)),
                            test_clips=protocol.test_clips, test_samplings=protocol.test_samplings)
        samplings = clips.test_samplings if clips.test_clips == "random" else 1
        preds = []
        for sampling in range(samplings):
            clips.set_sampling(sampling)
            item = clips[0]
            batch = {k: v.unsqueeze(0).to(device) for k, v in item.items() if torch.is_tensor(v) and v.dim() > 0}
            with torch.no_grad():
                preds.append(float(method.predict(model, batch).reshape(-1)[0]))
        pred = float(np.mean(preds))
    return {
        "prediction": pred,
        "expression": wanted,
        "label_name": card.label_name,
        "method": cfg["method"],
        "num_frames": int(len(pv.face_found)),
        "faces_found": int(pv.face_found.sum()),
        "landmark_scheme": bk.scheme.name,
        "warnings": warnings,
    }
