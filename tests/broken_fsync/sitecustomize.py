"""A broken copy of the plugin, for the power-loss test: on PYTHONPATH,
with ``SUPERVISOR_SLAPOS_BROKEN_FSYNC`` set in the environment of
supervisord (and so of its listener), ``supervisor_slapos.files`` loses
some of its fsyncs:

- ``file``: no fsync of a file (directories still are);
- ``dir``: no fsync of a directory (files still are);
- ``all``: no fsync at all;
- ``mkdirs``: new directories made with a plain ``os.makedirs``;
- ``listener:KIND``: KIND in the listener only (supervisord keeps its
  fsyncs): what is lost is then the listener's state, its reports.

The power-loss test must catch each of them.
"""

import os
import stat


def _patch(kind):
    import supervisor_slapos.files as files

    real_os = os

    class BrokenOs:
        def __getattr__(self, name):
            return getattr(real_os, name)

        @staticmethod
        def fsync(fd):
            is_dir = stat.S_ISDIR(real_os.fstat(fd).st_mode)
            if kind == 'all' or (kind == 'dir') == is_dir:
                return
            real_os.fsync(fd)

    if kind == 'mkdirs':

        def make_dirs_durable(path):
            created = not real_os.path.isdir(path)
            real_os.makedirs(path, exist_ok=True)
            return created

        files.make_dirs_durable = make_dirs_durable
        # the factory imported it by name
        import supervisor_slapos.rpcinterface as rpcinterface

        rpcinterface.make_dirs_durable = make_dirs_durable
    else:
        files.os = BrokenOs()


def _in_listener():
    with open('/proc/self/cmdline', 'rb') as f:
        return b'supervisor_slapos.listener' in f.read().split(b'\0')


_kind = os.environ.get('SUPERVISOR_SLAPOS_BROKEN_FSYNC', '')
if _kind.startswith('listener:'):
    _kind = _kind.split(':', 1)[1] if _in_listener() else ''
if _kind:
    _patch(_kind)
