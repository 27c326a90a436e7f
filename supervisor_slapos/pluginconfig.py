"""The ``[rpcinterface:slapos]`` options, checked against supervisord's
own configuration (runs inside supervisord, when the RPC interface is
made: at every start and reload).

Relative paths are resolved against the configuration file's directory,
as supervisord resolves ``[include] files``; ``include_dir`` must be the
directory of one of those patterns, or the plugin would write where
supervisord never reads.
"""

import os
from dataclasses import dataclass

from supervisor.datatypes import boolean

from supervisor_slapos import incrementalread, linearread, naming
from supervisor_slapos.nodeconfig import read_includes
from supervisor_slapos.ownership import Ownership


@dataclass(frozen=True)
class PluginOptions:
    """The options of ``[rpcinterface:slapos]``, resolved and checked."""

    instance_root: str
    include_dir: str
    state_dir: str
    ownership: Ownership
    linear_reread: bool = True
    instant_start: bool = True
    incremental_reread: bool = True


def parse_options(config, configfile, expansions=None):
    """``PluginOptions`` from the factory's ``config`` (strings).

    ``configfile`` is supervisord's configuration file (None only for
    dummies in unit tests: then paths are relative to the working
    directory and nothing is checked). Raises ValueError, before anything
    is written, on a missing option, a bad ``node_files`` id, a
    ``linear_reread``, ``incremental_reread`` or ``instant_start`` value
    that is no boolean, or an ``include_dir`` that no ``[include]``
    pattern reads.
    """
    try:
        instance_root = config['instance_root']
        include_dir = config['include_dir']
    except KeyError as e:
        raise ValueError(
            f'[rpcinterface:slapos] requires the option {e}'
        ) from e
    node_ids = naming.node_ids(
        config.get('node_files', naming.DEFAULT_NODE_FILES)
    )
    linear_reread = boolean_option(config, linearread.OPTION)
    incremental_reread = boolean_option(config, incrementalread.OPTION)
    instant_start = boolean_option(config, 'instant_start')
    here = (
        os.path.dirname(os.path.abspath(configfile))
        if configfile
        else os.getcwd()
    )
    include_dir = resolve(here, include_dir)
    state_dir = resolve(
        here, config.get('state_dir') or os.path.dirname(include_dir)
    )
    if configfile:
        includes = read_includes(configfile, expansions or {})
        check_include_dir(include_dir, includes, configfile)
    return PluginOptions(
        instance_root=resolve(here, instance_root),
        include_dir=include_dir,
        state_dir=state_dir,
        ownership=Ownership(node_ids),
        linear_reread=linear_reread,
        instant_start=instant_start,
        incremental_reread=incremental_reread,
    )


def boolean_option(config, name, default='true'):
    """A boolean option of ``[rpcinterface:slapos]``; ValueError naming
    it for a value that is no boolean."""
    try:
        return boolean(config.get(name, default))
    except ValueError as e:
        raise ValueError(f'[rpcinterface:slapos] {name}: {e}') from e


def resolve(here, path):
    return os.path.normpath(os.path.join(here, path))


def check_include_dir(include_dir, includes, configfile):
    if os.path.realpath(include_dir) not in includes.directories():
        raise ValueError(
            f'[rpcinterface:slapos] include_dir {include_dir!r} is not the '
            f'directory of an [include] files pattern of {configfile!r} '
            f'(patterns: {" ".join(includes.patterns) or "none"}): '
            f'supervisord would never read the files the plugin writes'
        )
