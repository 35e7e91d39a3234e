"""Synthetic PFED5-like data: procedurally drawn faces performing the five expressions.

This is the project's embedded default dataset (card ``synthetic``): CI, tests and
newcomers run the whole pipeline on it without PFED5. It is written through
:class:`~benchmark.data.prepared.PreparedWriter`, so the loader that reads a
prepared PFED5 folder reads it unchanged.

What a video is
---------------
Each subject has an identity drawn once from ``default_rng([seed, 1, subject])``:
face shape (height of the skull and of the chin, jaw squareness and narrowing),
skin, lip, hair, iris, clothing and background colours, background texture,
position and size of the face in the crop, feature proportions (eye spacing and
size, brow length/thickness/arch, nose, mouth width, lip thickness) and a
*neutral shape* (resting mouth-corner curvature, brow height and tilt, resting
eye opening), plus a personal expressivity factor and per-movement style
weights. The neutral shape varies between subjects, so the neutral frame 0 tells
nothing about severity; what does is the motion from the subject's own neutral
face: its peak amplitude and its timing (below). A single frame after onset
carries severity too, through how far the face has moved on it (measured on the
tiny preset, 240 videos: the best tenth of a smile video gives Spearman's rho 0.95
from mouth curvature alone, frown 0.64 from brow height, squeeze_eyes 0.95 from
eye opening, clench_teeth 0.79 from mouth width; frame 0 at most 0.21, colour, size,
position and length on every frame at most 0.12:
``tests/test_synthetic.py::test_identity_colour_size_position_length_and_frame0_carry_no_severity``
and ``::test_severity_is_in_the_movement_peak_amplitude_and_timing``).

A video (``subject, expression, repetition``) starts at the neutral face (frame 0
is always neutral) and moves groups of control points; the landmarks *are* the
drawing's control points (73 points in an InsightFace-2d106-inner-like layout,
scheme ``synthetic_73``), so they are exact on every frame:

- ``smile``: mouth corners up and out, lips part a little, lower lids rise and
  upper lids lower (a slight squint), brows rise a little;
- ``frown``: brows down and together (inner ends most), lids narrow, corners down;
- ``squeeze_eyes``: upper lids close, lower lids rise, brows down, a grimace;
- ``clench_teeth``: lips part and retract, mouth widens, teeth show;
- ``sit_at_rest``: spontaneous blinks and small smooth micro-movements of
  mouth, brows and lids.

Each non-rest video follows rest -> onset -> hold -> offset, once or twice
(repeated in longer clips), with random timing.

The hypomimia model (severity s in 0..4)
----------------------------------------
Severity acts only on the facial *movement*, as hypomimia in Parkinson's disease
does (reduced and slowed facial expression, fewer blinks):

- amplitude: every expression's peak activation is ``severity_amplitude[s]``
  (default 1.0, 0.8, 0.6, 0.4, 0.2) times the subject's expressivity (0.85-1.15)
  and a per-video jitter (0.92-1.08); a repeated movement decays by
  ``0.05 * s`` per repetition (the sequence effect);
- speed: onset and offset durations are multiplied by ``severity_slowdown[s]``
  (default 1.0, 1.3, 1.6, 1.9, 2.2), and so are the periods of the spontaneous
  micro-movements and the blink durations;
- at rest: blink rate times ``blink_rate_factor[s]`` (1.0 .. 0.3), blink depth
  ``blink_depth[s]`` (1.0 .. 0.65), micro-movement amplitude as above.

s = 4 still moves (20 % amplitude, slower; 10 % in the ``tiny`` preset): every
video is a valid video.

The ``tiny`` preset exaggerates every expression (``expression_gain`` 2), calms
the head drift and spreads the amplitudes (1.0, 0.7, 0.45, 0.25, 0.1): at 48 px
the base settings move a smiling mouth corner by about 2 px, no more than the
nuisance head drift, and no model trained from scratch on 2 CPU cores found the cue.

Deliberately independent of severity
------------------------------------
Identity (all colours, sizes, positions, shapes, background), clip length
(drawn per expression from a Beta law between the spec's min and max with the
spec's mean), the timing fractions of the movement, the head nuisance (slow
translation, rotation and scale drift), illumination (global gain ramp and a
directional gradient) and sensor noise. All random numbers of a video are drawn
before severity is applied and in the same order for every severity (blinks by
thinning a severity-free candidate process), so the same video rendered at
another severity has the same length and the same first frame, byte for byte,
and differs only in how the face moves. Severities are assigned per video, not
per subject: a balanced random permutation within each (split, expression), so
no subject-level cue (identity) correlates with severity either.

Determinism
-----------
Everything is a function of ``(spec, seed)``: the split from
``default_rng([seed, 0])``, identities from ``[seed, 1, subject]``, severities
from ``[seed, 3, split, expression]``, each video from
``[seed, 2, subject, expression, repetition, stream]``. Same seed -> byte-identical
files and the same manifest ``content_hash``.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..cards import PFED5_EXPRESSIONS
from ..errors import ConfigError, ManifestError
from .prepared import FRAME_FORMATS, LandmarkScheme, PreparedWriter, atomic_write_text

GENERATOR_VERSION = "1.0"
"""Version of the drawing/motion model; bump when the output for a seed changes."""

CARD_NAME = "synthetic"

# ---------------------------------------------------------------------------------------------
# Landmark layout: 2d106det inner 73 points (106 indices 33..105), in that table's order:
# eye (10, index 1 = centre), brow (9), mouth (20), nose (15), eye (10, index 1 = centre), brow (9).
# "left" = image-left (smaller x), i.e. the subject's right.
# ---------------------------------------------------------------------------------------------
_LEFT_EYE = list(range(0, 10))
_LEFT_BROW = list(range(10, 19))
_MOUTH = list(range(19, 39))
_NOSE = list(range(39, 54))
_RIGHT_EYE = list(range(54, 64))
_RIGHT_BROW = list(range(64, 73))

SYNTHETIC_SCHEME = LandmarkScheme(
    name="synthetic_73",
    num_points=73,
    groups={
        "left_eye": _LEFT_EYE,
        "left_brow": _LEFT_BROW,
        "mouth": _MOUTH,
        "nose": _NOSE,
        "right_eye": _RIGHT_EYE,
        "right_brow": _RIGHT_BROW,
    },
)
"""The generator's 73-point scheme (order of the InsightFace 2d106 inner points).

Within a group: eye = outer corner, centre (iris centre, clamped between the lids),
upper lid x4 (outer -> inner), inner corner, lower lid x3 (inner -> outer);
brow = inner end, lower edge x3, outer end, upper edge x4 (outer -> inner);
mouth = outer lip (left corner, upper x5, right corner, lower x5 right -> left) then
inner lip (left corner, upper x3, right corner, lower x3 right -> left);
nose = bridge x4 (top -> down), left ala x2, base x5 (left -> right), right ala x2,
lower bridge, tip (the face-centre point, like 2d106 index 86).
"""

#: Indices (into the 73 points) of the points of each eye centre (like 2d106 34 and 88).
EYE_CENTRES = (1, 55)

# Table 1 of the paper (train+test): min / weighted mean / max length per expression, and
# the severity histogram, used by the ``paper`` preset.
_TABLE1_LENGTHS = {
    "sit_at_rest": (7, 35, 84),
    "smile": (25, 79, 219),
    "frown": (35, 100, 228),
    "squeeze_eyes": (48, 111, 260),
    "clench_teeth": (50, 114, 247),
}
_TABLE1_SEVERITY_COUNTS = (547, 891, 766, 512, 95)

_TINY_LENGTHS = {
    "sit_at_rest": (16, 22, 32),
    "smile": (20, 30, 44),
    "frown": (24, 34, 48),
    "squeeze_eyes": (24, 36, 48),
    "clench_teeth": (24, 36, 48),
}


@dataclass(frozen=True)
class SyntheticSpec:
    """Every parameter of a synthetic dataset (stored in the manifest).

    Attributes:
        preset: name of the preset this spec started from (``tiny``, ``paper``).
        seed: master seed (``generate_synthetic`` sets it).
        subjects: number of subjects.
        train_subjects: how many of them form the train split (the rest: test).
        videos_per_expression: videos per subject per expression (repetitions).
        crop_size: S, the square frame size in pixels.
        supersample: faces are drawn at ``S * supersample`` and reduced with
            ``cv2.INTER_AREA`` (anti-aliasing for small S).
        expressions: the expressions to generate (a subset of the PFED5 five, in any order).
        min_length, mean_length, max_length: per expression, clip length in frames
            (Beta law between min and max with the given mean; independent of severity).
        fps: frames per second written to ``videos.csv``.
        frame_format: ``npy`` or ``jpg`` (see :class:`PreparedWriter`).
        severity_weights: relative frequency of severities 0..4 within each
            (split, expression); uniform by default, Table 1's histogram for ``paper``.
        severity_amplitude: movement amplitude factor per severity.
        severity_slowdown: onset/offset/micro-movement duration factor per severity.
        blink_rate: spontaneous blinks per frame at rest for severity 0.
        blink_rate_factor: blink rate factor per severity.
        blink_depth: blink closure fraction per severity.
        expression_gain: multiplies every expression's movement (not the micro-movements);
            above 1 exaggerates the expressions so that small crops still show them.
        micro_amplitude: spontaneous micro-movement amplitude at rest (in units of
            the typical expression amplitude); other expressions get a third of it.
        head_motion: nuisance head drift amplitude: translation (fraction of S),
            rotation (degrees), scale (fraction).
        noise_sigma: range of the sensor noise standard deviation (grey levels).
        illumination: range of the global gain and the maximum directional gradient.
    """

    preset: str = "tiny"
    seed: int = 0
    subjects: int = 10
    train_subjects: int = 7
    videos_per_expression: int = 2
    crop_size: int = 48
    supersample: int = 4
    expressions: tuple = PFED5_EXPRESSIONS
    min_length: dict = field(default_factory=lambda: {k: v[0] for k, v in _TINY_LENGTHS.items()})
    mean_length: dict = field(default_factory=lambda: {k: v[1] for k, v in _TINY_LENGTHS.items()})
    max_length: dict = field(default_factory=lambda: {k: v[2] for k, v in _TINY_LENGTHS.items()})
    fps: float = 25.0
    frame_format: str = "npy"
    severity_weights: tuple = (1.0, 1.0, 1.0, 1.0, 1.0)
    severity_amplitude: tuple = (1.0, 0.8, 0.6, 0.4, 0.2)
    expression_gain: float = 1.0
    severity_slowdown: tuple = (1.0, 1.3, 1.6, 1.9, 2.2)
    blink_rate: float = 0.05
    blink_rate_factor: tuple = (1.0, 0.75, 0.55, 0.4, 0.3)
    blink_depth: tuple = (1.0, 0.95, 0.85, 0.75, 0.65)
    micro_amplitude: float = 0.2
    head_motion: tuple = (0.025, 3.0, 0.03)
    noise_sigma: tuple = (1.0, 4.0)
    illumination: tuple = (0.85, 1.15, 0.25)

    def to_json(self) -> dict:
        """The spec as a JSON-safe dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def validate(self) -> "SyntheticSpec":
        """Check every field; return ``self``.

        Raises:
            ConfigError: naming the field at fault and the allowed values.
        """
        if self.subjects < 2:
            raise ConfigError(f"synthetic spec: subjects must be >= 2 (one train, one test), got {self.subjects}")
        if not 1 <= self.train_subjects < self.subjects:
            raise ConfigError(
                f"synthetic spec: train_subjects must be in 1..{self.subjects - 1} (subjects={self.subjects}), "
                f"got {self.train_subjects}"
            )
        if self.videos_per_expression < 1:
            raise ConfigError(f"synthetic spec: videos_per_expression must be >= 1, got {self.videos_per_expression}")
        if self.crop_size < 16:
            raise ConfigError(f"synthetic spec: crop_size must be >= 16 pixels, got {self.crop_size}")
        if self.supersample < 1 or self.supersample > 8:
            raise ConfigError(f"synthetic spec: supersample must be in 1..8, got {self.supersample}")
        if not self.expressions:
            raise ConfigError("synthetic spec: expressions is empty")
        for e in self.expressions:
            if e not in PFED5_EXPRESSIONS:
                hint = difflib.get_close_matches(str(e), PFED5_EXPRESSIONS, n=1)
                raise ConfigError(
                    f"synthetic spec: unknown expression {e!r}"
                    + (f" (did you mean {hint[0]!r}?)" if hint else "")
                    + f"; choose from {', '.join(PFED5_EXPRESSIONS)}"
                )
        if len(set(self.expressions)) != len(self.expressions):
            raise ConfigError(f"synthetic spec: expressions repeat: {list(self.expressions)}")
        for e in self.expressions:
            try:
                lo, mu, hi = int(self.min_length[e]), float(self.mean_length[e]), int(self.max_length[e])
            except KeyError:
                raise ConfigError(f"synthetic spec: min/mean/max_length lack expression {e!r}") from None
            if not (2 <= lo <= mu <= hi):
                raise ConfigError(
                    f"synthetic spec: lengths of {e!r} must satisfy 2 <= min <= mean <= max, got {lo}, {mu}, {hi}"
                )
        if self.frame_format not in FRAME_FORMATS:
            raise ConfigError(f"synthetic spec: frame_format must be one of {FRAME_FORMATS}, got {self.frame_format!r}")
        for name in ("severity_weights", "severity_amplitude", "severity_slowdown", "blink_rate_factor", "blink_depth"):
            v = getattr(self, name)
            if len(v) != 5 or any((not math.isfinite(float(x))) or float(x) < 0 for x in v):
                raise ConfigError(f"synthetic spec: {name} needs 5 finite non-negative values (severity 0..4), got {v}")
        if sum(self.severity_weights) <= 0:
            raise ConfigError("synthetic spec: severity_weights sum to 0")
        if any(float(x) <= 0 for x in self.severity_amplitude):
            raise ConfigError("synthetic spec: severity_amplitude must be > 0 (severity 4 must still move)")
        if any(float(x) < 1 for x in self.severity_slowdown):
            raise ConfigError("synthetic spec: severity_slowdown values must be >= 1")
        if self.fps <= 0:
            raise ConfigError(f"synthetic spec: fps must be > 0, got {self.fps}")
        return self


def _preset_tiny() -> SyntheticSpec:
    # At 48 px a healthy smile moves the mouth corners by about 2 px and the nuisance
    # head drift by as much: exaggerate the expressions, calm the head and spread the
    # severity amplitudes, so that models trained from scratch on 2 CPU cores can find
    # the motion cue (measured: QAFE-Net test rho x 100 near 0 at the base settings, 80 here
    # with the recipe of benchmark/learning.py).
    # 30 subjects (20 train / 10 test), 2 videos each: 20 test videos per expression, 100 in all, so that
    # a bootstrap CI of the demo's rho can exclude 0 (6 test videos per expression gave cells of pure noise).
    return SyntheticSpec(expression_gain=2.0, head_motion=(0.01, 1.0, 0.01),
                         severity_amplitude=(1.0, 0.7, 0.45, 0.25, 0.1),
                         subjects=30, train_subjects=20, videos_per_expression=2)


def _preset_paper() -> SyntheticSpec:
    total = float(sum(_TABLE1_SEVERITY_COUNTS))
    return SyntheticSpec(
        preset="paper",
        subjects=41,
        train_subjects=30,
        videos_per_expression=14,  # 41 * 5 * 14 = 2870 videos (PFED5: 2811)
        crop_size=256,
        supersample=2,
        min_length={k: v[0] for k, v in _TABLE1_LENGTHS.items()},
        mean_length={k: v[1] for k, v in _TABLE1_LENGTHS.items()},
        max_length={k: v[2] for k, v in _TABLE1_LENGTHS.items()},
        frame_format="jpg",
        severity_weights=tuple(round(c / total, 4) for c in _TABLE1_SEVERITY_COUNTS),
    )


PRESETS = {"tiny": _preset_tiny, "paper": _preset_paper}
"""Named presets: ``tiny`` (CI and the demo: 30 subjects 20/10, 2 videos per expression, 48 px,
16-48 frames, exaggerated expressions, calm head) and ``paper`` (PFED5-like: 41 subjects 30/11, Table 1 lengths and
severity histogram, 256 px, JPEG frames)."""


def synthetic_spec(scale: str = "tiny", **overrides: Any) -> SyntheticSpec:
    """The preset ``scale`` with ``overrides`` applied, validated.

    ``min_length``/``mean_length``/``max_length`` accept an int (all expressions)
    or a dict merged onto the preset's; ``expressions`` accepts a name or a list.

    Raises:
        ConfigError: unknown preset or field (with a suggestion), or an invalid value.
    """
    if scale not in PRESETS:
        raise ConfigError(f"unknown synthetic preset {scale!r}; choose one of {', '.join(PRESETS)}")
    base = PRESETS[scale]()
    names = {f.name for f in dataclasses.fields(SyntheticSpec)}
    clean: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in names:
            hint = difflib.get_close_matches(key, sorted(names), n=1)
            raise ConfigError(
                f"unknown synthetic spec field {key!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                + f"; fields: {', '.join(sorted(names))}"
            )
        if key in ("min_length", "mean_length", "max_length"):
            old = dict(getattr(base, key))
            if isinstance(value, dict):
                old.update(value)
            else:
                old = {k: value for k in PFED5_EXPRESSIONS}
            value = old
        elif key == "expressions":
            value = (value,) if isinstance(value, str) else tuple(value)
        elif isinstance(value, list):
            value = tuple(value)
        clean[key] = value
    spec = dataclasses.replace(base, **clean)
    if any(k in clean for k in ("min_length", "max_length")) and "mean_length" not in clean:
        # keep the preset's mean inside a changed range
        mean = {e: min(max(float(spec.mean_length[e]), spec.min_length[e]), spec.max_length[e])
                for e in spec.mean_length if e in spec.min_length and e in spec.max_length}
        spec = dataclasses.replace(spec, mean_length=mean)
    return spec.validate()


# =============================================================================================
# Identity
# =============================================================================================

def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _mix(a, b, t) -> np.ndarray:
    return np.asarray(a, float) * (1 - t) + np.asarray(b, float) * t


def _identity(seed: int, subject: int) -> dict:
    """Draw one subject's identity (independent of every severity)."""
    rng = np.random.default_rng([seed, 1, subject])
    idn: dict[str, Any] = {}
    # placement in the crop (fractions of S) and size (face half-width / S)
    idn["face_scale"] = _u(rng, 0.29, 0.34)
    idn["centre"] = (0.5 + _u(rng, -0.035, 0.035), 0.46 + _u(rng, -0.025, 0.03))
    # head shape (units: face half-width)
    idn["skull"] = _u(rng, 1.15, 1.32)
    idn["chin"] = _u(rng, 1.22, 1.42)
    idn["jaw_square"] = _u(rng, 2.0, 3.0)
    idn["jaw_narrow"] = _u(rng, 0.08, 0.3)
    # eyes
    idn["eye_x"] = _u(rng, 0.4, 0.47)
    idn["eye_y"] = _u(rng, -0.2, -0.1)
    idn["eye_w"] = _u(rng, 0.18, 0.22)
    idn["eye_h"] = _u(rng, 0.075, 0.1)
    idn["eye_low"] = _u(rng, 0.45, 0.65)  # lower-lid depth / eye_h
    idn["eye_tilt"] = _u(rng, -0.02, 0.025)
    idn["rest_open"] = _u(rng, 0.75, 1.05)  # neutral-shape variation
    idn["iris_r"] = _u(rng, 0.4, 0.47)  # / eye_w
    # brows
    idn["brow_h"] = _u(rng, 0.15, 0.24)  # neutral-shape variation
    idn["brow_len"] = _u(rng, 0.22, 0.28)
    idn["brow_thick"] = _u(rng, 0.04, 0.065)
    idn["brow_arch"] = _u(rng, 0.01, 0.05)
    idn["brow_slope"] = _u(rng, -0.035, 0.035)  # neutral-shape variation
    idn["brow_dx"] = _u(rng, -0.01, 0.03)
    # nose
    idn["nose_y"] = _u(rng, 0.2, 0.3)
    idn["nose_w"] = _u(rng, 0.12, 0.16)
    # mouth
    idn["mouth_y"] = idn["nose_y"] + _u(rng, 0.22, 0.3)
    idn["mouth_w"] = _u(rng, 0.28, 0.36)
    idn["lip_up"] = _u(rng, 0.04, 0.065)
    idn["lip_lo"] = _u(rng, 0.05, 0.085)
    idn["rest_curv"] = _u(rng, -0.035, 0.035)  # neutral-shape variation (negative: corners up)
    idn["bow"] = _u(rng, 0.004, 0.018)
    # motion personality (independent of severity)
    idn["expressivity"] = _u(rng, 0.85, 1.15)
    idn["style"] = rng.uniform(0.8, 1.2, size=24)  # per movement channel (shared by both sides)
    idn["asymmetry"] = rng.uniform(0.95, 1.05, size=24)  # left/right difference
    # colours (RGB)
    t = _u(rng, 0.0, 1.0)
    skin = _mix((238, 205, 180), (96, 62, 44), t) * rng.uniform(0.95, 1.05, 3)
    idn["skin"] = np.clip(skin, 30, 250)
    idn["lip"] = np.clip(idn["skin"] * np.array([0.86, 0.58, 0.6]) + rng.uniform(-8, 8, 3), 15, 245)
    hair_kind = int(rng.integers(0, 5))
    hair = [(40, 30, 25), (95, 65, 40), (150, 140, 130), (200, 195, 190), (180, 140, 80)][hair_kind]
    idn["hair"] = np.clip(np.array(hair, float) + rng.uniform(-15, 15, 3), 10, 245)
    brow = _mix(idn["hair"], (35, 28, 24), _u(rng, 0.3, 0.7))
    idn["brow_col"] = np.clip(np.minimum(brow, idn["skin"] * 0.55), 10, 200)  # always darker than the skin
    idn["iris_col"] = np.array([(85, 55, 30), (70, 110, 150), (80, 110, 70), (50, 35, 25)][int(rng.integers(0, 4))],
                               float)
    idn["cloth"] = rng.uniform(30, 220, 3)
    idn["hair_style"] = int(rng.integers(0, 4))  # 0 bald-ish, 1 short, 2 medium, 3 long
    idn["hairline"] = _u(rng, -0.95, -0.72)
    idn["hair_volume"] = _u(rng, 1.04, 1.16)
    # background: base colour, second colour, texture kind and parameters
    idn["bg"] = np.clip(_u(rng, 70, 215) + rng.uniform(-30, 30, 3), 0, 255)
    idn["bg2"] = np.clip(idn["bg"] + _u(rng, -45, 45) + rng.uniform(-15, 15, 3), 0, 255)
    idn["bg_kind"] = int(rng.integers(0, 3))  # 0 gradient, 1 blotches, 2 stripes
    idn["bg_angle"] = _u(rng, 0, 2 * math.pi)
    idn["bg_freq"] = _u(rng, 2.0, 6.0)
    idn["bg_blotch"] = rng.uniform(0, 1, (6, 6))
    return idn


def _background(idn: dict, size: int) -> np.ndarray:
    """(size, size, 3) float32 background of one subject (texture independent of severity)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    a = idn["bg_angle"]
    lin = (np.cos(a) * (xx - 0.5) + np.sin(a) * (yy - 0.5)) + 0.5
    if idn["bg_kind"] == 0:
        w = np.clip(lin, 0, 1)
    elif idn["bg_kind"] == 1:
        w = cv2.resize(idn["bg_blotch"].astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
        w = np.clip(w, 0, 1)
    else:
        w = 0.5 + 0.5 * np.sin(2 * math.pi * idn["bg_freq"] * lin)
    bg = idn["bg"][None, None, :] * (1 - w[..., None]) + idn["bg2"][None, None, :] * w[..., None]
    return bg.astype(np.float32)


# =============================================================================================
# Motion: per-frame state of the face (canonical units: face half-width = 1)
# =============================================================================================

# state vector channels
_CH = {name: i for i, name in enumerate([
    "open_l", "open_r",            # upper-lid opening multiplier (x eye_h)
    "lowraise_l", "lowraise_r",    # lower lid raise fraction (0 .. 1)
    "brow_in_l", "brow_in_r",      # inner brow end dy (+ down)
    "brow_out_l", "brow_out_r",    # outer brow end dy (+ down)
    "brow_dx_l", "brow_dx_r",      # inner brow end shift toward the midline
    "corner_dy_l", "corner_dy_r",  # mouth corner dy (+ down)
    "corner_dx_l", "corner_dx_r",  # mouth corner shift outward
    "open_up", "open_lo",          # inner upper lip up / inner lower lip down (teeth)
    "lip_thin",                    # lip retraction fraction (0 .. 1)
    "upper_mid",                   # upper lip centre dy (+ down)
])}
_NCH = len(_CH)


def _effect(**kw: float) -> np.ndarray:
    v = np.zeros(_NCH)
    for k, x in kw.items():
        if k.endswith("_"):  # both sides
            v[_CH[k + "l"]] = x
            v[_CH[k + "r"]] = x
        else:
            v[_CH[k]] = x
    return v


# Expression effects at activation 1 (full, healthy amplitude).
_EFFECTS = {
    "smile": _effect(corner_dy_=-0.10, corner_dx_=0.055, open_up=0.006, open_lo=0.02, upper_mid=-0.008,
                     lowraise_=0.4, open_=-0.18, brow_in_=-0.012, brow_out_=-0.01),
    "frown": _effect(brow_in_=0.075, brow_out_=0.025, brow_dx_=0.045, open_=-0.15, lowraise_=0.1,
                     corner_dy_=0.022, corner_dx_=-0.012, lip_thin=0.2),
    "squeeze_eyes": _effect(open_=-1.0, lowraise_=0.6, brow_in_=0.06, brow_out_=0.05, brow_dx_=0.02,
                            corner_dy_=-0.025, corner_dx_=0.02, lip_thin=0.15),
    "clench_teeth": _effect(open_up=0.03, open_lo=0.05, corner_dx_=0.065, corner_dy_=0.01, lip_thin=0.4,
                            open_=-0.05, lowraise_=0.05),
}

# Spontaneous micro-movement channels and their amplitudes (x micro_amplitude).
_MICRO = _effect(corner_dy_=0.1, corner_dx_=0.05, brow_in_=0.1, brow_out_=0.08, open_=0.5,
                 open_lo=0.03, lip_thin=0.3, upper_mid=0.03)


def _style_weights(idn: dict) -> np.ndarray:
    """(channels,) the subject's weight of each movement channel: one draw per movement,
    shared by the left and right channel, times a small left/right asymmetry."""
    bases = sorted({name[:-2] if name[-2:] in ("_l", "_r") else name for name in _CH})
    w = np.empty(_NCH)
    for name, i in _CH.items():
        j = bases.index(name[:-2] if name[-2:] in ("_l", "_r") else name)
        w[i] = idn["style"][j] * (idn["asymmetry"][j] if name.endswith("_l") else 1.0)
    return w


def _smooth01(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * x * (x * (6 * x - 15) + 10)


def _clip_length(rng: np.random.Generator, spec: SyntheticSpec, expression: str) -> int:
    lo, mu, hi = spec.min_length[expression], float(spec.mean_length[expression]), spec.max_length[expression]
    return _beta_length(rng, lo, mu, hi)


def _beta_length(rng: np.random.Generator, lo: int, mu: float, hi: int) -> int:
    """A clip length in ``lo..hi`` frames: Beta law with mean ``mu`` and concentration 5."""
    if hi == lo:
        return int(lo)
    m = min(max((mu - lo) / (hi - lo), 0.02), 0.98)
    k = 5.0
    return int(round(lo + (hi - lo) * rng.beta(k * m, k * (1 - m))))


def _sinusoids(rng: np.random.Generator, n: int, k: int, period: tuple) -> tuple:
    """Severity-free draws for a smooth random signal: periods, phases, weights, each (n, k)."""
    per = rng.uniform(period[0], period[1], (n, k))
    ph = rng.uniform(0, 2 * math.pi, (n, k))
    w = rng.normal(0, 1, (n, k)) / math.sqrt(k / 2)
    return per, ph, w


def _eval_sinusoids(t: np.ndarray, per, ph, w, slow: float = 1.0, zero_at_start: bool = True) -> np.ndarray:
    """(T, n) sum of sinusoids; periods stretched by ``slow``; 0 at t=0 when asked."""
    arg = 2 * math.pi * t[:, None, None] / (per[None] * slow) + ph[None]
    x = (w[None] * np.sin(arg)).sum(-1)
    if zero_at_start:
        x = x - (w * np.sin(ph)).sum(-1)[None]
    return x


def _motion(spec: SyntheticSpec, idn: dict, expression: str, severity: int, rng: np.random.Generator,
            length: int) -> np.ndarray:
    """(T, channels) face state of one video. All draws are made before ``severity`` is used."""
    t = np.arange(length, dtype=float)
    amp_s = float(spec.severity_amplitude[severity])
    slow_s = float(spec.severity_slowdown[severity])
    # --- severity-free draws, always in the same order ---
    vid_gain = _u(rng, 0.92, 1.08)
    micro_draws = _sinusoids(rng, _NCH, 3, (10.0, 40.0))
    n_cand = 64
    blink_t = rng.uniform(1.0, max(length - 1.0, 1.5), n_cand)
    blink_keep = rng.uniform(0, 1, n_cand)  # thinning marks
    blink_dur = rng.uniform(4.0, 7.0, n_cand)
    blink_jit = rng.uniform(0.9, 1.05, n_cand)
    rest0_frac = _u(rng, 0.05, 0.2)
    end_frac = _u(rng, 0.0, 0.15)
    rep_u = _u(rng, 0, 1)
    on_frac = rng.uniform(0.12, 0.22, 2)
    off_frac = rng.uniform(0.12, 0.22, 2)
    rep_gain = rng.uniform(0.95, 1.05, 2)
    wobble = _sinusoids(rng, 1, 2, (6.0, 16.0))
    neutral_jit = rng.normal(0, 1, _NCH)

    state = np.zeros((length, _NCH))
    # neutral face of the subject (+ a little per-video variation)
    state[:, _CH["open_l"]] = state[:, _CH["open_r"]] = idn["rest_open"]
    state[:, _CH["corner_dy_l"]] = state[:, _CH["corner_dy_r"]] = idn["rest_curv"]
    state += (neutral_jit * np.abs(_MICRO) * 0.05)[None]

    gain = amp_s * idn["expressivity"] * vid_gain
    # spontaneous micro-movements (all expressions; larger at rest)
    micro_scale = spec.micro_amplitude * (1.0 if expression == "sit_at_rest" else 1.0 / 3.0)
    micro = _eval_sinusoids(t, *micro_draws, slow=slow_s)
    state += micro * _MICRO[None] * micro_scale * gain

    if expression == "sit_at_rest":
        base_rate = spec.blink_rate * float(spec.blink_rate_factor[severity])
        # candidate process: n_cand uniform times over the clip, thinned to the wanted rate
        p_keep = min(1.0, base_rate * max(length - 2.0, 1.0) / n_cand)
        depth = float(spec.blink_depth[severity])
        closure = np.zeros(length)
        for bt, keep, dur, jit in zip(blink_t, blink_keep, blink_dur, blink_jit):
            if keep >= p_keep:
                continue
            d = dur * (0.5 + 0.5 * slow_s)
            close_d, open_d = 0.35 * d, 0.65 * d
            x = np.where(t < bt, 1 - (bt - t) / close_d, 1 - (t - bt) / open_d)
            closure = np.maximum(closure, _smooth01(x) * depth * jit)
        closure[0] = 0.0
        for side in "lr":
            state[:, _CH["open_" + side]] *= 1 - np.clip(closure, 0, 1)
        return state

    # rest -> onset -> hold -> offset (x1 or x2)
    rest0 = max(1.0, rest0_frac * length)
    window = max(2.0, length - rest0 - end_frac * length)
    n_rep = 2 if (length >= 40 and rep_u < 0.3) else 1
    seg = window / n_rep
    act = np.zeros(length)
    wob = 1 + 0.04 * _eval_sinusoids(t, *wobble, zero_at_start=False)[:, 0]
    for r in range(n_rep):
        start = rest0 + r * seg
        on, off = on_frac[r] * slow_s * seg, off_frac[r] * slow_s * seg
        if on + off > 0.92 * seg:
            f = 0.92 * seg / (on + off)
            on, off = on * f, off * f
        rise = _smooth01((t - start) / max(on, 1e-6))
        fall = 1 - _smooth01((t - (start + seg - off)) / max(off, 1e-6))
        peak = rep_gain[r] * (1 - 0.05 * severity) ** r
        act = np.maximum(act, np.minimum(rise, fall) * peak)
    act = act * wob * gain * spec.expression_gain
    act[0] = 0.0
    eff = _EFFECTS[expression] * _style_weights(idn)
    state += act[:, None] * eff[None]
    return state


# =============================================================================================
# Geometry: states (T, channels) -> canonical points (T, n, 2), vectorised over frames
# =============================================================================================

def _col(st: np.ndarray, name: str) -> np.ndarray:
    """(T, 1) column of the state array."""
    return st[:, _CH[name]][:, None]


def _xy(x, y) -> np.ndarray:
    x, y = np.broadcast_arrays(np.asarray(x, float), np.asarray(y, float))
    return np.stack([x, y], -1)


def _eye(idn: dict, st: np.ndarray, side: int, gaze: tuple) -> dict:
    """One eye over all frames. side -1 = image-left, +1 = image-right."""
    k = "l" if side < 0 else "r"
    cx, cy = side * idn["eye_x"], idn["eye_y"]
    ew, eh = idn["eye_w"], idn["eye_h"]
    opening = np.maximum(0.0, _col(st, "open_" + k)) * eh                          # (T, 1)
    low = idn["eye_low"] * eh * (1 - np.clip(_col(st, "lowraise_" + k), 0, 0.95))  # (T, 1)
    tilt = idn["eye_tilt"]

    def upper(u):  # u = +1 outer corner, -1 inner corner -> (T, n, 2)
        u = np.asarray(u, float)
        return _xy(cx + side * ew * u, cy - tilt * u - opening * (1 - u * u) ** 0.6 * (1 + 0.12 * u))

    def lower(u):
        u = np.asarray(u, float)
        return _xy(cx + side * ew * u, cy - tilt * u + low * (1 - u * u) ** 0.7)

    ud = np.linspace(1, -1, 17)
    up, lo = upper(ud), lower(ud)
    ir = idn["iris_r"] * ew
    ix, iy = cx + side * gaze[0] * ew, cy + gaze[1] * eh - 0.1 * eh
    uc = (ix - cx) / (side * ew)
    y_top, y_bot = upper([uc])[:, 0, 1], lower([uc])[:, 0, 1]
    centre = _xy(np.full(len(st), ix), np.clip(iy, y_top, y_bot))[:, None]  # iris centre between the lids
    lm = np.concatenate([upper([1.0]), centre, upper([0.6, 0.2, -0.2, -0.6]), upper([-1.0]),
                         lower([-0.5, 0.0, 0.5])], 1)
    h = eh * 1.2 + ir + 0.02
    cap_up = np.concatenate([up, up[:, [-1]] - [0, h], up[:, [0]] - [0, h]], 1)
    cap_lo = np.concatenate([lo, lo[:, [-1]] + [0, h], lo[:, [0]] + [0, h]], 1)
    return {"lm": lm, "upper": up, "lower": lo, "sclera": np.concatenate([up, lo[:, ::-1][:, 1:-1]], 1),
            "cap_up": cap_up, "cap_lo": cap_lo, "iris": (ix, iy, ir)}


def _brow(idn: dict, st: np.ndarray, side: int) -> dict:
    k = "l" if side < 0 else "r"
    bl = idn["brow_len"]
    bx = side * (idn["eye_x"] + idn["brow_dx"])
    by = idn["eye_y"] - idn["brow_h"]
    d_in, d_out, dx_in = _col(st, "brow_in_" + k), _col(st, "brow_out_" + k), _col(st, "brow_dx_" + k)

    def edge(u, sgn):  # u = 0 inner end, 1 outer end; sgn +1 lower edge, -1 upper edge
        u = np.asarray(u, float)
        x = bx + side * bl * (2 * u - 1) - side * dx_in * (1 - u)
        y = by - idn["brow_arch"] * 4 * u * (1 - u) + idn["brow_slope"] * (u - 0.5) + d_in * (1 - u) + d_out * u
        th = idn["brow_thick"] * (1 - 0.45 * u) * np.minimum(1.0, np.sqrt(np.clip(u, 0, 1) / 0.12)) \
            * np.minimum(1.0, np.sqrt(np.clip(1 - u, 0, 1) / 0.06))
        return _xy(x, y + sgn * th / 2)

    lm = np.concatenate([edge([0.0], 1), edge([0.25, 0.5, 0.75], 1), edge([1.0], 1),
                         edge([0.8, 0.6, 0.4, 0.2], -1)], 1)
    ud = np.linspace(0, 1, 21)
    return {"lm": lm, "poly": np.concatenate([edge(ud, 1), edge(ud[::-1][1:-1], -1)], 1)}


def _mouth(idn: dict, st: np.ndarray) -> dict:
    my, mw = idn["mouth_y"], idn["mouth_w"]
    thin = np.clip(_col(st, "lip_thin"), 0, 0.8)
    ul, ll = idn["lip_up"] * (1 - thin), idn["lip_lo"] * (1 - 0.8 * thin)
    o_up, o_lo = np.maximum(0.0, _col(st, "open_up")), np.maximum(0.0, _col(st, "open_lo"))
    xl = -mw - _col(st, "corner_dx_l")
    xr = mw + _col(st, "corner_dx_r")
    dyl, dyr = _col(st, "corner_dy_l"), _col(st, "corner_dy_r")
    mid = _col(st, "upper_mid")
    ic = 0.85  # inner lip corners at this fraction of the half-width

    def pt(u, off):  # point at u in [-1, 1] along the lip seam, moved down by off
        u = np.asarray(u, float)
        return _xy(xl + (u + 1) / 2 * (xr - xl), my + np.where(u < 0, dyl, dyr) * u * u + off)

    def bump(u):  # 1 at the centre, 0 at and beyond the inner corners
        v = np.clip(np.asarray(u, float) / ic, -1, 1)
        return 1 - v * v

    def inner_up(u):
        return pt(u, -o_up * bump(u))

    def inner_lo(u):
        return pt(u, o_lo * bump(u))

    def outer_up(u):
        u = np.asarray(u, float)
        bow = idn["bow"] * np.exp(-(u / 0.12) ** 2)
        return pt(u, -o_up * bump(u) - ul * (1 - u * u) ** 0.6 + bow + mid * (1 - u * u))

    def outer_lo(u):
        u = np.asarray(u, float)
        return pt(u, o_lo * bump(u) + ll * (1 - u * u) ** 0.7)

    lm = np.concatenate([
        pt([-1.0], 0.0), outer_up([-0.7, -0.35, 0.0, 0.35, 0.7]), pt([1.0], 0.0),
        outer_lo([0.7, 0.35, 0.0, -0.35, -0.7]),
        pt([-ic], 0.0), inner_up(np.array([-0.45, 0.0, 0.45]) * ic), pt([ic], 0.0),
        inner_lo(np.array([0.45, 0.0, -0.45]) * ic),
    ], 1)
    ud = np.linspace(-1, 1, 25)
    ui = np.linspace(-ic, ic, 19)
    iu, il = inner_up(ui), inner_lo(ui)
    return {"lm": lm, "outer": np.concatenate([outer_up(ud), outer_lo(ud[::-1][1:-1])], 1),
            "inner": np.concatenate([iu, il[:, ::-1][:, 1:-1]], 1), "seam": 0.5 * (iu + il),
            "open": (o_up + o_lo)[:, 0]}


def _nose(idn: dict) -> np.ndarray:
    """(15, 2) nose points (rigid: the nose does not move with the expressions)."""
    ny, nw, ey = idn["nose_y"], idn["nose_w"], idn["eye_y"]
    bridge = [(0.0, ey + f * (ny - 0.08 - ey)) for f in (0.05, 0.35, 0.65, 0.95)]
    return np.array(bridge + [
        (-0.7 * nw, ny - 0.06), (-nw, ny + 0.0),                        # left ala
        (-0.8 * nw, ny + 0.035), (-0.4 * nw, ny + 0.05), (0.0, ny + 0.055),
        (0.4 * nw, ny + 0.05), (0.8 * nw, ny + 0.035),                 # base
        (nw, ny + 0.0), (0.7 * nw, ny - 0.06),                          # right ala
        (0.0, ny - 0.04), (0.0, ny + 0.01),                             # lower bridge, tip
    ])


def _face_outline(idn: dict, n: int = 72) -> np.ndarray:
    phi = np.linspace(0, 2 * math.pi, n, endpoint=False)
    c, s = np.cos(phi), np.sin(phi)
    up = s < 0
    p = 2.0 / idn["jaw_square"]
    x = np.where(up, c, np.sign(c) * np.abs(c) ** p * (1 - idn["jaw_narrow"] * np.abs(s) ** 2))
    y = np.where(up, idn["skull"] * s, idn["chin"] * np.abs(s) ** p)
    return np.stack([x, y], -1)


def _ellipse_pts(cx, cy, ax, ay, n=40, a0=0.0, a1=2 * math.pi) -> np.ndarray:
    a = np.linspace(a0, a1, n)
    return np.stack([cx + ax * np.cos(a), cy + ay * np.sin(a)], -1)


# =============================================================================================
# Rendering: a list of drawing operations on (T, n, 2) point sets, transformed at once
# =============================================================================================

_SHIFT = 4
_ONE = 1 << _SHIFT


def _rgb(c) -> tuple:
    return tuple(float(x) for x in np.clip(c, 0, 255))


def _ops(idn: dict, state: np.ndarray, gaze: tuple) -> tuple[list, np.ndarray]:
    """Drawing operations of one video in painting order, and the (T, 73, 2) canonical landmarks.

    Each op: (kind, points (T, n, 2) or (n, 2), colour, width, per-frame mask or None);
    kind 'fill' (polygon), 'line' (open polyline), 'loop' (closed polyline), 'dot' (disc of
    radius ``width`` around each point).
    """
    T = len(state)
    skin = idn["skin"]
    ops: list = []
    # neck, clothes, hair behind the head, ears, face
    ops.append(("fill", np.array([(-0.42, 0.6), (0.42, 0.6), (0.48, 2.6), (-0.48, 2.6)]), skin * 0.85, 0, None))
    ch = idn["chin"]
    ops.append(("fill", np.array([(-3.0, 3.5), (-2.4, ch + 0.45), (-0.5, ch + 0.15), (0.5, ch + 0.15),
                                  (2.4, ch + 0.45), (3.0, 3.5)]), idn["cloth"], 0, None))
    style = idn["hair_style"]
    if style > 0:
        vol = idn["hair_volume"]
        back = _ellipse_pts(0.0, -0.1, vol + 0.04 * style, idn["skull"] * vol + 0.05, n=60,
                            a0=0.5 * math.pi, a1=2.5 * math.pi)  # starts at the bottom: the kept arc is contiguous
        cut = (-0.15, 0.35, 1.2)[style - 1]
        ops.append(("fill", back[back[:, 1] < cut], idn["hair"], 0, None))
    for sx in (-1, 1):
        ops.append(("fill", _ellipse_pts(sx * 0.98, idn["eye_y"] + 0.22, 0.11, 0.2, n=24), skin * 0.88, 0, None))
    ops.append(("fill", _face_outline(idn), skin, 0, None))
    if style > 0:  # fringe down to a wavy hairline
        outline = _face_outline(idn, 96)
        top = outline[outline[:, 1] < idn["hairline"]]
        top = top[np.argsort(top[:, 0])]
        xs = np.linspace(top[0, 0], top[-1, 0], 9)
        wave = idn["hairline"] + 0.04 * np.sin(xs * (2 + style)) + 0.06 * (1 - (xs / max(abs(xs[0]), 1e-3)) ** 2)
        ops.append(("fill", np.concatenate([top, np.stack([xs[::-1], wave[::-1]], -1)]), idn["hair"], 0, None))
    # nose: bridge shadow, alae and base, nostrils
    nose = _nose(idn)
    ops.append(("line", nose[[0, 1, 2, 3, 13, 14]], skin * 0.84, 0.022, None))
    ops.append(("line", nose[[4, 5, 6, 7, 8, 9, 10, 11, 12]], skin * 0.74, 0.018, None))
    ops.append(("dot", nose[[7, 9]], skin * 0.42, 0.018, None))
    # eyes: sclera, iris, pupil, catch light, lid skin over what the lids hide, lid lines
    eyes = [_eye(idn, state, -1, gaze), _eye(idn, state, 1, gaze)]
    for e in eyes:
        ix, iy, ir = e["iris"]
        ops.append(("fill", e["sclera"], (238, 236, 230), 0, None))
        ops.append(("dot", np.array([(ix, iy)]), idn["iris_col"], ir, None))
        ops.append(("dot", np.array([(ix, iy)]), (15, 12, 12), ir * 0.45, None))
        ops.append(("dot", np.array([(ix + 0.3 * ir, iy - 0.3 * ir)]), (245, 245, 245), ir * 0.18, None))
        ops.append(("fill", e["cap_up"], skin, 0, None))
        ops.append(("fill", e["cap_lo"], skin, 0, None))
        ops.append(("line", e["lower"], skin * 0.6, 0.012, None))
        ops.append(("line", e["upper"], (40, 28, 25), 0.02, None))
    brows = [_brow(idn, state, -1), _brow(idn, state, 1)]
    for b in brows:
        ops.append(("fill", b["poly"], idn["brow_col"], 0, None))
    # mouth: lips, then teeth (open) or the lip seam (closed)
    m = _mouth(idn, state)
    is_open = m["open"] > 0.004
    ops.append(("fill", m["outer"], idn["lip"], 0, None))
    ops.append(("fill", m["inner"], (232, 228, 214), 0, is_open))
    ops.append(("line", m["seam"][:, 2:-2], (150, 140, 130), 0.008, is_open))
    ops.append(("loop", m["inner"], idn["lip"] * 0.45, 0.01, is_open))
    ops.append(("line", m["seam"], idn["lip"] * 0.45, 0.014, ~is_open))
    lm = np.concatenate([eyes[0]["lm"], brows[0]["lm"], m["lm"], np.broadcast_to(nose, (T, 15, 2)),
                         eyes[1]["lm"], brows[1]["lm"]], 1)
    return ops, lm


def _nuisance(rng: np.random.Generator, spec: SyntheticSpec, length: int) -> dict:
    """Per-frame head pose, illumination and noise parameters (never depend on severity)."""
    t = np.arange(length, dtype=float)
    tr, rot, sc = spec.head_motion
    drift = _eval_sinusoids(t, *_sinusoids(rng, 4, 3, (20.0, 90.0)), zero_at_start=False)
    drift0 = rng.uniform(-1, 1, 4)
    jitter = rng.normal(0, 1, (length, 4)) * 0.08
    pose = 0.6 * drift + 0.4 * drift0[None] + jitter
    g0, g1 = rng.uniform(spec.illumination[0], spec.illumination[1], 2)
    ramp = _smooth01((t - rng.uniform(0, 0.5) * length) / max(1.0, rng.uniform(0.3, 1.0) * length))
    return {
        "dx": tr * pose[:, 0], "dy": tr * pose[:, 1],
        "angle": np.deg2rad(rot) * pose[:, 2], "scale": 1 + sc * pose[:, 3],
        "gain": g0 + (g1 - g0) * ramp,
        "grad": _u(rng, 0, spec.illumination[2]), "grad_angle": _u(rng, 0, 2 * math.pi),
        "sigma": _u(rng, spec.noise_sigma[0], spec.noise_sigma[1]),
        "noise_seed": int(rng.integers(0, 2**31 - 1)),
        "gaze": (_u(rng, -0.25, 0.25), _u(rng, -0.15, 0.15)),
    }


def render_video(spec: SyntheticSpec, subject: int, expression: str, repetition: int, severity: int,
                 seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Draw one synthetic video.

    Args:
        spec: the dataset spec (crop size, lengths, severity model, nuisances).
        subject: 0-based subject index (selects the identity).
        expression: one of the PFED5 expression names.
        repetition: 0-based repetition index of this (subject, expression).
        severity: 0..4; acts on the facial motion only: the same
            ``(subject, expression, repetition)`` at another severity has the same
            length and the same first frame.
        seed: master seed; ``spec.seed`` when None.

    Returns:
        ``frames (T, S, S, 3)`` uint8 RGB and ``landmarks (T, 73, 2)`` float32
        (x, y) in crop pixels (pixel centres at integers), scheme :data:`SYNTHETIC_SCHEME`.

    Raises:
        ConfigError: unknown expression or severity outside 0..4.
    """
    if expression not in PFED5_EXPRESSIONS:
        raise ConfigError(f"unknown expression {expression!r}; choose from {', '.join(PFED5_EXPRESSIONS)}")
    if int(severity) != severity or not 0 <= int(severity) <= 4:
        raise ConfigError(f"severity must be an integer 0..4, got {severity!r}")
    severity = int(severity)
    seed = spec.seed if seed is None else int(seed)
    e_idx = PFED5_EXPRESSIONS.index(expression)
    idn = _identity(seed, subject)
    rng_len = np.random.default_rng([seed, 2, subject, e_idx, repetition, 0])
    rng_nuis = np.random.default_rng([seed, 2, subject, e_idx, repetition, 1])
    rng_motion = np.random.default_rng([seed, 2, subject, e_idx, repetition, 2])
    length = _clip_length(rng_len, spec, expression)
    nui = _nuisance(rng_nuis, spec, length)
    state = _motion(spec, idn, expression, severity, rng_motion, length)
    return _draw_state(spec, idn, state, nui)


def _draw_state(spec: SyntheticSpec, idn: dict, state: np.ndarray, nui: dict) -> tuple[np.ndarray, np.ndarray]:
    """Draw a face state sequence: the renderer shared by :func:`render_video` and the
    synthetic UNBC-like generator (:mod:`benchmark.data.synthetic_unbc`).

    Args:
        spec: only ``crop_size`` and ``supersample`` are read.
        idn: a subject identity (``_identity(seed, subject)``).
        state: ``(T, channels)`` face state (the motion model's output; channels :data:`_CH`).
        nui: per-frame head pose, illumination and noise (``_nuisance(rng, spec, T)``).

    Returns:
        ``frames (T, S, S, 3)`` uint8 RGB and ``landmarks (T, 73, 2)`` float32, as
        :func:`render_video`.
    """
    length = len(state)
    ops, lm = _ops(idn, state, nui["gaze"])

    # one similarity transform per frame: canonical units -> canvas pixels (centres at integers)
    s, k = spec.crop_size, spec.supersample
    big = s * k
    scale = idn["face_scale"] * big * nui["scale"]                                      # (T,)
    ca, sa = np.cos(nui["angle"]), np.sin(nui["angle"])
    rot = np.stack([np.stack([ca, -sa], -1), np.stack([sa, ca], -1)], -2) * scale[:, None, None]  # (T, 2, 2)
    centre = np.stack([(idn["centre"][0] + nui["dx"]) * big - 0.5, (idn["centre"][1] + nui["dy"]) * big - 0.5], -1)
    pts = [np.broadcast_to(op[1], (length,) + np.shape(op[1])[-2:]) for op in ops] + [lm]
    sizes = [p.shape[1] for p in pts]
    allp = np.einsum("tij,tnj->tni", rot, np.concatenate(pts, 1)) + centre[:, None]
    fixed = np.ascontiguousarray(np.rint(allp * _ONE).astype(np.int32))
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    landmarks = ((allp[:, bounds[-2]:] + 0.5) / k - 0.5).astype(np.float32)

    bg = np.clip(np.rint(_background(idn, big)), 0, 255).astype(np.uint8)  # LINE_AA needs 8-bit images
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s - 0.5
    ga = nui["grad_angle"]
    light = (1 + nui["grad"] * (np.cos(ga) * xx + np.sin(ga) * yy))[..., None].astype(np.float32)
    noise_rng = np.random.default_rng(nui["noise_seed"])
    draw = [(kind, bounds[j], bounds[j + 1], _rgb(col), width, mask) for j, (kind, _, col, width, mask)
            in enumerate(ops)]
    frames = np.empty((length, s, s, 3), np.uint8)
    canvas = np.empty_like(bg)
    aa = cv2.LINE_AA
    for i in range(length):
        np.copyto(canvas, bg)
        fi = fixed[i]
        for kind, a, b, col, width, mask in draw:
            if mask is not None and not mask[i]:
                continue
            p = fi[a:b]
            if kind == "fill":
                cv2.fillPoly(canvas, [p], col, aa, _SHIFT)
            elif kind == "dot":
                r = max(1, int(round(width * scale[i] * _ONE)))
                for q in p:
                    cv2.circle(canvas, (int(q[0]), int(q[1])), r, col, -1, aa, _SHIFT)
            else:
                th = max(1, int(round(width * scale[i])))
                cv2.polylines(canvas, [p], kind == "loop", col, th, aa, _SHIFT)
        img = cv2.resize(canvas, (s, s), interpolation=cv2.INTER_AREA) if k > 1 else canvas
        img = img.astype(np.float32) * (light * np.float32(nui["gain"][i]))
        img += noise_rng.standard_normal((s, s, 3), dtype=np.float32) * np.float32(nui["sigma"])
        np.clip(np.rint(img), 0, 255, out=img)
        frames[i] = img.astype(np.uint8)
    return frames, landmarks

# =============================================================================================
# Dataset plan and writing
# =============================================================================================

def _balanced_severities(rng: np.random.Generator, n: int, weights) -> np.ndarray:
    """n severities (labels 0..len(weights)-1) with counts proportional to ``weights``
    (largest remainder), shuffled."""
    w = np.asarray(weights, float)
    w = w / w.sum()
    raw = w * n
    counts = np.floor(raw).astype(int)
    rem = raw - counts
    order = np.lexsort((rng.uniform(0, 1, len(w)), -rem))  # largest remainder, random tie-break
    counts[order[: n - counts.sum()]] += 1
    sev = np.repeat(np.arange(len(w)), counts)
    return rng.permutation(sev)


def plan_synthetic(spec: SyntheticSpec) -> list[dict]:
    """The videos of a dataset, without drawing them.

    Returns:
        One dict per video, sorted by video id: ``video_id, subject, subject_index,
        expression, repetition, split, severity``. Subject ids are ``S001``...; video
        ids ``S001_smile_01``.
    """
    spec.validate()
    perm = np.random.default_rng([spec.seed, 0]).permutation(spec.subjects)
    train = set(perm[: spec.train_subjects].tolist())
    plan = []
    for e in spec.expressions:
        e_idx = PFED5_EXPRESSIONS.index(e)
        for split_idx, split in enumerate(("train", "test")):
            subs = [i for i in range(spec.subjects) if (i in train) == (split == "train")]
            items = [(i, r) for i in subs for r in range(spec.videos_per_expression)]
            sev = _balanced_severities(np.random.default_rng([spec.seed, 3, split_idx, e_idx]), len(items),
                                       spec.severity_weights)
            for (i, r), s in zip(items, sev):
                plan.append({
                    "video_id": f"S{i + 1:03d}_{e}_{r + 1:02d}", "subject": f"S{i + 1:03d}",
                    "subject_index": i, "expression": e, "repetition": r, "split": split,
                    "severity": int(s),
                })
    plan.sort(key=lambda v: v["video_id"])
    return plan


_STAMP = ".synthetic_spec.json"


def _claim_output(out: Path, card: str, backend: dict) -> dict | None:
    """Check that a generator may write ``card`` with ``backend`` into ``out``.

    Shared by :func:`generate_synthetic` and the synthetic UNBC-like generator.

    Returns:
        The manifest of a finished dataset of the same card and backend in ``out`` (to be
        returned as is), or None after creating ``out`` and writing the settings stamp
        (an interrupted generation with the same stamp resumes).

    Raises:
        ManifestError: ``out`` holds another dataset, an interrupted generation with
            other settings, or an interrupted preparation of another dataset.
    """
    mpath, stamp = out / "manifest.json", out / _STAMP
    if mpath.is_file():
        try:
            old = json.loads(mpath.read_text())
        except json.JSONDecodeError:
            old = {}
        if old.get("backend") == backend and old.get("card") == card:
            return old
        raise ManifestError(
            f"{out} already holds another prepared dataset (card {old.get('card')!r}, backend "
            f"{(old.get('backend') or {}).get('name')!r}, other settings or generator version); "
            "choose an empty folder or delete it"
        )
    if stamp.is_file() and json.loads(stamp.read_text()) != backend:
        raise ManifestError(
            f"{out} holds an interrupted synthetic generation with other settings ({stamp}); "
            "choose an empty folder or delete it"
        )
    if not stamp.is_file() and (out / ".partial.jsonl").is_file():
        raise ManifestError(
            f"{out} holds an interrupted preparation of another dataset (.partial.jsonl); "
            "choose an empty folder or delete it"
        )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(stamp, json.dumps(backend, indent=2))
    return None


def generate_synthetic(out: str | Path, *, scale: str = "tiny", seed: int = 0, **overrides: Any) -> dict:
    """Generate a synthetic PFED5-like prepared dataset into ``out``.

    Args:
        out: output folder (created). A folder holding a finished dataset of the
            same spec and generator version is returned as is; an interrupted
            generation of the same spec resumes (finished videos are skipped).
        scale: preset name (``tiny`` or ``paper``), see :data:`PRESETS`.
        seed: master seed; same seed and spec -> byte-identical files and the same
            manifest ``content_hash``.
        **overrides: :class:`SyntheticSpec` fields replacing the preset's.

    Returns:
        The manifest dict (also in ``out/manifest.json``): card ``synthetic``,
        landmark scheme ``synthetic_73``, backend ``{"name": "synthetic", "version":
        GENERATOR_VERSION, "settings": spec}``, ``synthetic_spec`` = the spec.

    Raises:
        ConfigError: unknown preset or spec field, or an invalid value.
        ManifestError: ``out`` holds another dataset (other spec, seed, version or format).
    """
    spec = synthetic_spec(scale, seed=int(seed), **overrides)
    out = Path(out)
    settings = spec.to_json()
    backend = {"name": "synthetic", "version": GENERATOR_VERSION, "settings": settings}
    done = _claim_output(out, CARD_NAME, backend)
    if done is not None:
        return done
    stamp = out / _STAMP
    writer = PreparedWriter(out, card=CARD_NAME, crop_size=spec.crop_size, landmark_scheme=SYNTHETIC_SCHEME,
                            backend=backend, frame_format=spec.frame_format, extra={"synthetic_spec": settings})
    for v in plan_synthetic(spec):
        if writer.has_video(v["video_id"]):
            continue
        frames, points = render_video(spec, v["subject_index"], v["expression"], v["repetition"], v["severity"])
        writer.add_video(v["video_id"], frames, points, np.ones(len(frames), bool), subject=v["subject"],
                         expression=v["expression"], label=float(v["severity"]), split=v["split"], fps=spec.fps,
                         source=f"synthetic:{GENERATOR_VERSION}:seed={spec.seed}")
    manifest = writer.finalize()
    stamp.unlink(missing_ok=True)
    return manifest


__all__ = [
    "GENERATOR_VERSION", "PRESETS", "SYNTHETIC_SCHEME", "EYE_CENTRES", "SyntheticSpec", "synthetic_spec",
    "plan_synthetic", "render_video", "generate_synthetic",
]
