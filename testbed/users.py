"""Users made for one test (root only): a system user of its own group,
removed afterwards with that group."""

import contextlib
import os
import pwd
import subprocess


@contextlib.contextmanager
def temporary_user(prefix='spawn', in_own_group=False):
    """A new system user named after ``prefix`` and this process (tests
    on several Pythons run at once), with its own primary group, listed
    as a member of that group too with ``in_own_group``; yields its
    ``pwd`` entry."""
    name = f'{prefix}{os.getpid()}'
    subprocess.run(
        [
            'useradd',
            '--system',
            '--user-group',
            '--no-create-home',
            '--shell',
            '/usr/sbin/nologin',
            name,
        ],
        check=True,
    )
    try:
        if in_own_group:
            subprocess.run(
                ['gpasswd', '-a', name, name],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(['userdel', name], check=True)
        subprocess.run(['groupdel', '-f', name], stderr=subprocess.DEVNULL)


def run_as(node, record, prefix=()):
    """Have ``node``'s supervisord (not started yet) run as ``record``'s
    user, under ``prefix`` (e.g. ``prlimit``): its files become the
    user's. It keeps one capability, CAP_DAC_READ_SEARCH (ambient, so its
    children have it too, whichever way they are spawned), only to read
    a Python installed under /root (pyenv's); its uid is the user's, so
    supervisor treats it as a non-root supervisord (no user switch, the
    process limits apply)."""
    for path, dirs, files in os.walk(node.root):
        for name in [path] + [os.path.join(path, n) for n in dirs + files]:
            os.lchown(name, record.pw_uid, record.pw_gid)
    node.command_prefix = (
        *prefix,
        'setpriv',
        f'--reuid={record.pw_uid}',
        f'--regid={record.pw_gid}',
        '--init-groups',
        '--inh-caps=+dac_read_search',
        '--ambient-caps=+dac_read_search',
        '--',
    )
