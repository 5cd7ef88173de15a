"""Who walks: body shape, gait dynamics and clothing of one synthetic identity.

Lengths are fractions of stature (stature = 1), because the standard pretreatment rescales
every frame to a fixed height: only proportions and motion survive it, so identity must live
there. Means follow Drillis & Contini's segment proportions; spreads are set so that
identities overlap (cross-view recognition must stay hard) while each walk of one identity
only varies a little (:func:`vary_for_walk`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Literal

import numpy as np

BagKind = Literal["backpack", "shoulder", "hand"]


@dataclass(frozen=True)
class BodyShape:
    """Segment lengths, widths and radii, as fractions of stature."""

    hip_height: float  # hip joint above the ground (leg length)
    thigh_fraction: float  # thigh / (thigh + shin)
    torso_length: float  # hip joint level -> shoulder joint level
    neck_length: float
    head_height: float
    head_half_width: float
    head_half_depth: float
    shoulder_half_width: float  # shoulder joint offset from the mid-line
    chest_half_width: float
    chest_half_depth: float
    waist_half_width: float
    waist_half_depth: float  # belly
    hip_half_width: float  # outer hip breadth / 2
    hip_half_depth: float
    hip_joint_half_width: float  # hip joint offset from the mid-line
    upper_arm: float
    forearm: float  # forearm + curled hand
    foot_length: float
    thigh_radius: float  # at the hip; tapers to the knee
    knee_radius: float
    ankle_radius: float
    upper_arm_radius: float
    wrist_radius: float
    neck_radius: float


@dataclass(frozen=True)
class GaitStyle:
    """Dynamics of the gait cycle; angles in degrees, phases in cycles (0..1)."""

    cycle_frames: float  # frames per stride (two steps) at 25 fps
    hip_amplitude: float  # half range of hip flexion (stride length)
    hip_offset: float  # mean hip flexion
    hip_harmonic: float  # second-harmonic share of the hip curve (curve shape)
    hip_harmonic_phase: float
    knee_stance: float  # loading-response knee flexion bump
    knee_swing: float  # peak swing knee flexion
    knee_swing_phase: float
    knee_swing_width: float
    ankle_push: float  # plantar flexion at toe-off
    arm_swing: float  # half range of shoulder flexion
    arm_offset: float  # mean shoulder flexion
    arm_lag: float  # arm phase relative to the opposite leg
    elbow_flex: float  # mean elbow flexion
    elbow_swing: float  # extra elbow flexion when the arm is forward
    arm_abduction: float  # arms held away from the body
    lean: float  # forward trunk lean
    head_tilt: float  # extra forward head tilt
    pelvis_rotation: float  # half range of pelvis yaw
    thorax_rotation: float  # half range of counter-rotating thorax yaw
    sway: float  # lateral pelvis sway, fraction of stature
    toe_out: float  # foot yaw outwards
    step_width: float  # hip abduction that sets the base of support
    leg_asymmetry: float  # right leg phase offset beyond half a cycle
    swing_asymmetry: float  # right/left arm swing ratio - 1


@dataclass(frozen=True)
class Coat:
    """A coat: a wider, deeper trunk and a skirt down to ``hem`` (0 = hip, 1 = knee, 1+ shin)."""

    widen: float  # trunk width/depth multiplier
    hem: float  # hem position: 0 = hip, 1 = knee, beyond 1 along the shin
    flare: float  # skirt radius around each leg at the hem, relative to the knee radius
    sleeve: float  # arm radius multiplier


@dataclass(frozen=True)
class Bag:
    """A carried bag: a box on the back, hanging at one side, or held in one hand."""

    kind: BagKind
    side: int  # +1 left, -1 right
    width: float  # along the walking direction (stature fractions)
    height: float
    depth: float  # lateral thickness
    drop: float  # how far below the anchor (shoulder strap length or hand grip)


@dataclass(frozen=True)
class Identity:
    """Everything that stays the same across the walks of one subject."""

    body: BodyShape
    style: GaitStyle
    coat: Coat
    bags: tuple[Bag, Bag]  # bag of bg-01 and of bg-02 (usually the same bag)
    stature_px: float  # image height of the body at the middle of the track, pixels


def _normal(rng: np.random.Generator, mean: float, rel_sd: float) -> float:
    """``mean`` times a factor ~ N(1, rel_sd), kept within 3 standard deviations."""
    return float(mean * (1.0 + rel_sd * np.clip(rng.standard_normal(), -3.0, 3.0)))


def sample_body(rng: np.random.Generator) -> BodyShape:
    """Draw a body; ``girth`` scales all widths together (build), the rest vary independently."""
    girth = float(rng.uniform(0.82, 1.28))
    belly = float(rng.uniform(0.85, 1.35))
    shoulders = float(rng.uniform(0.88, 1.14))
    hips = float(rng.uniform(0.88, 1.15))
    limbs = girth * float(rng.uniform(0.88, 1.12))
    return BodyShape(
        hip_height=_normal(rng, 0.52, 0.035),
        thigh_fraction=_normal(rng, 0.50, 0.04),
        torso_length=_normal(rng, 0.29, 0.05),
        neck_length=_normal(rng, 0.045, 0.18),
        head_height=_normal(rng, 0.13, 0.06),
        head_half_width=_normal(rng, 0.046, 0.07),
        head_half_depth=_normal(rng, 0.057, 0.07),
        shoulder_half_width=_normal(rng, 0.10, 0.06) * shoulders,
        chest_half_width=_normal(rng, 0.105, 0.05) * girth * shoulders,
        chest_half_depth=_normal(rng, 0.068, 0.08) * girth,
        waist_half_width=_normal(rng, 0.085, 0.06) * girth,
        waist_half_depth=_normal(rng, 0.062, 0.08) * girth * belly,
        hip_half_width=_normal(rng, 0.095, 0.05) * girth * hips,
        hip_half_depth=_normal(rng, 0.065, 0.07) * girth,
        hip_joint_half_width=_normal(rng, 0.05, 0.08) * hips,
        upper_arm=_normal(rng, 0.186, 0.05),
        forearm=_normal(rng, 0.215, 0.05),
        foot_length=_normal(rng, 0.152, 0.06),
        thigh_radius=_normal(rng, 0.052, 0.08) * limbs,
        knee_radius=_normal(rng, 0.032, 0.08) * limbs,
        ankle_radius=_normal(rng, 0.020, 0.08) * limbs,
        upper_arm_radius=_normal(rng, 0.029, 0.08) * limbs,
        wrist_radius=_normal(rng, 0.019, 0.08) * limbs,
        neck_radius=_normal(rng, 0.031, 0.08) * girth,
    )


def sample_style(rng: np.random.Generator) -> GaitStyle:
    """Draw gait dynamics within the ranges reported for normal adult walking."""
    return GaitStyle(
        cycle_frames=float(rng.uniform(23.0, 33.0)),
        hip_amplitude=float(rng.uniform(14.0, 24.0)),
        hip_offset=float(rng.uniform(2.0, 10.0)),
        hip_harmonic=float(rng.uniform(0.0, 0.15)),
        hip_harmonic_phase=float(rng.uniform(0.0, 1.0)),
        knee_stance=float(rng.uniform(3.0, 22.0)),
        knee_swing=float(rng.uniform(45.0, 70.0)),
        knee_swing_phase=float(rng.uniform(0.68, 0.76)),
        knee_swing_width=float(rng.uniform(0.09, 0.14)),
        ankle_push=float(rng.uniform(5.0, 25.0)),
        arm_swing=float(rng.uniform(5.0, 32.0)),
        arm_offset=float(rng.uniform(-6.0, 8.0)),
        arm_lag=float(rng.uniform(-0.06, 0.1)),
        elbow_flex=float(rng.uniform(5.0, 40.0)),
        elbow_swing=float(rng.uniform(0.0, 25.0)),
        arm_abduction=float(rng.uniform(2.0, 14.0)),
        lean=float(rng.uniform(-3.0, 10.0)),
        head_tilt=float(rng.uniform(-5.0, 15.0)),
        pelvis_rotation=float(rng.uniform(2.0, 9.0)),
        thorax_rotation=float(rng.uniform(1.0, 8.0)),
        sway=float(rng.uniform(0.004, 0.02)),
        toe_out=float(rng.uniform(0.0, 18.0)),
        step_width=float(rng.uniform(0.0, 4.0)),
        leg_asymmetry=float(rng.uniform(-0.03, 0.03)),
        swing_asymmetry=float(rng.uniform(-0.25, 0.25)),
    )


def sample_coat(rng: np.random.Generator) -> Coat:
    """Draw the subject's coat for the cl walks (CASIA-B subjects wear their own coat)."""
    return Coat(
        widen=float(rng.uniform(1.25, 1.6)),
        hem=float(rng.uniform(0.6, 1.35)),
        flare=float(rng.uniform(1.8, 2.8)),
        sleeve=float(rng.uniform(1.3, 1.8)),
    )


def sample_bag(rng: np.random.Generator) -> Bag:
    """Draw a bag; the kind decides where it hangs (see :mod:`gaitid.training.synth.kinematics`)."""
    kind: BagKind = rng.choice(np.array(["backpack", "shoulder", "hand"]), p=[0.4, 0.35, 0.25])
    scale = float(rng.uniform(0.8, 1.3))
    if kind == "backpack":
        size = (0.16, 0.22, 0.09)
    elif kind == "shoulder":
        size = (0.17, 0.14, 0.06)
    else:
        size = (0.2, 0.15, 0.07)
    return Bag(
        kind=str(kind),  # type: ignore[arg-type]
        side=int(rng.choice([-1, 1])),
        width=size[0] * scale,
        height=size[1] * scale,
        depth=size[2] * scale,
        drop=float(rng.uniform(0.0, 0.12)),
    )


def sample_identity(rng: np.random.Generator) -> Identity:
    """Draw one subject: body, dynamics, coat, bags (bg-02 swaps bag with probability 0.3)."""
    body = sample_body(rng)
    style = sample_style(rng)
    coat = sample_coat(rng)
    first = sample_bag(rng)
    second = sample_bag(rng) if rng.random() < 0.3 else first
    return Identity(
        body=body,
        style=style,
        coat=coat,
        bags=(first, second),
        stature_px=float(rng.uniform(110.0, 150.0)),
    )


#: Per-walk relative jitter of the gait dynamics: a person never walks exactly alike twice.
_STYLE_JITTER = 0.1
#: Absolute per-walk jitter (degrees) of posture angles, which relative noise would not move
#: when their mean is near zero.
_POSTURE_JITTER = {"lean": 2.0, "head_tilt": 4.0, "arm_offset": 4.0, "hip_offset": 2.0}


def vary_for_walk(identity: Identity, rng: np.random.Generator) -> Identity:
    """A copy of ``identity`` with the small walk-to-walk variation of its dynamics."""
    changes: dict[str, float] = {}
    for field in fields(GaitStyle):
        value = getattr(identity.style, field.name)
        if field.name in _POSTURE_JITTER:
            changes[field.name] = value + _POSTURE_JITTER[field.name] * float(rng.standard_normal())
        elif field.name in {"hip_harmonic_phase", "leg_asymmetry", "knee_swing_phase"}:
            changes[field.name] = value + 0.01 * float(rng.standard_normal())
        else:
            changes[field.name] = value * (1.0 + _STYLE_JITTER * float(rng.standard_normal()))
    return replace(
        identity,
        style=replace(identity.style, **changes),
        stature_px=identity.stature_px * float(rng.uniform(0.85, 1.15)),
    )
