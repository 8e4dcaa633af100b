"""The one place this plugin patches mmengine's Runner: reject a pruning request that the Runner would ignore.

mmengine builds hooks from ``default_hooks`` and ``custom_hooks`` only. Up to 0.1.0 this plugin documented a
top-level ``mmprune4u_hook = dict(...)`` key that only its own tools read: under mmdet3d's ``tools/train.py`` such a
config trained without pruning and exited 0. Importing the plugin (``custom_imports``) wraps ``register_hooks`` of
mmengine's ``Runner`` and ``FlexibleRunner``, which every runner calls while it is built, whatever built it
(``Runner.from_cfg``, ``RUNNERS.build`` with ``runner_type``, a subclass, one process or torchrun). The wrapper
raises, before any training, when

- the config has the ``mmprune4u_hook`` key (the message spells out the ``default_hooks`` entry to write instead);
- the runner ends up with more than one ``MMPrune4UHook`` (e.g. one in ``default_hooks``, one in ``custom_hooks``).

Everything else passes through unchanged. A config without ``custom_imports`` of the plugin is out of its reach.
"""
from __future__ import annotations

import functools

LEGACY_KEY = 'mmprune4u_hook'
HOOK_TYPE = 'MMPrune4UHook'
_MARK = '_mmprune4u_guarded'


def recommended_form(spec) -> str:
    """The ``default_hooks`` line that asks for the same pruning as ``mmprune4u_hook = spec``."""
    args = ''.join(f', {key}={_plain(value)!r}' for key, value in dict(spec or {}).items() if key != 'type')
    return f"default_hooks = dict(mmprune4u=dict(type='{HOOK_TYPE}'{args}))"


def _plain(value):
    """ConfigDicts (and lists of them) as plain Python values, so that their repr reads as config text."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(item) for item in value)
    return value


def check_config(cfg) -> None:
    """Raise ``ValueError`` when ``cfg`` carries the ``mmprune4u_hook`` key, which no Runner reads."""
    if cfg is not None and LEGACY_KEY in cfg:
        raise ValueError(
            f'the config sets `{LEGACY_KEY}`, which mmengine\'s Runner ignores (it would train without pruning). '
            f'Write instead: {recommended_form(cfg[LEGACY_KEY])} '
            f'(merged into the inherited default_hooks; works with mmdet3d\'s tools/train.py), '
            f"or append dict(type='{HOOK_TYPE}', ...) to `custom_hooks`")


def check_hooks(hooks) -> None:
    """Raise ``ValueError`` when more than one registered hook is an ``MMPrune4UHook``."""
    found = [hook for hook in hooks if type(hook).__name__ == HOOK_TYPE]
    if len(found) > 1:
        raise ValueError(f'the runner has {len(found)} {HOOK_TYPE}s (check default_hooks and custom_hooks); '
                         f"keep one, e.g. default_hooks = dict(mmprune4u=dict(type='{HOOK_TYPE}', ...))")


def _guarded(register_hooks):
    @functools.wraps(register_hooks)
    def wrapper(self, *args, **kwargs):
        check_config(getattr(self, 'cfg', None))
        register_hooks(self, *args, **kwargs)
        check_hooks(self.hooks)

    setattr(wrapper, _MARK, True)
    return wrapper


def apply() -> list[str]:
    """Wrap ``register_hooks`` of mmengine's runners (idempotent); returns the classes that are guarded."""
    from mmengine import runner as mm_runner
    guarded = []
    for name in ('Runner', 'FlexibleRunner'):
        cls = getattr(mm_runner, name, None)
        if cls is None:
            continue
        if not getattr(cls.register_hooks, _MARK, False):
            cls.register_hooks = _guarded(cls.register_hooks)
        guarded.append(name)
    return guarded


__all__ = ['apply', 'check_config', 'check_hooks', 'recommended_form', 'LEGACY_KEY']
