"""True dynamics of the world's actions: how an object's pose changes over one action.

An object's pose is its centre (pixels, y pointing down), its angle (degrees, positive =
clockwise on screen), its scale (1 = base size) and its opacity. Each action maps a start pose and
a progress ``p`` in [0, 1] to a pose; the eased progress ``3p^2 - 2p^3`` is symmetric
(``ease(1 - p) = 1 - ease(p)``), so playing "move left" backwards yields, frame for frame, a valid
"move right" clip (and likewise grow/shrink, rotate clockwise/anticlockwise, appear/disappear).
That identity is what makes ActionBench's Video Reversal probe real in this world.

Distances are fractions of the canvas side, so the same world can be drawn at any resolution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

MOVE_DISTANCE = 0.30      # of the canvas side
BOUNCE_HEIGHT = 0.25      # of the canvas side
SHAKE_AMPLITUDE = 0.06    # of the canvas side
SHAKE_CYCLES = 3
ROTATION_DEGREES = 90.0
SCALE_FACTOR = 1.5        # grow multiplies the scale by it, shrink divides
MIN_SCALE = 1.0 / SCALE_FACTOR
MAX_SCALE = SCALE_FACTOR
BASE_RADIUS = 0.17        # of the canvas side, at scale 1
EXTENT = 1.15             # a shape's farthest point, in radii (the square's corners)


@dataclass(frozen=True)
class Pose:
    """Where an object is and how it looks at one instant."""

    x: float
    y: float
    angle: float = 0.0
    scale: float = 1.0
    alpha: float = 1.0

    @property
    def visible(self) -> bool:
        return self.alpha > 0.5


def ease(progress: float) -> float:
    """Smoothstep: starts and ends at rest, and ``ease(1 - p) == 1 - ease(p)`` (time-symmetric)."""
    p = min(max(progress, 0.0), 1.0)
    return p * p * (3.0 - 2.0 * p)


def pose_during(action: str, start: Pose, progress: float, canvas: int) -> Pose:
    """The pose ``progress`` of the way through ``action`` begun at ``start``."""
    e = ease(progress)
    step = MOVE_DISTANCE * canvas
    if action == "move left":
        return replace(start, x=start.x - step * e)
    if action == "move right":
        return replace(start, x=start.x + step * e)
    if action == "move up":
        return replace(start, y=start.y - step * e)
    if action == "move down":
        return replace(start, y=start.y + step * e)
    if action == "rotate clockwise":
        return replace(start, angle=start.angle + ROTATION_DEGREES * e)
    if action == "rotate anticlockwise":
        return replace(start, angle=start.angle - ROTATION_DEGREES * e)
    if action == "grow":
        return replace(start, scale=start.scale * SCALE_FACTOR ** e)
    if action == "shrink":
        return replace(start, scale=start.scale / SCALE_FACTOR ** e)
    if action == "appear":
        return replace(start, alpha=e)
    if action == "disappear":
        return replace(start, alpha=1.0 - e)
    if action == "shake":
        offset = SHAKE_AMPLITUDE * canvas * math.sin(2.0 * math.pi * SHAKE_CYCLES * e)
        return replace(start, x=start.x + offset)
    if action == "bounce":
        return replace(start, y=start.y - BOUNCE_HEIGHT * canvas * math.sin(math.pi * e))
    raise KeyError(f"no dynamics for action {action!r}")


def pose_after(action: str, start: Pose, canvas: int) -> Pose:
    """The pose at the end of ``action``, snapped so repeated actions do not drift numerically."""
    end = pose_during(action, start, 1.0, canvas)
    return replace(end, x=round(end.x, 6), y=round(end.y, 6), angle=round(end.angle, 6) % 360.0,
                   scale=round(end.scale, 6), alpha=round(end.alpha, 6))


def can_start(action: str, pose: Pose) -> bool:
    """Whether ``action`` makes sense from ``pose`` (only a hidden object can appear, ...)."""
    if action == "appear":
        return pose.alpha == 0.0
    if pose.alpha != 1.0:
        return False
    if action == "grow":
        return pose.scale * SCALE_FACTOR <= MAX_SCALE + 1e-6
    if action == "shrink":
        return pose.scale / SCALE_FACTOR >= MIN_SCALE - 1e-6
    return True


def extent(pose: Pose, canvas: int) -> float:
    """Distance from the centre to the farthest pixel the object can cover."""
    return EXTENT * BASE_RADIUS * canvas * pose.scale


def inside_canvas(pose: Pose, canvas: int, margin: float = 0.5) -> bool:
    reach = extent(pose, canvas)
    low, high = reach + margin, canvas - reach - margin
    return low <= pose.x <= high and low <= pose.y <= high
