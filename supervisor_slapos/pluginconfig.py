"""The ``[rpcinterface:slapos]`` options, checked against supervisord's
own configuration (runs inside supervisord, when the RPC interface is
made: at every start and reload).

Relative paths are resolved against the configuration file's directory,
as supervisord resolves ``[include] files``; ``include_dir`` must be the
directory of one of those patterns, or the plugin would write where
supervisord never reads. The same reading of ``[include]`` gives the node
groups: names declared in the main configuration, in its other included
files, and in the node files of ``include_dir``.
"""
import configparser
import glob
import os
import platform
import re
from dataclasses import dataclass

from supervisor.options import UnhosedConfigParser

from supervisor_slapos import linearread, naming

HEADER_RE = re.compile(
    r'^\s*\[(program|group|eventlistener|fcgi-program):([^\]]+)\]', re.M)


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
    files: tuple       # the files they match, in supervisord's order

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
    ownership = naming.Ownership(node_ids)
    if configfile:
        includes = read_includes(configfile, expansions or {})
        check_include_dir(include_dir, includes, configfile)
        ownership = naming.Ownership(node_ids, node_group_names(
            configfile, includes, include_dir, ownership))
    return PluginOptions(
        instance_root=resolve(here, instance_root), include_dir=include_dir,
        state_dir=state_dir, ownership=ownership,
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
    files = tuple(f for p in patterns for f in sorted(glob.glob(p)))
    return Includes(patterns, files)


def check_include_dir(include_dir, includes, configfile):
    if os.path.realpath(include_dir) not in includes.directories():
        raise ValueError(
            f'[rpcinterface:slapos] include_dir {include_dir!r} is not the '
            f'directory of an [include] files pattern of {configfile!r} '
            f'(patterns: {" ".join(includes.patterns) or "none"}): '
            f'supervisord would never read the files the plugin writes')


def node_group_names(configfile, includes, include_dir, ownership):
    """Names of the groups and programs that are the node's, whatever
    their name: those of the main configuration and of its included
    files outside ``include_dir`` (the listener's group ``slapos`` stays
    safe from ``destroyPartition('slapos')``), and those of the node
    files of ``include_dir`` (files that no partition owns)."""
    include_dir = os.path.realpath(include_dir)
    real_dirs = {}  # one realpath per directory, not per file
    names = set()
    for path in (configfile, *includes.files):
        directory = os.path.dirname(path)
        if directory not in real_dirs:
            real_dirs[directory] = os.path.realpath(directory)
        if real_dirs[directory] == include_dir and ownership.file_owner(
                os.path.basename(path)) is not None:
            continue  # a partition's file
        try:
            with open(path, encoding='utf-8') as f:
                names.update(m.group(2).strip()
                             for m in HEADER_RE.finditer(f.read()))
        except (OSError, UnicodeDecodeError):
            continue
    return frozenset(names)
