"""What the cameras see of each object: face colours and painted decals (windows, stripes, bands), per class.

Each box has five visible faces in its own frame (x along the heading): 0 front (+x), 1 back (-x), 2 left (+y),
3 right (-y), 4 top. A decal is a convex quad on one face in face coordinates (u, v) in [0, 1]^2: on the side faces
u runs from the back (0) to the front (1) and v from the bottom (0) to the top (1).

The look-alike pairs of :mod:`.scene_sampler` (same size distribution, same LiDAR reflectivity) differ only here:

- truck: white/grey cargo box with a coloured cab at the front; construction_vehicle: yellow/orange all over with
  black diagonal hazard stripes;
- bus: red/blue/green body with a dark window band and pillars along both sides; trailer: grey/beige/rust container
  with vertical ribs and no windows;
- bicycle: bright cyan/lime/magenta frame; motorcycle: black/dark-red body with a chrome engine block and a headlight.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# (origin, U, V) of each visible face in unit-box coordinates ([-0.5, 0.5]^3, scaled by l, w, h).
FACES = (
    ((0.5, -0.5, -0.5), (0, 1, 0), (0, 0, 1)),  # front
    ((-0.5, 0.5, -0.5), (0, -1, 0), (0, 0, 1)),  # back
    ((-0.5, 0.5, -0.5), (1, 0, 0), (0, 0, 1)),  # left
    ((-0.5, -0.5, -0.5), (1, 0, 0), (0, 0, 1)),  # right
    ((-0.5, -0.5, 0.5), (1, 0, 0), (0, 1, 0)),  # top
)
FRONT, BACK, LEFT, RIGHT, TOP = range(5)
SIDES = (LEFT, RIGHT)
GLASS = (0.07, 0.09, 0.12)
TYRE = (0.05, 0.05, 0.05)


@dataclass
class Appearance:
    """Face colours (5, 3) RGB in [0, 1] and decals ``(face, uv (4, 2), rgb)``."""

    face_colors: np.ndarray
    decals: list = field(default_factory=list)

    def rect(self, face: int, u0: float, u1: float, v0: float, v1: float, rgb) -> None:
        self.decals.append((face, np.array([[u0, v0], [u1, v0], [u1, v1], [u0, v1]]), np.asarray(rgb, float)))

    def quad(self, face: int, uv, rgb) -> None:
        self.decals.append((face, np.asarray(uv, float), np.asarray(rgb, float)))


def _pick(rng: np.random.Generator, palette, sigma: float = 0.04) -> np.ndarray:
    base = np.asarray(palette[int(rng.integers(len(palette)))], float)
    return np.clip(base + rng.normal(0.0, sigma, 3), 0.0, 1.0)


def _uniform(rgb) -> Appearance:
    return Appearance(np.tile(np.asarray(rgb, float), (5, 1)))


def _wheels(app: Appearance, spots=((0.1, 0.25), (0.75, 0.9)), height: float = 0.28) -> None:
    for face in SIDES:
        for u0, u1 in spots:
            app.rect(face, u0, u1, 0.0, height, TYRE)


def _car(rng):
    app = _uniform(_pick(rng, [(0.92, 0.92, 0.92), (0.68, 0.69, 0.71), (0.1, 0.1, 0.12), (0.12, 0.18, 0.45),
                               (0.7, 0.1, 0.08), (0.42, 0.42, 0.44)]))
    for face in SIDES:
        app.rect(face, 0.18, 0.78, 0.58, 0.9, GLASS)
    app.rect(FRONT, 0.08, 0.92, 0.58, 0.92, GLASS)
    app.rect(BACK, 0.1, 0.9, 0.6, 0.9, GLASS)
    app.rect(FRONT, 0.05, 0.2, 0.35, 0.45, (1.0, 0.97, 0.85))
    app.rect(FRONT, 0.8, 0.95, 0.35, 0.45, (1.0, 0.97, 0.85))
    _wheels(app)
    return app


def _truck(rng):
    cargo = _pick(rng, [(0.93, 0.93, 0.9), (0.78, 0.8, 0.82)])
    cab = _pick(rng, [(0.75, 0.1, 0.1), (0.1, 0.25, 0.7), (0.15, 0.5, 0.2)])
    app = _uniform(cargo)
    app.face_colors[FRONT] = cab
    for face in SIDES:
        app.rect(face, 0.72, 1.0, 0.0, 0.85, cab)
        app.rect(face, 0.8, 0.97, 0.55, 0.8, GLASS)
    app.rect(FRONT, 0.08, 0.92, 0.55, 0.82, GLASS)
    _wheels(app, ((0.08, 0.2), (0.25, 0.37), (0.78, 0.9)), 0.2)
    return app


def _construction(rng):
    app = _uniform(_pick(rng, [(0.97, 0.78, 0.08), (0.98, 0.52, 0.05)]))
    for face in SIDES:  # diagonal hazard stripes over the lower half
        for k in range(6):
            u = 0.05 + 0.16 * k
            app.quad(face, [[u, 0.1], [u + 0.07, 0.1], [u + 0.13, 0.5], [u + 0.06, 0.5]], (0.05, 0.05, 0.05))
        app.rect(face, 0.7, 0.95, 0.6, 0.9, GLASS)
    for u in (0.1, 0.4, 0.7):
        app.quad(FRONT, [[u, 0.05], [u + 0.1, 0.05], [u + 0.2, 0.35], [u + 0.1, 0.35]], (0.05, 0.05, 0.05))
    app.rect(FRONT, 0.15, 0.85, 0.55, 0.9, GLASS)
    return app


def _bus(rng):
    body = _pick(rng, [(0.78, 0.12, 0.1), (0.1, 0.3, 0.72), (0.1, 0.55, 0.3)])
    app = _uniform(body)
    for face in SIDES:
        app.rect(face, 0.03, 0.97, 0.5, 0.85, GLASS)
        for k in range(1, 8):  # window pillars
            app.rect(face, 0.03 + 0.1175 * k - 0.01, 0.03 + 0.1175 * k + 0.01, 0.5, 0.85, body)
        app.rect(face, 0.84, 0.92, 0.05, 0.8, GLASS)  # front door
    app.rect(FRONT, 0.05, 0.95, 0.35, 0.9, GLASS)
    app.rect(BACK, 0.15, 0.85, 0.55, 0.85, GLASS)
    _wheels(app, ((0.12, 0.22), (0.78, 0.88)), 0.25)
    return app


def _trailer(rng):
    box = _pick(rng, [(0.76, 0.76, 0.76), (0.8, 0.72, 0.55), (0.5, 0.26, 0.15), (0.9, 0.9, 0.88)])
    app = _uniform(box)
    rib = np.clip(box * 0.7, 0, 1)
    for face in SIDES:
        for k in range(1, 16):  # container ribs
            app.rect(face, k / 16 - 0.006, k / 16 + 0.006, 0.12, 0.98, rib)
    app.rect(BACK, 0.495, 0.505, 0.1, 0.98, rib)  # door seam
    _wheels(app, ((0.05, 0.14), (0.16, 0.25)), 0.18)
    return app


def _bicycle(rng):
    app = _uniform(_pick(rng, [(0.1, 0.8, 0.85), (0.55, 0.9, 0.2), (0.9, 0.25, 0.75)]))
    _wheels(app, ((0.0, 0.3), (0.7, 1.0)), 0.45)
    return app


def _motorcycle(rng):
    app = _uniform(_pick(rng, [(0.06, 0.06, 0.07), (0.4, 0.04, 0.05)]))
    for face in SIDES:
        app.rect(face, 0.35, 0.65, 0.2, 0.5, (0.75, 0.76, 0.78))  # engine
    app.rect(FRONT, 0.3, 0.7, 0.6, 0.78, (1.0, 0.95, 0.6))  # headlight
    _wheels(app, ((0.0, 0.28), (0.72, 1.0)), 0.4)
    return app


def _pedestrian(rng):
    shirt = _pick(rng, [(0.85, 0.2, 0.2), (0.2, 0.4, 0.85), (0.95, 0.85, 0.2), (0.3, 0.7, 0.3), (0.9, 0.9, 0.9)], 0.1)
    pants = _pick(rng, [(0.1, 0.12, 0.25), (0.08, 0.08, 0.08), (0.35, 0.25, 0.15)])
    skin = _pick(rng, [(0.87, 0.68, 0.55), (0.55, 0.38, 0.26), (0.35, 0.22, 0.15)])
    app = _uniform(shirt)
    app.face_colors[TOP] = _pick(rng, [(0.1, 0.07, 0.05), (0.45, 0.3, 0.15)])
    for face in (FRONT, BACK, LEFT, RIGHT):
        app.rect(face, 0.0, 1.0, 0.0, 0.47, pants)
        app.rect(face, 0.15, 0.85, 0.86, 1.0, skin)
    return app


def _cone(rng):
    app = _uniform(_pick(rng, [(1.0, 0.42, 0.05)]))
    for face in (FRONT, BACK, LEFT, RIGHT):
        app.rect(face, 0.0, 1.0, 0.45, 0.58, (0.97, 0.97, 0.97))
        app.rect(face, 0.0, 1.0, 0.7, 0.8, (0.97, 0.97, 0.97))
        app.rect(face, 0.0, 1.0, 0.0, 0.08, (0.1, 0.1, 0.1))
    return app


def _barrier(rng):
    app = _uniform(_pick(rng, [(0.72, 0.72, 0.7), (0.95, 0.95, 0.95)]))
    red = (0.85, 0.08, 0.08)
    for face in (FRONT, BACK):  # the long faces: l is across the barrier
        for k in range(0, 8, 2):
            u = k / 8
            app.quad(face, [[u, 0.5], [u + 0.125, 0.5], [u + 0.175, 0.95], [u + 0.05, 0.95]], red)
    return app


_BUILDERS = {'car': _car, 'truck': _truck, 'construction_vehicle': _construction, 'bus': _bus, 'trailer': _trailer,
             'bicycle': _bicycle, 'motorcycle': _motorcycle, 'pedestrian': _pedestrian, 'traffic_cone': _cone,
             'barrier': _barrier}


def sample_appearance(cls: str, rng: np.random.Generator) -> Appearance:
    """Draw the look of one object of class ``cls``."""
    return _BUILDERS[cls](rng)
