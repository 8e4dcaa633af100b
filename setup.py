"""Package metadata for the MMPrune4U MMDetection3D plugin.

The OpenMMLab stack is pinned to what DESIGN.md §4 checked. mmcv must be compiled against the installed torch, so it
is not a plain install requirement: ``tools/setup_env.sh`` (called by ``make``) builds it in the right order.
"""
from setuptools import find_packages, setup

STACK = [
    'torch==2.13.0',
    'mmcv==2.1.0',
    'mmengine==0.10.7',
    'mmdet==3.3.0',
    'mmdet3d==1.4.0',
    'spconv==2.3.8',
    'nuscenes-devkit==1.2.0',
    'lyft_dataset_sdk',
    'numpy<2',
    'matplotlib',
]

setup(
    name='mmprune4u_plugin',
    version='0.1.0',
    description='MMPrune4U: layer-adaptive unstructured pruning for multimodal 3D perception (MMDetection3D plugin)',
    long_description=open('README.md', encoding='utf-8').read() if __import__('os').path.exists('README.md') else '',
    long_description_content_type='text/markdown',
    packages=find_packages(include=['mmprune4u_plugin', 'mmprune4u_plugin.*']),
    python_requires='>=3.10',
    install_requires=['torch', 'numpy<2'],
    extras_require={'mmdet3d': STACK, 'tests': ['pytest', 'pytest-timeout', 'pytest-xdist']},
    license='Apache-2.0',
)
