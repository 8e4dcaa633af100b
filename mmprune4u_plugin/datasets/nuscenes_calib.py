"""The nuScenes sensor rig (six cameras + LIDAR_TOP) used by the synthetic generator.

The calibrations are read from the real nuScenes v1.0-mini keyframe that mmdetection3d v1.4.0 ships in
``demo/data/nuscenes`` (this project keeps it in ``../shared/data/nuscenes-v1.0-mini-sample``). Where that file is
absent, :data:`BUILTIN_RIG` holds the same numbers, copied from it with full precision (sample token
``ca9a282c9e77460f8360f564131a8af5``, scene n015-2018-07-24-11-22-45+0800).

Two deliberate simplifications against the real info, both recorded in the generated metainfo:

- ``lidar2ego`` keeps the real translation and yaw but drops the real roll/pitch (about 1.4 deg), so the ground plane
  is ``z = -lidar2ego[2, 3]`` in the LiDAR frame and every box is upright (yaw-only) in both the ego and LiDAR frames,
  which is what ``LiDARInstance3DBoxes`` assumes.
- ``lidar2cam = inv(cam2ego) @ lidar2ego``: a synthetic frame is one instant, whereas the real ``lidar2cam`` also
  contains the ego motion between the camera and LiDAR timestamps (up to 0.33 m in the sample).
"""
from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

CAMERAS = ('CAM_FRONT', 'CAM_FRONT_RIGHT', 'CAM_FRONT_LEFT', 'CAM_BACK', 'CAM_BACK_LEFT', 'CAM_BACK_RIGHT')
FULL_IMAGE_SIZE = (1600, 900)  # (width, height) of every nuScenes camera
SAMPLE_PKL_ENV = 'MMPRUNE4U_NUSC_SAMPLE_PKL'
DEFAULT_SAMPLE_PKL = (Path(__file__).resolve().parents[2].parent / 'shared' / 'data' / 'nuscenes-v1.0-mini-sample'
                      / 'n015-2018-07-24-11-22-45+0800.pkl')

# Copied from the real info pkl above: data_list[0]['lidar_points']['lidar2ego'] and, per camera,
# data_list[0]['images'][cam]['cam2img'] as (fx, fy, cx, cy) (zero skew) and ['cam2ego'].
_BUILTIN_LIDAR2EGO = [[0.0020332718268036842, 0.9997040629386902, 0.024241721257567406, 0.9437130093574524],
                      [-0.9999805092811584, 0.0021756570786237717, -0.00584863917902112, 0.0],
                      [-0.005899650044739246, -0.02422935888171196, 0.9996890425682068, 1.8402299880981445],
                      [0.0, 0.0, 0.0, 1.0]]
_BUILTIN_CAMS = {
    'CAM_FRONT': ((1266.417203046554, 1266.417203046554, 816.2670197447984, 491.50706579294757),
                  [[0.005684778559952974, -0.005636667832732201, 0.9999679327011108, 1.7007912397384644],
                   [-0.9999834895133972, -0.0008371152798645198, 0.0056801484897732735, 0.01594563201069832],
                   [0.000805071322247386, -0.9999837875366211, -0.005641333758831024, 1.5109575986862183]]),
    'CAM_FRONT_RIGHT': ((1260.8474446004698, 1260.8474446004698, 807.968244525554, 495.3344268742088),
                        [[-0.8329295516014099, -9.94603760773316e-06, 0.5533789992332458, 1.5508477687835693],
                         [-0.55330491065979, 0.016378816217184067, -0.8328177332878113, -0.4934048056602478],
                         [-0.009055409580469131, -0.9998658299446106, -0.013647902756929398, 1.4957480430603027]]),
    'CAM_FRONT_LEFT': ((1272.5979470598488, 1272.5979470598488, 826.6154927353808, 479.75165386361925),
                       [[0.8207583427429199, -0.00034143668017350137, 0.5712754130363464, 1.5238779783248901],
                        [-0.5712715983390808, 0.0032195018138736486, 0.8207547664642334, 0.4946313500404358],
                        [-0.002119458047673106, -0.9999947547912598, 0.0024473799858242273, 1.5093282461166382]]),
    'CAM_BACK': ((809.2209905677063, 809.2209905677063, 829.2196003259838, 481.77842384512485),
                 [[0.002421709941700101, -0.016753608360886574, -0.99985671043396, 0.02832603082060814],
                  [0.9999890923500061, -0.0039591072127223015, 0.0024883693549782038, 0.0034513676073402166],
                  [-0.004000229295343161, -0.9998518228530884, 0.016743836924433708, 1.5791034698486328]]),
    'CAM_BACK_LEFT': ((1256.7414812095406, 1256.7414812095406, 792.1125740759628, 492.7757465151356),
                      [[0.9477603435516357, 0.008665721863508224, -0.31886550784111023, 1.0356910228729248],
                       [0.31896114349365234, -0.01397630013525486, 0.947664737701416, 0.4847950339317322],
                       [0.0037556388415396214, -0.9998647570610046, -0.016010211780667305, 1.5909701585769653]]),
    'CAM_BACK_RIGHT': ((1259.5137405846733, 1259.5137405846733, 807.2529053838625, 501.19579884916527),
                       [[-0.9347755312919617, 0.015875838696956635, -0.35488399863243103, 1.0148781538009644],
                        [0.35507455468177795, 0.011370494961738586, -0.9347688555717468, -0.4805682301521301],
                        [-0.010805031284689903, -0.9998093247413635, -0.01626596786081791, 1.562395453453064]]),
}


@dataclass(frozen=True)
class RigCalibration:
    """Full-resolution intrinsics and extrinsics of the six cameras and the LiDAR.

    Args:
        cam2img (dict): camera name -> 3x3 intrinsics at 1600x900.
        cam2ego (dict): camera name -> 4x4 camera-to-ego transform.
        lidar2ego (np.ndarray): 4x4 LiDAR-to-ego transform as recorded (with its small roll/pitch).
        source (str): where the numbers came from (a file path or ``'builtin'``).
    """

    cam2img: dict = field(repr=False)
    cam2ego: dict = field(repr=False)
    lidar2ego: np.ndarray = field(repr=False)
    source: str = 'builtin'

    def level_lidar2ego(self) -> np.ndarray:
        """``lidar2ego`` with the real translation and yaw, roll and pitch removed."""
        yaw = np.arctan2(self.lidar2ego[1, 0], self.lidar2ego[0, 0])
        out = np.eye(4)
        out[:2, :2] = [[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]]
        out[:3, 3] = self.lidar2ego[:3, 3]
        return out

    def camera_calib(self, size: tuple[int, int] = FULL_IMAGE_SIZE) -> dict:
        """Per camera: ``cam2img`` scaled to an image of ``size`` (width, height), ``cam2ego`` and ``lidar2cam``.

        Pixel coordinates scale with the image (u' = u * width / 1600), as mmdet3d's resize transforms assume.
        ``lidar2cam`` is ``inv(cam2ego) @ level_lidar2ego()`` (one instant).
        """
        lidar2ego = self.level_lidar2ego()
        out = {}
        for cam in CAMERAS:
            k = self.cam2img[cam].copy()
            k[0] *= size[0] / FULL_IMAGE_SIZE[0]
            k[1] *= size[1] / FULL_IMAGE_SIZE[1]
            out[cam] = dict(cam2img=k, cam2ego=self.cam2ego[cam].copy(),
                            lidar2cam=np.linalg.inv(self.cam2ego[cam]) @ lidar2ego)
        return out


def _builtin_rig() -> RigCalibration:
    cam2img, cam2ego = {}, {}
    for cam, ((fx, fy, cx, cy), rt) in _BUILTIN_CAMS.items():
        cam2img[cam] = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        cam2ego[cam] = np.vstack([np.array(rt), [0.0, 0.0, 0.0, 1.0]])
    return RigCalibration(cam2img, cam2ego, np.array(_BUILTIN_LIDAR2EGO), 'builtin')


BUILTIN_RIG = _builtin_rig()


def load_rig_calibration(sample_pkl: str | os.PathLike | None = None) -> RigCalibration:
    """Read the rig from a real nuScenes info pkl (mmdet3d 1.x format), else return :data:`BUILTIN_RIG`.

    Args:
        sample_pkl (str, optional): the info pkl. Defaults to ``$MMPRUNE4U_NUSC_SAMPLE_PKL`` or the shared sample.
            A path given explicitly must exist.
    """
    explicit = sample_pkl is not None
    path = Path(sample_pkl or os.environ.get(SAMPLE_PKL_ENV, DEFAULT_SAMPLE_PKL))
    if not path.is_file():
        if explicit:
            raise FileNotFoundError(f'`sample_pkl` must be an mmdet3d nuScenes info pkl, but got sample_pkl: {path}')
        return BUILTIN_RIG
    with open(path, 'rb') as f:
        info = pickle.load(f)['data_list'][0]
    cam2img = {cam: np.array(info['images'][cam]['cam2img'], dtype=np.float64)[:3, :3] for cam in CAMERAS}
    cam2ego = {cam: np.array(info['images'][cam]['cam2ego'], dtype=np.float64) for cam in CAMERAS}
    lidar2ego = np.array(info['lidar_points']['lidar2ego'], dtype=np.float64)
    return RigCalibration(cam2img, cam2ego, lidar2ego, str(path))
