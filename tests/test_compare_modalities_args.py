"""tools/compare_modalities.py's ``--fused-variant``: parsed and checked before anything trains, and its stage-2
training differs from the fused model's only in the config (same init, schedule and options: a paired comparison)."""
import argparse
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'tools'))
from compare_modalities import LIDAR_DROPOUT, fused_variant, stage2_trainings  # noqa: E402

CAM_LR = 'configs/demo/bevfusion-lite_tiny_8xb2-demo_synthetic-nus_lidar-dropout_cam-lr0.1.py'


def _errors_before_anything_runs(extra: list[str], capsys) -> str:
    """Run the tool's main with ``extra`` arguments; it must exit before creating its work dir. Returns stderr."""
    import compare_modalities
    sys_argv, sys.argv = sys.argv, ['compare_modalities.py', '--work-dir', '/nonexistent/never-created', *extra]
    try:
        with pytest.raises(SystemExit):
            compare_modalities.main()
    finally:
        sys.argv = sys_argv
    assert not Path('/nonexistent/never-created').exists()
    return capsys.readouterr().err


def test_fused_variant_parses_name_and_config():
    assert fused_variant(f'cam-lr0.1={CAM_LR}') == ('lidar-camera_cam-lr0.1', CAM_LR)


@pytest.mark.parametrize('text, message', [
    (CAM_LR, 'expected NAME=CONFIG'),
    (f'=={CAM_LR}', 'expected NAME=CONFIG'),
    (f'a b={CAM_LR}', 'expected NAME=CONFIG'),
    ('x=configs/demo/no_such_config.py', "config of fused variant 'x' not found"),
])
def test_fused_variant_rejects_bad_input(text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        fused_variant(text)


def test_variant_trains_like_the_fused_model_but_for_its_config(tmp_path):
    init = tmp_path / 'stage2_fused_init.pth'
    configs = {'lidar-camera': LIDAR_DROPOUT, 'lidar-camera_cam-lr0.1': CAM_LR}
    trainings = stage2_trainings(tmp_path, configs, {name: init for name in configs}, ['randomness.seed=1', 'x=2'])
    fused, variant = trainings['lidar-camera'], trainings['lidar-camera_cam-lr0.1']
    assert variant[1] == CAM_LR and fused[1] == LIDAR_DROPOUT
    assert variant[2] == tmp_path / 'stage2_lidar-camera_cam-lr0.1' and variant[3].name.endswith('cam-lr0.1.log')
    assert variant[4:] == fused[4:] == ('--cfg-options', 'randomness.seed=1', 'x=2', f'load_from={init}')


def test_repeated_variant_names_are_one_error(capsys):
    extra = ['--fused-variant', f'a={CAM_LR}', '--fused-variant', f'a={LIDAR_DROPOUT}']
    assert 'names repeat' in _errors_before_anything_runs(extra, capsys)


def test_stage2_training_configs_pick_the_fused_recipe():
    from compare_modalities import VARIANTS, stage2_training_configs
    plain = stage2_training_configs(False, None, {})
    assert plain == VARIANTS
    assert stage2_training_configs(True, None, {})['lidar-camera'] == LIDAR_DROPOUT
    chosen = stage2_training_configs(False, CAM_LR, {'lidar-camera_x': LIDAR_DROPOUT})
    assert chosen == {**VARIANTS, 'lidar-camera': CAM_LR, 'lidar-camera_x': LIDAR_DROPOUT}
    with pytest.raises(ValueError, match='give one'):
        stage2_training_configs(True, CAM_LR, {})


@pytest.mark.parametrize('extra, message', [
    (['--lidar-dropout', '--fused-config', CAM_LR], 'not allowed with argument'),
    (['--fused-config', 'configs/demo/no_such_config.py'], 'config not found'),
])
def test_fused_config_errors_before_anything_runs(extra, message, capsys):
    assert message in _errors_before_anything_runs(extra, capsys)


def test_stage2_rounds_start_the_fused_models_after_the_single_sensor_ones_only_with_a_stage2_camera():
    from compare_modalities import VARIANTS, stage2_rounds
    configs = {**VARIANTS, 'lidar-camera_cam-lr0.1': CAM_LR}
    assert stage2_rounds(configs, 'stage1') == [configs]
    first, second = stage2_rounds(configs, 'stage2')
    assert first == {'lidar': VARIANTS['lidar'], 'camera': VARIANTS['camera']}
    assert second == {'lidar-camera': VARIANTS['lidar-camera'], 'lidar-camera_cam-lr0.1': CAM_LR}
    with pytest.raises(ValueError, match="one of \\('stage1', 'stage2'\\)"):
        stage2_rounds(configs, 'stage3')


def test_fused_camera_init_is_checked_by_the_parser(capsys):
    assert "invalid choice: 'stage3'" in _errors_before_anything_runs(['--fused-camera-init', 'stage3'], capsys)
