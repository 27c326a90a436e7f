"""Every use of supervisor's internals, in one place.

supervisor has no API for what these do, so each one relies on supervisor
code that could change. Each use names that code and keeps the sha256 of
its source as it is in the supervisor versions it was checked against,
4.2.5 and 4.3.0 (the same in both). On a supervisor whose code differs
the use is not made: supervisor's own behaviour stays, and one line of
the log (supervisord's, or supervisorctl's stderr) says why.

- The configuration parser: ``ServerOptions.read_config`` looks its class
  up as ``supervisor.options.UnhosedConfigParser`` at each read;
  ``install_parser`` puts ``linearread.LinearConfigParser`` there (which
  overrides configparser's private ``_read`` and ``_sections``).
- The help: supervisorctl's ``Controller.do_help`` asks every plugin about
  every topic; ``route_help`` replaces it on the controller.
- The loaded configs: ``options.process_group_configs`` is what
  ``addProcessGroup`` and ``diff_to_active`` (``reloadConfig``) compare
  the loaded groups with; ``replace_group_configs`` keeps it in step with
  the groups the plugin adds and removes.
"""
import configparser
import hashlib
import inspect

import supervisor.options
import supervisor.rpcinterface
import supervisor.supervisorctl
import supervisor.supervisord

CHECKED_VERSIONS = ('4.2.5', '4.3.0')

# sha256 of inspect.getsource(...) in supervisor 4.2.5 and 4.3.0
PARSER_SOURCES = frozenset({  # UnhosedConfigParser
    '18696657c34ced1ee971df494483100405be7bd586eefc489fba1a40d8d9ce76'})
HELP_SOURCES = frozenset({  # Controller.do_help
    '471bf904104c849cb0e04f03b4dc7920179ca0f6e5e1f6cf70ba16a9b424d686'})
GROUP_CONFIG_SOURCES = frozenset({  # Supervisor.diff_to_active
    '1f8bfc928cd1ec9c0379c5f876f9bcf6686eb7c5381f5c7aa81a4cadfc6f825a'})
ADD_GROUP_SOURCES = frozenset({  # addProcessGroup
    '349aaf1ecfabbdbf26e137bf16fcd80bb315f75aee880f56bea4b2809d31ad37'})

PLAIN_PARSER = supervisor.options.UnhosedConfigParser


def source_digest(obj):
    """sha256 of ``obj``'s source, or None when it has none."""
    try:
        source = inspect.getsource(obj)
    except (OSError, TypeError):
        return None
    return hashlib.sha256(source.encode('utf-8')).hexdigest()


def unknown(obj, known):
    """Why ``obj`` (supervisor code) is not one a use was checked
    against, or None when it is."""
    digest = source_digest(obj)
    if digest in known:
        return None
    return (f'{obj.__qualname__} is not a known one (checked: supervisor '
            f'{" and ".join(CHECKED_VERSIONS)}; sha256 {digest})')


# the configuration parser

def parser_unsupported_reason():
    """Why ``LinearConfigParser`` cannot stand in for this supervisor's
    parser, or None when it can."""
    if 'UnhosedConfigParser' not in (
            supervisor.options.ServerOptions.read_config.__code__.co_names):
        return 'ServerOptions.read_config does not use UnhosedConfigParser'
    reason = unknown(PLAIN_PARSER, PARSER_SOURCES)
    if reason is not None:
        return reason
    probe = configparser.RawConfigParser()
    if not all(isinstance(getattr(probe, name, None), dict)
               for name in ('_sections', '_defaults', '_proxies')):
        return 'configparser keeps its sections otherwise'
    return None


def install_parser(parser_class, enable, disabled_reason):
    """Make supervisord's next full reads use ``parser_class`` (or the
    plain parser again when ``enable`` is false, ``disabled_reason``
    saying why). Harmless to call again; returns what it did, for
    supervisord's log."""
    reason = parser_unsupported_reason() if enable else disabled_reason
    linear = reason is None
    supervisor.options.UnhosedConfigParser = (
        parser_class if linear else PLAIN_PARSER)
    if linear:
        return 'linear configuration re-read installed'
    return f'plain configuration re-read ({reason})'


# the help of supervisorctl

def topic_owners(plugins, topic):
    """The plugins that have help (or a command) named ``topic``."""
    return [plugin for plugin in plugins
            if hasattr(plugin, f'help_{topic}')
            or hasattr(plugin, f'do_{topic}')]


def route_help(controller):
    """Route ``help <topic>`` to the plugins that know the topic; None,
    or why not (supervisorctl's own help stays).

    supervisorctl asks every plugin about every topic, and each plugin that
    lacks it prints ``*** No help on <topic>``: ``help slapos`` would start
    with the default plugin's, ``help status`` end with ours.
    """
    reason = unknown(supervisor.supervisorctl.Controller.do_help,
                     HELP_SOURCES)
    if reason is not None:
        return f'help <topic> asks every plugin: {reason}'

    def do_help(arg):
        topic = arg.strip()
        if topic == 'help':
            return controller.help_help()
        plugins = controller.options.plugins
        if topic:
            plugins = topic_owners(plugins, topic)
            if not plugins:
                return controller.output(controller.nohelp % (topic,))
        for plugin in plugins:
            plugin.do_help(topic)
    controller.do_help = do_help
    return None


# the loaded configs

def group_configs_reason():
    """Why ``replace_group_configs`` leaves supervisord's configs alone on
    this supervisor, or None when it keeps them in step."""
    return (unknown(supervisor.supervisord.Supervisor.diff_to_active,
                    GROUP_CONFIG_SOURCES)
            or unknown(supervisor.rpcinterface.SupervisorNamespaceRPCInterface
                       .addProcessGroup, ADD_GROUP_SOURCES))


def replace_group_configs(options, names, configs=()):
    """Keep supervisord's own view of the configuration in step with the
    groups the plugin loaded: the configs of groups ``names`` are replaced
    by ``configs``, the others stay. Nothing on a supervisor it was not
    checked against (``group_configs_reason``)."""
    if GROUP_CONFIGS_REASON is not None:
        return
    gone = set(names) | {c.name for c in configs}
    options.process_group_configs = [
        c for c in options.process_group_configs
        if c.name not in gone] + list(configs)


GROUP_CONFIGS_REASON = group_configs_reason()
