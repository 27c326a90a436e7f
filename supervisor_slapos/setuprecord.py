"""Where ``supervisor-slapos-setup`` wrote, kept in the plugin's
``state_dir`` (``setup.json``).

The setup writes it after its files, ``--remove`` reads it (to delete the
boot entry it wrote, wherever that was) then deletes it, and
``supervisorctl slapos check`` reads it (to look at that boot entry). The
format lives here only.
"""

import os
from dataclasses import asdict, dataclass

from supervisor_slapos.files import atomic_remove, read_json
from supervisor_slapos.syncstate import write_state_file

SETUP_RECORD_FILE = 'setup.json'


@dataclass(frozen=True)
class SetupRecord:
    """``version``: the setup's; ``cfg``: its ``--cfg``; ``boot_entry``:
    the boot entry's path; ``files``: every file it wrote."""

    version: str
    cfg: str
    boot_entry: str
    files: tuple

    def as_dict(self):
        return {**asdict(self), 'files': list(self.files)}


def record_path(state_dir):
    return os.path.join(state_dir, SETUP_RECORD_FILE)


def write_setup_record(state_dir, record):
    """Write ``record`` atomically (``state_dir`` made if missing)."""
    write_state_file(state_dir, SETUP_RECORD_FILE, record.as_dict())


def read_setup_record(state_dir):
    """The record in ``state_dir``; None when there is none. ValueError
    when it cannot be read (what was wrong, naming the file)."""
    path = record_path(state_dir)
    try:
        raw = read_json(path)
    except (OSError, ValueError) as e:
        raise ValueError(f'{path}: {e}') from e
    if raw is None:
        return None
    try:
        return SetupRecord(
            version=str(raw['version']),
            cfg=str(raw['cfg']),
            boot_entry=str(raw['boot_entry']),
            files=tuple(map(str, raw['files'])),
        )
    except (KeyError, TypeError) as e:
        raise ValueError(f'{path}: not a setup record ({e!r})') from e


def remove_setup_record(state_dir):
    """Delete the record; False when there was none."""
    return atomic_remove(record_path(state_dir))
