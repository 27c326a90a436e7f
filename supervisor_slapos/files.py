"""Atomic writes and removals of small files, and the include directory.

A crash (or a power loss) at any moment leaves either the old file or the
new one, never half a file: supervisord refuses to start on a broken
include, so a half-written ``P.conf`` would take the whole node down.
"""

import contextlib
import json
import os
import tempfile

# Temporary files start with a dot and end in .tmp, so that no include
# pattern such as "*.conf" ever picks them up, and carry the plugin's name,
# so that the cleanup at start never deletes another program's temporaries
# (state_dir and include_dir may be shared directories such as /etc).
TMP_PREFIX = '.'
TMP_SUFFIX = '.supervisor_slapos.tmp'


def fsync_directory(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs_durable(path):
    """``os.makedirs(path, exist_ok=True)``, made durable: the parent of
    every directory it creates is fsynced, so that a power loss right
    after cannot lose the directory (and what was written in it since).
    Return True when it created anything."""
    path = os.path.abspath(path)
    missing = []
    while not os.path.isdir(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    if not missing:
        return False
    os.makedirs(missing[0], exist_ok=True)
    for directory in reversed(missing):
        fsync_directory(os.path.dirname(directory))
    return True


def atomic_write(path, text, mode=0o600):
    """Replace ``path`` with ``text``: temp file, fsync, rename, fsync dir.

    Files are 0600 by default, as slapgrid writes them: they name every
    partition's commands and users, and only supervisord reads them.
    """
    directory, basename = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(
        prefix=TMP_PREFIX + basename + '.', suffix=TMP_SUFFIX, dir=directory
    )
    try:
        with os.fdopen(fd, 'w', encoding='utf-8') as f:
            f.write(text)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_directory(directory)


def atomic_remove(path):
    """Remove ``path`` durably. Return False if it did not exist."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    fsync_directory(os.path.dirname(os.path.abspath(path)))
    return True


def read_text(path):
    """The content of ``path``, or None when it does not exist."""
    try:
        with open(path, encoding='utf-8') as f:
            return f.read()
    except FileNotFoundError:
        return None


def read_json(path):
    """The JSON value in ``path``, or None when the file does not exist.

    Raises OSError, or ValueError for a file that is not UTF-8 or not
    JSON: the caller decides what a broken state file means.
    """
    text = read_text(path)
    return None if text is None else json.loads(text)


def write_json(path, value):
    """Write ``value`` to ``path`` as JSON, atomically."""
    atomic_write(path, json.dumps(value, indent=1, sort_keys=True) + '\n')


def remove_stale_temporaries(directory):
    """Remove the plugin's temporary files that a crash left behind;
    return their names."""
    removed = []
    with os.scandir(directory) as entries:
        for entry in entries:
            if (
                entry.name.startswith(TMP_PREFIX)
                and entry.name.endswith(TMP_SUFFIX)
                and entry.is_file(follow_symlinks=False)
            ):
                os.unlink(entry.path)
                removed.append(entry.name)
    if removed:
        fsync_directory(directory)
    return sorted(removed)
