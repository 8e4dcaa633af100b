"""Street scenes for the synthetic SemanticKITTI-format data: ground regions, objects and their materials.

World frame of a sequence: x along the street, y left, z up, the ground at z = 0. The ego drives along +x at y = 0
in one of the lanes of its direction (right-hand traffic; some streets are one-way), so the road edges move. The
street is cut into segments :data:`SEGMENT_LENGTH` long; segment ``k`` depends only on ``(seed, sequence, k)``, so
any frame is built from the segments in its range, in any order and in any process.

Cross-section, per side, from the road edge outwards: a parking lane in some segments (elsewhere the sidewalk reaches
the road), the sidewalk, then either a terrain (grass) verge or a parking lot, then a building or a fence line.

**Camera-only classes.** Road, parking and sidewalk are one flat surface at z = 0 with one LiDAR material (the same
reflectivity distribution; lane and slot paint exist only in the image): their layout moves from segment to segment,
and only their colour in the camera (grey asphalt, red/ochre/blue paving, light tiles) tells them apart.
Terrain, like real grass, is brighter for the LiDAR. Every object class has geometry of its own and a material range
(:data:`OBJECT_MATERIAL`, LiDAR reflectivity on the simulator's 0..255 scale).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .appearance import BACK, FRONT, GLASS, LEFT, RIGHT, SIDES, TOP, Appearance, _pick, _uniform, sample_appearance
from .ground import _cell_noise

# Raw SemanticKITTI ids (semantic-kitti.yaml), as mmdet3d's SemanticKITTI ``seg_label_mapping`` reads them.
RAW_IDS = {'car': 10, 'truck': 18, 'person': 30, 'bicyclist': 31, 'road': 40, 'parking': 44, 'sidewalk': 48,
           'building': 50, 'fence': 51, 'lane-marking': 60, 'vegetation': 70, 'trunk': 71, 'terrain': 72,
           'pole': 80, 'traffic-sign': 81}
THINGS = ('car', 'truck', 'person', 'bicyclist')  # the classes with instance ids
CAMERA_ONLY = ('road', 'parking', 'sidewalk')
SEGMENT_LENGTH = 16.0
LANE_WIDTH = 3.5
# (lo, hi) reflectivity per object, drawn once per object: the material varies within a class.
OBJECT_MATERIAL = {'car': (30, 140), 'truck': (50, 150), 'person': (40, 90), 'bicyclist': (40, 90),
                   'building': (50, 160), 'fence': (40, 120), 'vegetation': (120, 190), 'trunk': (50, 90),
                   'pole': (90, 170), 'traffic-sign': (230, 255)}
FLAT_RHO, TERRAIN_RHO = 70.0, 130.0  # road = parking = sidewalk (and their paint); grass


@dataclass(frozen=True)
class Street:
    """Per-sequence constants: lanes, the ego's lane, one-way or not, sidewalk widths, ground colours, texture seed."""

    lanes: int
    ego_lane: int  # lanes are numbered from the right edge
    one_way: bool
    sidewalk: tuple  # width (left, right)
    road_rgb: tuple
    parking_rgb: tuple
    sidewalk_rgb: tuple
    terrain_rgb: tuple
    seed: int

    @classmethod
    def sample(cls, rng: np.random.Generator) -> 'Street':
        a = rng.uniform(0.2, 0.3)
        park = _pick(rng, [(0.55, 0.27, 0.22), (0.62, 0.5, 0.25), (0.25, 0.35, 0.6)], 0.03)
        s = rng.uniform(0.6, 0.7)
        t = _pick(rng, [(0.3, 0.45, 0.18), (0.42, 0.45, 0.22)], 0.03)
        lanes, one_way = int(rng.integers(2, 5)), bool(rng.random() < 0.3)
        ego = int(rng.integers(lanes if one_way else max(1, lanes // 2)))
        return cls(lanes, ego, one_way, tuple(rng.uniform(1.8, 4.5, 2)), (a, a, a * 1.03), tuple(park),
                   (s, s * 0.97, s * 0.92), tuple(t), int(rng.integers(1 << 20)))

    @property
    def half(self) -> float:
        return self.lanes * LANE_WIDTH / 2

    @property
    def center(self) -> float:
        return self.half - (self.ego_lane + 0.5) * LANE_WIDTH  # the ego lane is centred on y = 0


@dataclass
class Segment:
    """One street segment: ground bands per side (0 left, 1 right) and its objects (world frame)."""

    parking: np.ndarray  # (2,) parking-lane width, 0 where none
    lot: np.ndarray  # (2,) parking-lot depth beyond the sidewalk, 0 where a terrain verge
    verge: np.ndarray  # (2,) terrain verge depth (0 where a lot)
    centers: np.ndarray  # (B, 3) gravity centres
    dims: np.ndarray  # (B, 3) l, w, h
    yaws: np.ndarray
    names: list  # class name per box
    instance: np.ndarray  # (B,) instance id (0 for stuff)
    rho: np.ndarray  # (B,) reflectivity
    looks: list  # Appearance per box


def sample_segment(rng: np.random.Generator, street: Street, k: int) -> Segment:
    """Draw segment ``k`` (x in [k L, (k + 1) L)) of ``street``."""
    x0 = k * SEGMENT_LENGTH
    parking = np.where(rng.random(2) < 0.45, rng.choice([2.5, 5.0], 2), 0.0)
    lot = np.where(rng.random(2) < 0.2, rng.uniform(6.0, 14.0, 2), 0.0)
    verge = np.where(lot > 0, 0.0, rng.uniform(0.0, 7.0, 2))
    boxes = []  # (name, center, dims, yaw)

    def add(name, x, y, z0, length, w, h, yaw=0.0):
        boxes.append((name, (x, y, z0 + h / 2), (length, w, h), yaw))

    def rx(margin=0.0):
        return x0 + rng.uniform(margin, SEGMENT_LENGTH - margin)

    for side, s in enumerate((1.0, -1.0)):
        edge = street.center + s * street.half

        def y(d):
            return edge + s * d

        pw, sw = parking[side], street.sidewalk[side]
        back = pw + sw + lot[side] + verge[side]  # building / fence line
        if pw > 0:  # parked cars: parallel in a 2.5 m lane, perpendicular in a 5 m one
            perp = pw > 3
            pitch = 2.7 if perp else 6.0
            for j in range(int(SEGMENT_LENGTH // pitch)):
                if rng.random() < 0.55:
                    size = rng.uniform(3.9, 4.7), rng.uniform(1.6, 1.85), rng.uniform(1.4, 1.6)
                    add('car', x0 + (j + 0.5) * pitch, y(pw / 2), 0.0, *size,
                        np.pi / 2 if perp else rng.choice([0.0, np.pi]))
        if lot[side] > 0:
            for j in range(int(SEGMENT_LENGTH // 2.7)):
                if rng.random() < 0.4 and lot[side] > 5.5:
                    add('car', x0 + (j + 0.5) * 2.7, y(pw + sw + 2.8), 0.0, rng.uniform(3.9, 4.7),
                        rng.uniform(1.6, 1.85), rng.uniform(1.4, 1.6), np.pi / 2)
        for _ in range(rng.poisson(0.7)):
            h = rng.uniform(1.55, 1.9)
            add('person', rx(0.5), y(pw + rng.uniform(0.4, sw - 0.4)), 0.0, rng.uniform(0.45, 0.65),
                rng.uniform(0.5, 0.7), h, rng.uniform(-np.pi, np.pi))
        if rng.random() < 0.6:  # street light / utility pole near the kerb
            add('pole', rx(0.5), y(pw + 0.35), 0.0, *[rng.uniform(0.15, 0.3)] * 2, rng.uniform(5.0, 9.0))
        if rng.random() < 0.6:  # a sign on its own thin post, facing the traffic
            px, py, ph = rx(1.0), y(pw + 0.5), rng.uniform(2.6, 3.3)
            add('pole', px, py, 0.0, 0.08, 0.08, ph)
            sw_, sh = rng.uniform(0.6, 0.9), rng.uniform(0.6, 0.9)
            add('traffic-sign', px - 0.07, py, ph - sh, 0.04, sw_, sh)
        trees = rng.poisson(1.6) if verge[side] >= 2.5 else int(sw > 3.0 and rng.random() < 0.5)
        for _ in range(trees):
            tx = rx(1.5)
            ty = y(pw + sw + verge[side] / 2) if verge[side] >= 2.5 else y(pw + 0.9)
            trunk_h, crown = rng.uniform(1.8, 3.5), rng.uniform(2.5, 5.0)
            tw = rng.uniform(0.25, 0.5)
            add('trunk', tx, ty, 0.0, tw, tw, trunk_h + 0.3)
            add('vegetation', tx, ty, trunk_h, crown, crown * rng.uniform(0.8, 1.2), rng.uniform(2.0, 4.5),
                rng.uniform(0, np.pi / 2))
        if verge[side] >= 1.5 and rng.random() < 0.7:  # hedge
            hw = rng.uniform(0.8, min(1.5, verge[side] - 0.3))
            add('vegetation', rx(4.0), y(back - hw / 2 - 0.1), 0.0, rng.uniform(2.0, 8.0), hw,
                rng.uniform(0.6, 1.6))
        if rng.random() < 0.6:
            depth, length = rng.uniform(8.0, 15.0), SEGMENT_LENGTH - rng.uniform(0.0, 6.0)
            add('building', x0 + SEGMENT_LENGTH / 2, y(back + depth / 2), 0.0, length, depth,
                rng.uniform(4.0, 18.0))
        elif rng.random() < 0.5:
            add('fence', x0 + SEGMENT_LENGTH / 2, y(back + 0.05), 0.0,
                SEGMENT_LENGTH * rng.uniform(0.5, 1.0), rng.uniform(0.05, 0.12), rng.uniform(1.0, 2.0))
        else:  # a belt of bushes
            depth = rng.uniform(2.0, 5.0)
            add('vegetation', x0 + SEGMENT_LENGTH / 2, y(back + depth / 2), 0.0,
                SEGMENT_LENGTH * rng.uniform(0.6, 1.0), depth, rng.uniform(1.5, 4.0))
        if rng.random() < 0.3:  # bicyclist at the road edge
            add('bicyclist', rx(1.0), y(-0.5), 0.0, rng.uniform(1.6, 1.9), rng.uniform(0.5, 0.7),
                rng.uniform(1.6, 1.85), 0.0 if s < 0 else np.pi)
    for lane in range(street.lanes):
        if lane == street.ego_lane:
            continue
        ly = (lane - street.ego_lane) * LANE_WIDTH
        oncoming = not street.one_way and ly > street.center
        yaw = np.pi if oncoming else 0.0
        if rng.random() < 0.4:
            add('car', rx(2.5), ly, 0.0, rng.uniform(3.9, 4.8), rng.uniform(1.6, 1.9), rng.uniform(1.4, 1.6), yaw)
        if rng.random() < 0.12:
            add('truck', x0 + SEGMENT_LENGTH / 2, ly, 0.0, rng.uniform(6.0, 10.0), rng.uniform(2.3, 2.6),
                rng.uniform(2.8, 3.8), yaw)

    names = [b[0] for b in boxes]
    rho = np.array([rng.uniform(*OBJECT_MATERIAL[n]) for n in names])
    looks = [_look(n, rng) for n in names]
    count = iter(range(1, 1 << 16))
    instance = np.array([(k * 64 + next(count)) % 65535 + 1 if n in THINGS else 0 for n in names], np.int64)
    return Segment(parking, lot, verge, np.array([b[1] for b in boxes], float).reshape(-1, 3),
                   np.array([b[2] for b in boxes], float).reshape(-1, 3), np.array([b[3] for b in boxes], float),
                   names, instance, rho, looks)


class StreetGround:
    """Ground classes, LiDAR reflectivity and camera albedo of the segments ``k0 .. k0 + len(segments) - 1``.

    Coordinates are world x minus ``x_offset`` (so a frame's ego frame can be passed directly), y, on z = 0.
    """

    def __init__(self, street: Street, segments: list, k0: int, x_offset: float = 0.0) -> None:
        self.street, self.k0, self.x_offset = street, k0, x_offset
        self.parking = np.array([s.parking for s in segments] + [(0.0, 0.0)])
        self.lot = np.array([s.lot for s in segments] + [(0.0, 0.0)])

    def _regions(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw class id and a paint flag at (ego) ground points."""
        x = x + self.x_offset
        st = self.street
        seg = np.clip(np.floor(x / SEGMENT_LENGTH).astype(np.int64) - self.k0, 0, len(self.parking) - 1)
        v = y - st.center
        side = (v < 0).astype(np.int64)
        d = np.abs(v) - st.half  # beyond the road edge
        pw, lot = self.parking[seg, side], self.lot[seg, side]
        sw = np.asarray(st.sidewalk)[side]
        cls = np.full(x.shape, RAW_IDS['terrain'], np.int64)
        cls[(d >= pw + sw) & (d < pw + sw + lot)] = RAW_IDS['parking']
        cls[(d >= pw) & (d < pw + sw)] = RAW_IDS['sidewalk']
        cls[(d >= 0) & (d < pw)] = RAW_IDS['parking']
        cls[d < 0] = RAW_IDS['road']
        lane = np.abs(np.mod(v + st.half + 0.5 * LANE_WIDTH, LANE_WIDTH) - 0.5 * LANE_WIDTH) < 0.075
        lane_paint = (d < -0.1) & (((d > -0.25)) | (lane & (np.mod(x, 9.0) < 3.0)))
        is_lot = cls == RAW_IDS['parking']
        slot = np.where(d < pw, np.mod(x, np.where(pw > 3, 2.7, 6.0)), np.mod(x, 2.7)) < 0.1
        cls[lane_paint] = RAW_IDS['lane-marking']
        return cls, lane_paint | (is_lot & slot)

    def classes(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Raw SemanticKITTI id at (ego) ground points."""
        return self._regions(x, y)[0]

    def reflectivity(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """LiDAR reflectivity: one material for road, parking, sidewalk and their paint; grass brighter."""
        cls, _ = self._regions(x, y)
        noise = _cell_noise(x + self.x_offset, y, 0.5, self.street.seed)
        rho = np.where(cls == RAW_IDS['terrain'], TERRAIN_RHO * (0.7 + 0.6 * noise), FLAT_RHO * (0.8 + 0.4 * noise))
        return rho

    def albedo(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """RGB albedo (..., 3) at (ego) ground points."""
        cls, paint = self._regions(x, y)
        st = self.street
        out = np.zeros(cls.shape + (3,), np.float32)
        for name, rgb in (('road', st.road_rgb), ('lane-marking', st.road_rgb), ('parking', st.parking_rgb),
                          ('sidewalk', st.sidewalk_rgb), ('terrain', st.terrain_rgb)):
            out[cls == RAW_IDS[name]] = rgb
        out[paint] = 0.9
        xw = x + self.x_offset
        walk = cls == RAW_IDS['sidewalk']
        grass = cls == RAW_IDS['terrain']
        tex = 0.88 + 0.24 * _cell_noise(xw, y, 0.5, st.seed)
        tex = np.where(grass, 0.7 + 0.6 * _cell_noise(xw, y, 0.25, st.seed + 1), tex)
        tiles = np.where(walk & ((np.mod(xw, 1.0) < 0.05) | (np.mod(y, 1.0) < 0.05)), 0.7, 1.0)
        return (out * (tex * tiles)[..., None]).astype(np.float32)


def _look(name: str, rng: np.random.Generator) -> Appearance:
    if name in ('car', 'truck'):
        return sample_appearance(name, rng)
    if name == 'person':
        return sample_appearance('pedestrian', rng)
    if name == 'bicyclist':
        app = sample_appearance('bicycle', rng)
        shirt = _pick(rng, [(0.85, 0.2, 0.2), (0.2, 0.4, 0.85), (0.95, 0.85, 0.2), (0.1, 0.1, 0.1)], 0.08)
        for face in SIDES:
            app.rect(face, 0.3, 0.7, 0.5, 0.9, shirt)
            app.rect(face, 0.4, 0.6, 0.9, 1.0, (0.87, 0.68, 0.55))
        return app
    if name == 'building':
        wall = _pick(rng, [(0.75, 0.7, 0.6), (0.6, 0.32, 0.25), (0.85, 0.85, 0.82), (0.5, 0.5, 0.52)], 0.05)
        app = _uniform(wall)
        app.face_colors[TOP] = wall * 0.6
        for face in (LEFT, RIGHT):  # windows on the long faces (one of them faces the street)
            for r in np.arange(0.08, 0.9, 0.22):
                for c in np.arange(0.05, 0.92, 0.14):
                    app.rect(face, c, c + 0.08, r, r + 0.12, GLASS)
        return app
    if name == 'fence':
        app = _uniform(_pick(rng, [(0.45, 0.3, 0.18), (0.55, 0.57, 0.6), (0.2, 0.35, 0.2)], 0.04))
        for face in (LEFT, RIGHT):
            for c in np.arange(0.0, 1.0, 0.05):
                app.rect(face, c, c + 0.01, 0.0, 1.0, app.face_colors[0] * 0.6)
        return app
    if name == 'vegetation':
        app = _uniform(_pick(rng, [(0.18, 0.4, 0.12), (0.25, 0.45, 0.15), (0.12, 0.3, 0.1)], 0.04))
        app.face_colors[TOP] = np.clip(app.face_colors[TOP] * 1.3, 0, 1)
        return app
    if name == 'trunk':
        return _uniform(_pick(rng, [(0.35, 0.24, 0.14), (0.28, 0.22, 0.18)], 0.03))
    if name == 'pole':
        return _uniform(_pick(rng, [(0.55, 0.56, 0.58), (0.3, 0.3, 0.32)], 0.03))
    if name == 'traffic-sign':
        app = _uniform((0.6, 0.6, 0.62))
        rim = _pick(rng, [(0.8, 0.08, 0.08), (0.1, 0.3, 0.75), (0.95, 0.8, 0.1)], 0.03)
        for face in (FRONT, BACK):  # both faces across the street: the one towards the traffic and its back
            app.face_colors[face] = rim
            app.rect(face, 0.2, 0.8, 0.2, 0.8, (0.95, 0.95, 0.95))
        return app
    raise KeyError(f'no appearance for class {name!r}')
