"""The ``[rpcinterface:slapos]`` options, checked against supervisord's
own configuration (runs inside supervisord, when the RPC interface is
made: at every start and reload).

Relative paths are resolved against the configuration file's directory,
as supervisord resolves ``[include] files``; ``include_dir`` must be the
directory of one of those patterns, or the plugin would write where
supervisord never reads.
"""
import configparser
import glob
import os
import platform
from dataclasses import dataclass

from supervisor.options import UnhosedConfigParser

from supervisor_slapos import linearread, naming


@dataclass(frozen=True)
class PluginOptions:
    """The options of ``[rpcinterface:slapos]``, resolved and checked."""
    instance_root: str
    include_dir: str
    state_dir: str
    ownership: naming.Ownership
    linear_reread: bool = True


@dataclass(frozen=True)
class Includes:
    """What the ``[include]`` section of a configuration file reads."""
    patterns: tuple    # absolute patterns

    def files(self):
        """The files the patterns match now, in supervisord's order."""
        return [f for p in self.patterns for f in sorted(glob.glob(p))]

    def directories(self):
        return {os.path.realpath(os.path.dirname(p)) for p in self.patterns}


def parse_options(config, configfile, expansions=None):
    """``PluginOptions`` from the factory's ``config`` (strings).

    ``configfile`` is supervisord's configuration file (None only for
    dummies in unit tests: then paths are relative to the working
    directory and nothing is checked). Raises ValueError, before anything
    is written, on a missing option, a bad ``node_files`` id or
    ``linear_reread`` value, or an ``include_dir`` that no ``[include]``
    pattern reads.
    """
    try:
        instance_root = config['instance_root']
        include_dir = config['include_dir']
    except KeyError as e:
        raise ValueError(f'[rpcinterface:slapos] requires the option {e}')
    node_ids = naming.node_ids(
        config.get('node_files', naming.DEFAULT_NODE_FILES))
    linear_reread = linearread.enabled(config)
    here = (os.path.dirname(os.path.abspath(configfile)) if configfile
            else os.getcwd())
    include_dir = resolve(here, include_dir)
    state_dir = resolve(here, config.get('state_dir')
                        or os.path.dirname(include_dir))
    if configfile:
        includes = read_includes(configfile, expansions or {})
        check_include_dir(include_dir, includes, configfile)
    return PluginOptions(
        instance_root=resolve(here, instance_root), include_dir=include_dir,
        state_dir=state_dir, ownership=naming.Ownership(node_ids),
        linear_reread=linear_reread)


def resolve(here, path):
    return os.path.normpath(os.path.join(here, path))


def read_includes(configfile, expansions):
    """The ``[include]`` of ``configfile``, read as supervisord reads it."""
    here = os.path.dirname(os.path.abspath(configfile))
    parser = UnhosedConfigParser()
    try:
        parser.read(configfile)
        parser.expand_here(here)
        text = parser.saneget('include', 'files', '', expansions=dict(
            expansions, here=here, host_node_name=platform.node()))
    except (configparser.Error, ValueError):
        text = ''  # supervisord itself reports a broken configuration
    patterns = tuple(os.path.join(here, p) for p in text.split())
    return Includes(patterns)


def check_include_dir(include_dir, includes, configfile):
    if os.path.realpath(include_dir) not in includes.directories():
        raise ValueError(
            f'[rpcinterface:slapos] include_dir {include_dir!r} is not the '
            f'directory of an [include] files pattern of {configfile!r} '
            f'(patterns: {" ".join(includes.patterns) or "none"}): '
            f'supervisord would never read the files the plugin writes')

