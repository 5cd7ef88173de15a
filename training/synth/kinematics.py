"""How the synthetic body moves: a 3D pose per frame, as renderable primitives.

The walker moves along +x with y to its left and z up, in stature units. Joint angles are
periodic functions of the gait phase (0 = left heel strike) shaped like normative sagittal
gait curves (hip flexion ~ one cosine, knee flexion = a loading bump + a swing peak, ankle
push-off); every coefficient comes from the :class:`~training.synth.identity.GaitStyle`.
The opposite arm swings with each leg, the thorax counter-rotates against the pelvis, and the
body is lifted each frame so that the lowest foot touches the ground (which yields the
vertical bounce for free).

The output is a list of primitives, each one convex once projected: :class:`Capsule` (two
spheres joined, i.e. a limb) and :class:`Hull` (the convex hull of 3D points: trunk slices,
the head ellipsoid, a bag, the coat's skirt).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from gaitid.training.synth.identity import Bag, BodyShape, Coat, Identity

Condition = Literal["nm", "bg", "cl"]
FloatArray = NDArray[np.float64]

_TAU = 2.0 * np.pi
#: Gait phase of peak hip flexion (late swing), in cycles after heel strike.
_HIP_PEAK = 0.87
_RING_ANGLES = np.linspace(0.0, _TAU, 12, endpoint=False)


@dataclass(frozen=True)
class Capsule:
    """A limb segment: spheres of radii ``ra``/``rb`` at ``a``/``b`` ``[T, 3]`` and their hull."""

    a: FloatArray
    b: FloatArray
    ra: float
    rb: float


@dataclass(frozen=True)
class Hull:
    """The convex hull of ``points`` ``[T, P, 3]``, e.g. a trunk slice or a bag."""

    points: FloatArray


Primitive = Capsule | Hull


def _wrap(phase: FloatArray) -> FloatArray:
    """Signed distance on the unit circle of phases, in [-0.5, 0.5)."""
    return (phase + 0.5) % 1.0 - 0.5


def _bump(phase: FloatArray, centre: float, width: float) -> FloatArray:
    """A periodic Gaussian bump of the phase: one peak of height 1 at ``centre``."""
    return np.exp(-0.5 * (_wrap(phase - centre) / width) ** 2)


def _yaw(angle: FloatArray) -> FloatArray:
    """Rotation matrices about the vertical axis, ``[T] -> [T, 3, 3]``."""
    c, s = np.cos(angle), np.sin(angle)
    out = np.zeros((*angle.shape, 3, 3))
    out[..., 0, 0], out[..., 0, 1] = c, -s
    out[..., 1, 0], out[..., 1, 1] = s, c
    out[..., 2, 2] = 1.0
    return out


def _ring(centre: FloatArray, half_width: float, half_depth: float, yaw: FloatArray) -> FloatArray:
    """A horizontal ellipse of 12 points around ``centre`` ``[T, 3]`` -> ``[T, 12, 3]``."""
    local = np.stack(
        [
            half_depth * np.cos(_RING_ANGLES),
            half_width * np.sin(_RING_ANGLES),
            np.zeros_like(_RING_ANGLES),
        ],
        axis=-1,
    )  # [12, 3]
    # [T, 3, 3] @ [12, 3]^T -> [T, 3, 12] -> [T, 12, 3]
    return centre[:, None, :] + np.einsum("tij,pj->tpi", _yaw(yaw), local)


def _box(centre: FloatArray, size: tuple[float, float, float], yaw: FloatArray) -> FloatArray:
    """The 8 corners of a box of full ``size`` (x, y, z) around ``centre`` ``[T, 3]``."""
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
    local = 0.5 * signs * np.asarray(size)  # [8, 3]
    return centre[:, None, :] + np.einsum("tij,pj->tpi", _yaw(yaw), local)


def _sagittal(flexion: FloatArray, abduction: float, side: int) -> FloatArray:
    """Unit direction of a segment hanging down, swung forward by ``flexion`` (radians)."""
    direction = np.stack(
        [
            np.sin(flexion) * np.cos(abduction),
            np.full_like(flexion, side * np.sin(abduction)),
            -np.cos(flexion) * np.cos(abduction),
        ],
        axis=-1,
    )
    return direction


def pose_walk(
    identity: Identity,
    condition: Condition,
    n_frames: int,
    start_phase: float,
    bag: Bag | None = None,
) -> list[Primitive]:
    """The walker's primitives for ``n_frames`` frames starting at gait phase ``start_phase``.

    ``condition`` adds the coat (``cl``) or the ``bag`` (``bg``, required then); ``nm`` wears
    neither. Returned coordinates are in stature units, centred on the pelvis horizontally.
    """
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    if condition == "bg" and bag is None:
        raise ValueError("condition 'bg' needs a bag")
    body, style = identity.body, identity.style
    coat = identity.coat if condition == "cl" else None
    held = bag if condition == "bg" else None

    deg = np.pi / 180.0
    phase = start_phase + np.arange(n_frames) / style.cycle_frames  # [T] cycles
    leg_phase = {1: phase, -1: phase + 0.5 + style.leg_asymmetry}  # left = +1, right = -1

    # Pelvis: sway sideways once per stride, yaw so that the forward leg's hip leads.
    pelvis = np.zeros((n_frames, 3))
    pelvis[:, 1] = style.sway * np.sin(_TAU * phase)
    pelvis_yaw = -style.pelvis_rotation * deg * np.cos(_TAU * (phase - _HIP_PEAK))
    thorax_yaw = style.thorax_rotation * deg * np.cos(_TAU * (phase - _HIP_PEAK))

    primitives: list[Primitive] = []
    feet_low: list[FloatArray] = []
    thigh_len = body.hip_height * body.thigh_fraction * 0.93  # 7% of leg is below the ankle
    shin_len = body.hip_height * (1.0 - body.thigh_fraction) * 0.93
    ankle_height = body.hip_height * 0.07
    leg_points: dict[int, tuple[FloatArray, FloatArray, FloatArray]] = {}
    for side, lp in leg_phase.items():
        hip_flex = (
            style.hip_offset
            + style.hip_amplitude * np.cos(_TAU * (lp - _HIP_PEAK))
            + style.hip_amplitude
            * style.hip_harmonic
            * np.cos(2 * _TAU * (lp - style.hip_harmonic_phase))
        ) * deg
        knee_flex = (
            3.0
            + style.knee_stance * _bump(lp, 0.14, 0.06)
            + style.knee_swing * _bump(lp, style.knee_swing_phase, style.knee_swing_width)
        ) * deg
        plantar = (style.ankle_push * _bump(lp, 0.62, 0.05) - 6.0 * _bump(lp, 0.4, 0.1)) * deg
        hip = pelvis + np.einsum(
            "tij,j->ti", _yaw(pelvis_yaw), np.array([0.0, side * body.hip_joint_half_width, 0.0])
        )
        abduction = style.step_width * deg
        knee = hip + thigh_len * _sagittal(hip_flex, abduction, side)
        shin_angle = hip_flex - knee_flex
        ankle = knee + shin_len * _sagittal(shin_angle, abduction, side)
        pitch = shin_angle - plantar  # foot pitch: 0 = flat, negative = toes down
        toe_yaw = side * style.toe_out * deg
        forward = np.stack(
            [np.cos(pitch) * np.cos(toe_yaw), np.cos(pitch) * np.sin(toe_yaw), np.sin(pitch)], -1
        )
        sole = np.stack([np.sin(pitch), np.zeros_like(pitch), -np.cos(pitch)], -1)
        heel = ankle - 0.22 * body.foot_length * forward + 0.6 * ankle_height * sole
        toe = ankle + 0.78 * body.foot_length * forward + 0.7 * ankle_height * sole
        primitives += [
            Capsule(hip, knee, body.thigh_radius, body.knee_radius),
            Capsule(knee, ankle, body.knee_radius, body.ankle_radius),
            Capsule(heel, toe, body.ankle_radius * 1.05, body.ankle_radius * 0.8),
        ]
        feet_low += [heel[:, 2] - body.ankle_radius, toe[:, 2] - body.ankle_radius * 0.8]
        leg_points[side] = (hip, knee, ankle)

    # Trunk: elliptic slices along the leaning axis, yaw blended from pelvis to thorax.
    lean = style.lean * deg
    axis = np.array([np.sin(lean), 0.0, np.cos(lean)])
    widen = coat.widen if coat is not None else 1.0
    levels = (
        (-0.1, body.hip_half_width, body.hip_half_depth),
        (0.45, body.waist_half_width, body.waist_half_depth),
        (0.8, body.chest_half_width, body.chest_half_depth),
        (1.05, body.shoulder_half_width + 0.5 * body.upper_arm_radius, 0.7 * body.chest_half_depth),
    )
    rings = []
    for fraction, half_width, half_depth in levels:
        centre = pelvis + fraction * body.torso_length * axis
        yaw = pelvis_yaw + np.clip(fraction, 0.0, 1.0) * (thorax_yaw - pelvis_yaw)
        rings.append(_ring(centre, half_width * widen, half_depth * widen, yaw))
    primitives += [Hull(np.concatenate([lo, hi], axis=1)) for lo, hi in pairwise(rings)]
    shoulder_centre = pelvis + body.torso_length * axis

    # Neck and head: the head is an ellipsoid pitched forward by lean + head tilt.
    head_pitch = lean + style.head_tilt * deg
    head_axis = np.array([np.sin(head_pitch), 0.0, np.cos(head_pitch)])
    neck_top = shoulder_centre + (0.05 + body.neck_length) * axis
    primitives.append(
        Capsule(shoulder_centre + 0.02 * axis, neck_top, body.neck_radius, body.neck_radius * 0.95)
    )
    head_centre = neck_top + 0.5 * body.head_height * head_axis - np.array([0.01, 0.0, 0.0])
    primitives.append(Hull(_ellipsoid(head_centre, body, head_pitch)))

    # Arms: each swings with the opposite leg; a hand-held bag damps its arm's swing.
    sleeve = coat.sleeve if coat is not None else 1.0
    hands: dict[int, FloatArray] = {}
    shoulders: dict[int, FloatArray] = {}
    for side in (1, -1):
        swing_phase = leg_phase[-side] - _HIP_PEAK - style.arm_lag
        amplitude = style.arm_swing * (1.0 + (style.swing_asymmetry if side < 0 else 0.0))
        elbow_flex = style.elbow_flex
        if held is not None and held.kind == "hand" and held.side == side:
            amplitude *= 0.3
            elbow_flex *= 0.4
        flex = (style.arm_offset + amplitude * np.cos(_TAU * swing_phase)) * deg
        elbow_extra = style.elbow_swing * (0.5 + 0.5 * np.cos(_TAU * swing_phase))
        shoulder = (
            shoulder_centre
            + np.einsum(
                "tij,j->ti", _yaw(thorax_yaw), np.array([0.0, side * body.shoulder_half_width, 0.0])
            )
            - np.array([0.0, 0.0, 0.015])
        )
        abduction = style.arm_abduction * deg
        elbow = shoulder + body.upper_arm * _sagittal(flex, abduction, side)
        hand = elbow + body.forearm * _sagittal(
            flex + (elbow_flex + elbow_extra) * deg, abduction * 0.6, side
        )
        primitives += [
            Capsule(
                shoulder,
                elbow,
                body.upper_arm_radius * sleeve,
                body.upper_arm_radius * 0.85 * sleeve,
            ),
            Capsule(elbow, hand, body.upper_arm_radius * 0.8 * sleeve, body.wrist_radius),
        ]
        hands[side], shoulders[side] = hand, shoulder

    if coat is not None:
        primitives.append(_skirt(rings[0], leg_points, body, coat))
    if held is not None:
        primitives += _bag_primitives(
            held, body, pelvis, shoulder_centre, axis, thorax_yaw, hands, shoulders, phase
        )

    # Lift the body so that the lowest point of either foot touches the ground (z = 0).
    lift = -np.min(np.stack(feet_low), axis=0)  # [T]
    return [_lifted(p, lift) for p in primitives]


def _ellipsoid(centre: FloatArray, body: BodyShape, pitch: float) -> FloatArray:
    """Surface points of the head ellipsoid around ``centre`` ``[T, 3]`` -> ``[T, 26, 3]``."""
    points = [np.array([0.0, 0.0, 1.0]), np.array([0.0, 0.0, -1.0])]
    for elevation in (-0.6, 0.0, 0.6):
        for angle in np.linspace(0.0, _TAU, 8, endpoint=False):
            points.append(
                np.array(
                    [
                        np.cos(elevation) * np.cos(angle),
                        np.cos(elevation) * np.sin(angle),
                        np.sin(elevation),
                    ]
                )
            )
    unit = np.stack(points)  # [26, 3]
    local = unit * np.array([body.head_half_depth, body.head_half_width, 0.5 * body.head_height])
    c, s = np.cos(pitch), np.sin(pitch)
    pitch_matrix = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    return centre[:, None, :] + (local @ pitch_matrix.T)[None]


def _skirt(
    hip_ring: FloatArray,
    legs: dict[int, tuple[FloatArray, FloatArray, FloatArray]],
    body: BodyShape,
    coat: Coat,
) -> Hull:
    """The coat below the waist: hull of the (widened) hip slice and a flared ring per leg.

    The hem ring sits ``coat.hem`` of the way down the thigh (0..1) or, past 1, down the shin.
    """
    parts = [hip_ring]
    for hip, knee, ankle in legs.values():
        if coat.hem <= 1.0:
            hem_centre = hip + coat.hem * (knee - hip)
        else:
            hem_centre = knee + (coat.hem - 1.0) * (ankle - knee)
        radius = coat.flare * body.knee_radius * 1.3
        parts.append(_ring(hem_centre, radius, radius, np.zeros(hip.shape[0])))
    return Hull(np.concatenate(parts, axis=1))


def _bag_primitives(
    bag: Bag,
    body: BodyShape,
    pelvis: FloatArray,
    shoulder_centre: FloatArray,
    axis: FloatArray,
    thorax_yaw: FloatArray,
    hands: dict[int, FloatArray],
    shoulders: dict[int, FloatArray],
    phase: FloatArray,
) -> list[Primitive]:
    """The bag as a box (plus a strap for a shoulder bag) at its place on the body."""
    n = phase.shape[0]
    swing = 0.015 * np.sin(_TAU * phase)[:, None] * np.array([1.0, 0.0, 0.0])
    if bag.kind == "backpack":
        back = np.einsum(
            "tij,j->ti",
            _yaw(thorax_yaw),
            np.array([-(body.chest_half_depth + 0.5 * bag.depth), 0.0, 0.0]),
        )
        centre = shoulder_centre - (0.3 + bag.drop) * body.torso_length * axis + back
        box = _box(centre, (bag.depth, bag.width, bag.height), thorax_yaw)
        return [Hull(box)]
    if bag.kind == "shoulder":
        centre = (
            pelvis
            + np.array([0.02, bag.side * (body.hip_half_width + 0.5 * bag.depth), 0.06 - bag.drop])
            + swing
        )
        box = _box(centre, (bag.width, bag.depth, bag.height), np.zeros(n))
        strap_top = shoulders[-bag.side]
        strap = Capsule(strap_top, centre + np.array([0.0, 0.0, 0.5 * bag.height]), 0.008, 0.008)
        return [Hull(box), strap]
    hand = hands[bag.side]
    centre = hand - np.array([0.0, 0.0, 0.3 * bag.drop + 0.5 * bag.height])
    box = _box(centre, (bag.width, bag.depth, bag.height), np.zeros(n))
    handle = Capsule(hand, centre + np.array([0.0, 0.0, 0.5 * bag.height]), 0.006, 0.006)
    return [Hull(box), handle]


def _lifted(primitive: Primitive, lift: FloatArray) -> Primitive:
    """``primitive`` moved up by ``lift`` ``[T]``."""
    up = np.zeros((lift.shape[0], 3))
    up[:, 2] = lift
    if isinstance(primitive, Capsule):
        return Capsule(primitive.a + up, primitive.b + up, primitive.ra, primitive.rb)
    return Hull(primitive.points + up[:, None, :])
