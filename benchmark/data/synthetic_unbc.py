"""Synthetic UNBC-McMaster-like data: procedurally drawn faces showing pain, labelled by VAS.

The CI stand-in for the UNBC-McMaster Shoulder Pain Expression Archive (card
``synthetic_unbc``, protocol ``unbc_5fold``): 25 subjects ``S001``..``S025``, a few
sequences each, one sequence-level self-report label (VAS 0..10) per sequence. It is
written through :class:`~benchmark.data.prepared.PreparedWriter` in the same prepared
format as PFED5 and the synthetic PFED5-like data (expression ``pain``, split ``all``:
UNBC has no official split, the protocol's fold file ``datasets/synthetic_unbc/folds.json``
decides), with the same 73-point landmark scheme ``synthetic_73``.

Faces, identities, head-pose nuisance, illumination, noise and the drawing itself are
those of :mod:`benchmark.data.synthetic` (shared code, not a copy: identities are
``synthetic._identity(seed, subject)``, so subject ``S00k`` has the face of the PFED5-like
subject ``S00k`` of the same seed). Only the motion model is new.

The pain model (VAS v in 0..10, x = v / 10)
--------------------------------------------
A sequence is the subject's neutral face with spontaneous micro-movements and blinks
(rate independent of VAS) and 1..3 *pain episodes* (rest -> onset -> hold -> offset;
the number depends on the length only). One episode moves the face along
:data:`PAIN_EFFECT`, the action units of the PSPI score (Prkachin and Solomon):

- AU4 brow lowerer: brows down (inner ends most) and drawn together;
- AU6/AU7 cheek raiser / lid tightener: lower lids rise, upper lids narrow;
- AU43 eyes closed: at high activation the upper lids close (clamped at closed);
- AU9/AU10 nose wrinkler / upper lip raiser: the upper lip rises at its centre, the
  mouth widens a little and opens slightly (the drawn nose is rigid, so AU9 shows
  only through the lip).

VAS acts on the motion only, through two things:

- amplitude: the peak activation is ``pain_amplitude[0] + (pain_amplitude[1] -
  pain_amplitude[0]) * x`` times the subject's expressivity (0.85-1.15), a per-sequence
  jitter (0.9-1.1), a per-episode jitter (0.9-1.1) and ``expression_gain``;
- timing: the hold at the peak lasts ``pain_hold[0] + (pain_hold[1] - pain_hold[0]) * x``
  of the episode's share of the sequence (onset and offset durations and the onset time
  are drawn independently of VAS).

VAS 0 still moves a little (``pain_amplitude[0]``): people who report no pain still
grimace slightly during the range-of-motion test, and every sequence is a valid video.

Deliberately independent of VAS
-------------------------------
Identity (colours, sizes, positions, shapes, background), sequence length, the number
and onset times of the episodes, head pose drift, illumination, noise, blinks and
micro-movements. Every random number of a sequence is drawn before VAS is used and in
the same order for every VAS, so the same ``(subject, sequence)`` rendered at another
VAS has the same length and the same frame 0 (the neutral face), byte for byte. VAS
labels are dealt to sequences by a random permutation over the whole dataset (not per
subject), so no subject-level cue carries VAS and a subject's sequences span a range.

Labels
------
Whole numbers 0..10 by default (the archive's self-reports are recorded as whole
numbers in practice; the card allows fractions), with counts proportional to
``vas_weights``: about 40 % zero, then a long tail to 10 (an assumption shaped like the
archive's skew towards low pain, not its published histogram). ``vas_integer=False``
adds a uniform jitter in [-0.5, 0.5) to every non-zero label (clipped to 0..10).

Lengths
-------
A Beta law between ``min_length`` and ``max_length`` with mean ``mean_length``
(concentration 5, as the PFED5-like data): 48..683 frames; the ``paper`` preset has
the archive's mean 242 (200 sequences, about 48 400 frames), the ``tiny`` preset a mean
of 72 (mostly short sequences, a few of several hundred frames).

Determinism
-----------
Everything is a function of ``(spec, seed)``: identities from ``[seed, 1, subject]``
(shared with the PFED5-like generator), VAS from ``[seed, 5]`` (fractions from
``[seed, 6]``), each sequence from ``[seed, 4, subject, sequence, stream]``. Same seed ->
byte-identical files and the same manifest ``content_hash``.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from . import synthetic as syn
from .prepared import FRAME_FORMATS, PreparedWriter

GENERATOR_VERSION = "1.0"
"""Version of the pain motion model; bump when the output for a seed changes. The
manifest's backend also records the renderer's :data:`benchmark.data.synthetic.GENERATOR_VERSION`
(``renderer_version``), so a renderer change also invalidates a finished folder."""

CARD_NAME = "synthetic_unbc"
EXPRESSION = "pain"
SPLIT = "all"
NUM_FOLDS = 5

#: VAS 0..10 target histogram (relative counts): about 40 % zero, long tail to 10.
_VAS_WEIGHTS = (0.40, 0.12, 0.10, 0.08, 0.07, 0.06, 0.05, 0.04, 0.03, 0.03, 0.02)

PAIN_EFFECT = syn._effect(
    brow_in_=0.075, brow_out_=0.03, brow_dx_=0.035,  # AU4
    lowraise_=0.55, open_=-0.6,                      # AU6/7, towards AU43
    upper_mid=-0.035, open_up=0.008, corner_dx_=0.03, corner_dy_=-0.012, lip_thin=0.1,  # AU9/10
)
"""Pain movement at activation 1 (channels of the PFED5-like face state)."""


@dataclass(frozen=True)
class SyntheticUnbcSpec:
    """Every parameter of a synthetic UNBC-like dataset (stored in the manifest).

    Attributes:
        preset: name of the preset this spec started from (``tiny``, ``paper``).
        seed: master seed (``generate_synthetic_unbc`` sets it).
        subjects: number of subjects (ids ``S001``...); the fold file lists 25.
        sequences_per_subject: sequences per subject.
        crop_size: S, the square frame size in pixels.
        supersample: drawing oversampling factor (see :class:`benchmark.data.synthetic.SyntheticSpec`).
        min_length, mean_length, max_length: sequence length in frames (Beta law).
        fps: frames per second written to ``videos.csv``.
        frame_format: ``npy`` or ``jpg``.
        vas_weights: 11 relative frequencies of VAS 0..10 (largest-remainder counts).
        vas_integer: whole-number labels; False adds a uniform [-0.5, 0.5) to non-zero ones.
        pain_amplitude: peak activation at VAS 0 and at VAS 10 (linear in between).
        pain_hold: hold duration at VAS 0 and at VAS 10, as a fraction of the
            episode's share of the sequence (linear in between; at most 0.55).
        expression_gain: multiplies the pain movement (above 1 for small crops).
        micro_amplitude: spontaneous micro-movement amplitude.
        blink_rate: spontaneous blinks per frame (independent of VAS).
        head_motion, noise_sigma, illumination: nuisances, as in
            :class:`benchmark.data.synthetic.SyntheticSpec`.
    """

    preset: str = "tiny"
    seed: int = 0
    subjects: int = 25
    sequences_per_subject: int = 2
    crop_size: int = 48
    supersample: int = 4
    min_length: int = 48
    mean_length: float = 72.0
    max_length: int = 683
    fps: float = 25.0
    frame_format: str = "npy"
    vas_weights: tuple = _VAS_WEIGHTS
    vas_integer: bool = True
    pain_amplitude: tuple = (0.05, 1.0)
    pain_hold: tuple = (0.05, 0.45)
    expression_gain: float = 1.0
    micro_amplitude: float = 0.1
    blink_rate: float = 0.03
    head_motion: tuple = (0.025, 3.0, 0.03)
    noise_sigma: tuple = (1.0, 4.0)
    illumination: tuple = (0.85, 1.15, 0.25)

    def to_json(self) -> dict:
        """The spec as a JSON-safe dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def validate(self) -> "SyntheticUnbcSpec":
        """Check every field; return ``self``.

        Raises:
            ConfigError: naming the field at fault and the allowed values.
        """
        if self.subjects < NUM_FOLDS:
            raise ConfigError(f"synthetic_unbc spec: subjects must be >= {NUM_FOLDS} (one per fold), "
                              f"got {self.subjects}")
        if self.sequences_per_subject < 1:
            raise ConfigError(f"synthetic_unbc spec: sequences_per_subject must be >= 1, "
                              f"got {self.sequences_per_subject}")
        if self.crop_size < 16:
            raise ConfigError(f"synthetic_unbc spec: crop_size must be >= 16 pixels, got {self.crop_size}")
        if not 1 <= self.supersample <= 8:
            raise ConfigError(f"synthetic_unbc spec: supersample must be in 1..8, got {self.supersample}")
        lo, mu, hi = self.min_length, float(self.mean_length), self.max_length
        if int(lo) != lo or int(hi) != hi or not 2 <= lo <= mu <= hi:
            raise ConfigError(f"synthetic_unbc spec: lengths must be whole numbers with 2 <= min_length <= "
                              f"mean_length <= max_length, got {lo}, {mu}, {hi}")
        if self.frame_format not in FRAME_FORMATS:
            raise ConfigError(f"synthetic_unbc spec: frame_format must be one of {FRAME_FORMATS}, "
                              f"got {self.frame_format!r}")
        w = self.vas_weights
        if len(w) != 11 or any(not math.isfinite(float(x)) or float(x) < 0 for x in w) or sum(w) <= 0:
            raise ConfigError(f"synthetic_unbc spec: vas_weights needs 11 finite non-negative values "
                              f"(VAS 0..10) with a positive sum, got {w}")
        a0, a1 = (float(x) for x in self.pain_amplitude)
        if not 0 <= a0 < a1:
            raise ConfigError(f"synthetic_unbc spec: pain_amplitude must be (VAS 0, VAS 10) with "
                              f"0 <= first < second, got {self.pain_amplitude}")
        h0, h1 = (float(x) for x in self.pain_hold)
        if not 0 <= h0 <= h1 <= 0.55:
            raise ConfigError(f"synthetic_unbc spec: pain_hold must be (VAS 0, VAS 10) with "
                              f"0 <= first <= second <= 0.55, got {self.pain_hold}")
        if self.expression_gain <= 0 or self.micro_amplitude < 0 or self.blink_rate < 0:
            raise ConfigError("synthetic_unbc spec: expression_gain must be > 0, micro_amplitude and "
                              "blink_rate >= 0")
        if self.fps <= 0:
            raise ConfigError(f"synthetic_unbc spec: fps must be > 0, got {self.fps}")
        if len(self.head_motion) != 3 or len(self.noise_sigma) != 2 or len(self.illumination) != 3:
            raise ConfigError("synthetic_unbc spec: head_motion needs 3 values, noise_sigma 2, illumination 3")
        return self


def _preset_tiny() -> SyntheticUnbcSpec:
    # as the PFED5-like tiny preset: exaggerated movement and a calm head at 48 px
    return SyntheticUnbcSpec(expression_gain=2.0, head_motion=(0.01, 1.0, 0.01))


def _preset_paper() -> SyntheticUnbcSpec:
    return SyntheticUnbcSpec(preset="paper", sequences_per_subject=8, crop_size=256, supersample=2,
                             mean_length=242.0, frame_format="jpg")


PRESETS = {"tiny": _preset_tiny, "paper": _preset_paper}
"""Named presets: ``tiny`` (CI: 25 subjects x 2 sequences, 48 px, 48..683 frames with
mean 72, exaggerated movement, calm head; npy) and ``paper`` (UNBC-like: 25 x 8 = 200
sequences, mean length 242, 256 px, JPEG frames)."""


def synthetic_unbc_spec(scale: str = "tiny", **overrides: Any) -> SyntheticUnbcSpec:
    """The preset ``scale`` with ``overrides`` (:class:`SyntheticUnbcSpec` fields) applied, validated.

    Changing ``min_length``/``max_length`` alone keeps the preset's mean inside the new range.

    Raises:
        ConfigError: unknown preset or field (with a suggestion), or an invalid value.
    """
    if scale not in PRESETS:
        raise ConfigError(f"unknown synthetic_unbc preset {scale!r}; choose one of {', '.join(PRESETS)}")
    base = PRESETS[scale]()
    names = {f.name for f in dataclasses.fields(SyntheticUnbcSpec)}
    clean: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in names:
            hint = difflib.get_close_matches(key, sorted(names), n=1)
            raise ConfigError(
                f"unknown synthetic_unbc spec field {key!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                + f"; fields: {', '.join(sorted(names))}"
            )
        clean[key] = tuple(value) if isinstance(value, list) else value
    spec = dataclasses.replace(base, **clean)
    if ("min_length" in clean or "max_length" in clean) and "mean_length" not in clean:
        spec = dataclasses.replace(spec, mean_length=min(max(float(spec.mean_length), spec.min_length),
                                                         spec.max_length))
    return spec.validate()


def subject_id(index: int) -> str:
    """Subject id of 0-based subject ``index``: ``S001``, ``S002``, ..."""
    return f"S{index + 1:03d}"


def fold_assignment(subject_ids, folds: int = NUM_FOLDS) -> dict:
    """The fold file content for ``subject_ids``: sorted ascending, dealt round-robin.

    Args:
        subject_ids: the subject ids (any order, no repeats).
        folds: number of folds.

    Returns:
        ``{"rule": str, "folds": {"fold1": [...], ..., "foldK": [...]}}``, the format of
        ``datasets/unbc_mcmaster/folds_sorted_round_robin.json``.

    Raises:
        ConfigError: repeated ids or fewer ids than folds.
    """
    ids = sorted(str(s) for s in subject_ids)
    if len(set(ids)) != len(ids) or len(ids) < folds:
        raise ConfigError(f"fold_assignment: need at least {folds} distinct subject ids, got {len(ids)}")
    return {"rule": f"subject ids sorted ascending, position i -> fold (i mod {folds}) + 1",
            "folds": {f"fold{k + 1}": ids[k::folds] for k in range(folds)}}


def plan_synthetic_unbc(spec: SyntheticUnbcSpec) -> list[dict]:
    """The sequences of a dataset, without drawing them.

    Returns:
        One dict per sequence, sorted by video id: ``video_id`` (``S001_pain_01``),
        ``subject``, ``subject_index``, ``sequence`` (0-based), ``vas`` (float, 0..10).
    """
    spec.validate()
    items = [(i, q) for i in range(spec.subjects) for q in range(spec.sequences_per_subject)]
    vas = syn._balanced_severities(np.random.default_rng([spec.seed, 5]), len(items), spec.vas_weights)
    vas = vas.astype(float)
    if not spec.vas_integer:
        jitter = np.random.default_rng([spec.seed, 6]).uniform(-0.5, 0.5, len(items))
        vas = np.where(vas > 0, np.clip(vas + jitter, 0.0, 10.0), 0.0)
    plan = [{"video_id": f"{subject_id(i)}_{EXPRESSION}_{q + 1:02d}", "subject": subject_id(i),
             "subject_index": i, "sequence": q, "vas": round(float(v), 4)}
            for (i, q), v in zip(items, vas)]
    plan.sort(key=lambda v: v["video_id"])
    return plan


def _render_spec(spec: SyntheticUnbcSpec) -> syn.SyntheticSpec:
    """The PFED5-like spec carrying what the shared nuisance model and renderer read."""
    return syn.SyntheticSpec(crop_size=spec.crop_size, supersample=spec.supersample,
                             head_motion=tuple(spec.head_motion), noise_sigma=tuple(spec.noise_sigma),
                             illumination=tuple(spec.illumination))


def _pain_motion(spec: SyntheticUnbcSpec, idn: dict, vas: float, rng: np.random.Generator,
                 length: int) -> np.ndarray:
    """(T, channels) face state of one sequence. All draws are made before ``vas`` is used."""
    t = np.arange(length, dtype=float)
    # --- VAS-free draws, always in the same order ---
    vid_gain = syn._u(rng, 0.9, 1.1)
    micro_draws = syn._sinusoids(rng, syn._NCH, 3, (10.0, 40.0))
    n_cand = 128
    blink_t = rng.uniform(1.0, max(length - 1.0, 1.5), n_cand)
    blink_keep = rng.uniform(0, 1, n_cand)
    blink_dur = rng.uniform(4.0, 7.0, n_cand)
    rest0_frac = syn._u(rng, 0.03, 0.12)
    end_frac = syn._u(rng, 0.0, 0.1)
    ep_u = syn._u(rng, 0, 1)
    lead = rng.uniform(0, 1, 3)
    on_frac = rng.uniform(0.1, 0.2, 3)
    off_frac = rng.uniform(0.1, 0.2, 3)
    ep_gain = rng.uniform(0.9, 1.1, 3)
    wobble = syn._sinusoids(rng, 1, 2, (6.0, 16.0))
    neutral_jit = rng.normal(0, 1, syn._NCH)

    ch = syn._CH
    state = np.zeros((length, syn._NCH))
    state[:, ch["open_l"]] = state[:, ch["open_r"]] = idn["rest_open"]
    state[:, ch["corner_dy_l"]] = state[:, ch["corner_dy_r"]] = idn["rest_curv"]
    state += (neutral_jit * np.abs(syn._MICRO) * 0.05)[None]
    gain = idn["expressivity"] * vid_gain
    state += syn._eval_sinusoids(t, *micro_draws) * syn._MICRO[None] * spec.micro_amplitude * gain

    # pain episodes: the count depends on the length only
    n_max = min(3, 1 + length // 150)
    n_ep = min(n_max, 1 + int(ep_u * n_max))
    rest0 = max(1.0, rest0_frac * length)
    window = max(2.0, length - rest0 - end_frac * length)
    seg = window / n_ep
    x = float(vas) / 10.0
    a0, a1 = (float(v) for v in spec.pain_amplitude)
    h0, h1 = (float(v) for v in spec.pain_hold)
    amplitude = a0 + (a1 - a0) * x
    hold_frac = h0 + (h1 - h0) * x
    act = np.zeros(length)
    for r in range(n_ep):
        on, off, hold = on_frac[r] * seg, off_frac[r] * seg, hold_frac * seg
        room = max(0.0, seg * (1.0 - on_frac[r] - off_frac[r] - h1))  # VAS-free onset window
        start = rest0 + r * seg + lead[r] * room
        rise = syn._smooth01((t - start) / max(on, 1e-6))
        fall = 1 - syn._smooth01((t - (start + on + hold)) / max(off, 1e-6))
        act = np.maximum(act, np.minimum(rise, fall) * ep_gain[r])
    act = act * (1 + 0.04 * syn._eval_sinusoids(t, *wobble, zero_at_start=False)[:, 0])
    act = act * amplitude * gain * spec.expression_gain
    act[0] = 0.0
    state += act[:, None] * (PAIN_EFFECT * syn._style_weights(idn))[None]

    # spontaneous blinks (independent of VAS): a thinned candidate process
    p_keep = min(1.0, spec.blink_rate * max(length - 2.0, 1.0) / n_cand)
    closure = np.zeros(length)
    for bt, keep, dur in zip(blink_t, blink_keep, blink_dur):
        if keep < p_keep:
            xb = np.where(t < bt, 1 - (bt - t) / (0.35 * dur), 1 - (t - bt) / (0.65 * dur))
            closure = np.maximum(closure, syn._smooth01(xb))
    closure[0] = 0.0
    for side in "lr":
        state[:, ch["open_" + side]] *= 1 - closure
    return state


def sequence_length(spec: SyntheticUnbcSpec, subject: int, sequence: int, seed: int | None = None) -> int:
    """Length in frames of sequence ``sequence`` of subject ``subject`` (without drawing it).

    A Beta law on ``min_length..max_length`` with mean ``mean_length`` (concentration 5),
    independent of VAS; ``seed`` defaults to ``spec.seed``.
    """
    seed = spec.seed if seed is None else int(seed)
    rng = np.random.default_rng([seed, 4, subject, sequence, 0])
    return syn._beta_length(rng, int(spec.min_length), float(spec.mean_length), int(spec.max_length))


def render_sequence(spec: SyntheticUnbcSpec, subject: int, sequence: int, vas: float,
                    seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Draw one synthetic pain sequence.

    Args:
        spec: the dataset spec.
        subject: 0-based subject index (selects the identity).
        sequence: 0-based sequence index of this subject.
        vas: 0..10; acts on the motion only (peak amplitude and hold duration): the same
            ``(subject, sequence)`` at another VAS has the same length and frame 0.
        seed: master seed; ``spec.seed`` when None.

    Returns:
        ``frames (T, S, S, 3)`` uint8 RGB and ``landmarks (T, 73, 2)`` float32 (x, y) in
        crop pixels (pixel centres at integers), scheme :data:`benchmark.data.synthetic.SYNTHETIC_SCHEME`;
        ``min_length <= T <= max_length``.

    Raises:
        ConfigError: ``vas`` outside 0..10 or not finite.
    """
    try:
        v = float(vas)
    except (TypeError, ValueError):
        raise ConfigError(f"vas must be a number in 0..10, got {vas!r}") from None
    if not (math.isfinite(v) and 0.0 <= v <= 10.0):
        raise ConfigError(f"vas must be a number in 0..10, got {vas!r}")
    seed = spec.seed if seed is None else int(seed)
    rspec = _render_spec(spec)
    idn = syn._identity(seed, subject)
    length = sequence_length(spec, subject, sequence, seed)
    rng_nuis, rng_motion = (np.random.default_rng([seed, 4, subject, sequence, k]) for k in (1, 2))
    nui = syn._nuisance(rng_nuis, rspec, length)
    state = _pain_motion(spec, idn, v, rng_motion, length)
    return syn._draw_state(rspec, idn, state, nui)


def generate_synthetic_unbc(out: str | Path, *, scale: str = "tiny", seed: int = 0, **overrides: Any) -> dict:
    """Generate a synthetic UNBC-McMaster-like prepared dataset into ``out``.

    Args:
        out: output folder (created). A folder holding a finished dataset of the same
            spec and generator versions is returned as is; an interrupted generation of
            the same spec resumes (finished sequences are skipped).
        scale: preset name (``tiny`` or ``paper``), see :data:`PRESETS`.
        seed: master seed; same seed and spec -> byte-identical files and the same
            manifest ``content_hash``.
        **overrides: :class:`SyntheticUnbcSpec` fields replacing the preset's.

    Returns:
        The manifest dict (also in ``out/manifest.json``): card ``synthetic_unbc``,
        landmark scheme ``synthetic_73``, backend ``{"name": "synthetic_unbc", "version":
        GENERATOR_VERSION, "renderer_version": synthetic.GENERATOR_VERSION, "settings": spec}``,
        ``synthetic_unbc_spec`` = the spec. ``videos.csv``: expression ``pain``, split
        ``all``, label = VAS.

    Raises:
        ConfigError: unknown preset or spec field, or an invalid value.
        ManifestError: ``out`` holds another dataset (other card, spec, seed, version or
            format) or an interrupted generation of one.
    """
    spec = synthetic_unbc_spec(scale, seed=int(seed), **overrides)
    out = Path(out)
    settings = spec.to_json()
    backend = {"name": CARD_NAME, "version": GENERATOR_VERSION, "renderer_version": syn.GENERATOR_VERSION,
               "settings": settings}
    done = syn._claim_output(out, CARD_NAME, backend)
    if done is not None:
        return done
    writer = PreparedWriter(out, card=CARD_NAME, crop_size=spec.crop_size, landmark_scheme=syn.SYNTHETIC_SCHEME,
                            backend=backend, frame_format=spec.frame_format,
                            extra={"synthetic_unbc_spec": settings})
    for v in plan_synthetic_unbc(spec):
        if writer.has_video(v["video_id"]):
            continue
        frames, points = render_sequence(spec, v["subject_index"], v["sequence"], v["vas"])
        writer.add_video(v["video_id"], frames, points, np.ones(len(frames), bool), subject=v["subject"],
                         expression=EXPRESSION, label=v["vas"], split=SPLIT, fps=spec.fps,
                         source=f"synthetic_unbc:{GENERATOR_VERSION}:seed={spec.seed}")
    manifest = writer.finalize()
    (out / syn._STAMP).unlink(missing_ok=True)
    return manifest


__all__ = [
    "GENERATOR_VERSION", "CARD_NAME", "EXPRESSION", "SPLIT", "NUM_FOLDS", "PAIN_EFFECT", "PRESETS",
    "SyntheticUnbcSpec", "synthetic_unbc_spec", "subject_id", "fold_assignment", "plan_synthetic_unbc",
    "sequence_length", "render_sequence", "generate_synthetic_unbc",
]
