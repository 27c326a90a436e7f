"""What the plugin reads from a node's ``slapos.cfg``.

``slapos node`` reads that file with ``configparser.ConfigParser`` (basic
interpolation); so does this. Used by the listener (``--cfg``) and by
``supervisor-slapos-setup``; a pure reader: a path in, a value or a
``ValueError`` out.
"""

import configparser
import os
from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class SlaposConfig:
    """The keys of ``slapos.cfg`` the plugin uses (None when absent)."""

    path: str
    instance_root: Optional[str]
    master_url: Optional[str]
    computer_id: Optional[str]
    cert_file: Optional[str]
    key_file: Optional[str]
    computer_json: Optional[str]


KEYS = (
    ('slapos', 'instance_root'),
    ('slapos', 'master_url'),
    ('slapos', 'computer_id'),
    ('slapos', 'cert_file'),
    ('slapos', 'key_file'),
    ('slapformat', 'computer_json'),
)


def read_slapos_cfg(path) -> SlaposConfig:
    """Read ``path``; raise ValueError naming it when it cannot be read
    or does not parse."""
    parser = configparser.ConfigParser()
    try:
        with open(path, encoding='utf-8') as f:
            parser.read_file(f, source=str(path))
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f'cannot read {path}: {e}') from e
    except configparser.Error as e:
        raise ValueError(f'{path} does not parse: {e}') from e
    values = {}
    for section, key in KEYS:
        try:
            value = parser.get(section, key, fallback=None)
        except configparser.Error as e:
            raise ValueError(f'{path}: [{section}] {key}: {e}') from e
        values[key] = (value or '').strip() or None
    return SlaposConfig(path=os.path.abspath(path), **values)
