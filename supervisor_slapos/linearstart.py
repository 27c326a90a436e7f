"""``supervisor-slapos-supervisord``: supervisord, its first
configuration read linear (and the incremental read's first).

supervisord reads its whole configuration (every include file) before it
loads any plugin, so the plugin's ``linearread`` can only speed up the
reads after that one. This command installs the linear parser first,
then runs supervisor's own ``supervisord.main()`` with the same arguments:
what supervisord reads, and how it runs, is unchanged.

``--slapos-cfg F`` (first argument, alone) starts a SlapOS node's
supervisord as ``slapos node supervisord --cfg F`` does (slapos.core's
``createSupervisordConfiguration`` writes slapgrid's supervisord.conf,
then supervisord runs with ``-c`` that file and an empty environment),
through this command.
"""
import logging
import os
import sys

from supervisor_slapos import incrementalread, linearread

USAGE = ('usage: supervisor-slapos-supervisord [supervisord options]\n'
         '       supervisor-slapos-supervisord --slapos-cfg SLAPOS_CFG')


def slapgrid_start(slapos_cfg):
    """Write slapgrid's supervisord.conf with slapos.core's own code, then
    exec ``main(['-c', that file])`` in a Python with this one's sys.path
    and an empty environment (as slapgrid launches supervisord). Returns
    only on error (a message)."""
    from supervisor_slapos.slaposcfg import read_slapos_cfg
    try:
        from slapos.grid.svcbackend import (
            _getSupervisordConfigurationFilePath,
            createSupervisordConfiguration)
    except ImportError as e:
        return f'slapos.core is not importable here: {e}'
    try:
        root = read_slapos_cfg(slapos_cfg).instance_root
    except ValueError as e:
        return str(e)
    if root is None:
        return f'{slapos_cfg}: no [slapos] instance_root'
    logging.basicConfig(level=logging.INFO)
    createSupervisordConfiguration(root, logging.getLogger(__name__))
    conf = _getSupervisordConfigurationFilePath(root)
    code = (f'import sys; sys.path = {sys.path!r}; '
            f'from supervisor_slapos.linearstart import main; '
            f'main({["-c", conf]!r})')
    os.execve(sys.executable, [sys.executable, '-c', code], {})


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ['--slapos-cfg']:
        if len(argv) != 2:
            sys.exit(USAGE)
        sys.exit(f'supervisor-slapos-supervisord: {slapgrid_start(argv[1])}')
    linearread.install(True)
    incrementalread.install(True, True)  # that read also fills its cache
    from supervisor import supervisord
    supervisord.main(argv)


if __name__ == '__main__':
    main()
