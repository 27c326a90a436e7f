"""The listener's command line: ``supervisor-slapos-listener`` (also
``python -m supervisor_slapos.listener``).

``parse_args`` reads it into a :class:`ListenerArgs` (``--cfg`` read with
``slaposcfg``), with no contact with supervisord or the master: the
plugin parses the command line of its listener in supervisord's
configuration with it too (``offlinestart.py``), without importing the
listener. ``listener_from_args`` (``listener_from_config`` from parsed
arguments) builds the
:class:`~supervisor_slapos.listener.SlaposListener`, ``main``
runs it under supervisord. Nothing here imports ``requests`` (the master
client loads it when it is made).
"""

import argparse
import os
import sys
from dataclasses import dataclass
from typing import Optional
from urllib.parse import urlsplit

from supervisor import childutils

from supervisor_slapos import __version__
from supervisor_slapos.addresses import ADDRESS_WAIT
from supervisor_slapos.master import DEFAULT_TIMEOUT, MasterClient
from supervisor_slapos.schedule import PERIOD
from supervisor_slapos.slaposcfg import read_slapos_cfg


@dataclass(frozen=True)
class ListenerArgs:
    """The listener's command line, ``--cfg`` applied (``slaposcfg``
    reads that file: ``SlaposConfig``)."""

    master_url: Optional[str]
    computer_id: Optional[str]
    cert_file: Optional[str]
    key_file: Optional[str]
    ca_file: Optional[str]
    timeout: float
    computer_json: Optional[str]
    slapgrid: bool = False
    phase: Optional[float] = None
    address_wait: float = ADDRESS_WAIT

    @property
    def states_are_the_nodes(self):
        """True when the offline start at supervisord's start and reload
        needs no master (``--slapgrid``, or no master URL), so that the
        plugin may run it inside supervisord (``offlinestart``); else the
        listener owns the states and syncs them first."""
        return self.slapgrid or not self.master_url


def float_in(low, high, low_included=True):
    """An argparse type: a number in ``[low, high)`` (``(low, high)``
    when not ``low_included``)."""
    bounds = f'{"[" if low_included else "("}{low:g}, {high:g})'

    def convert(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f'not a number: {text!r}'
            ) from None
        if not (
            (low <= value if low_included else low < value) and value < high
        ):
            raise argparse.ArgumentTypeError(f'must be in {bounds}: {text!r}')
        return value

    return convert


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='supervisor-slapos-listener',
        description='supervisord event listener for a SlapOS node: starts '
        'the started partitions when the master cannot be '
        'reached, syncs the requested states when it can.',
    )
    parser.add_argument(
        '--version', action='version', version=f'%(prog)s {__version__}'
    )
    parser.add_argument(
        '--master-url',
        metavar='URL',
        help="base URL of the SlapOS master's JSON API (none: always offline)",
    )
    parser.add_argument(
        '--computer-id',
        metavar='ID',
        help="this node's compute node reference, e.g. COMP-1234",
    )
    parser.add_argument(
        '--cert-file', metavar='F', help='client certificate for the master'
    )
    parser.add_argument(
        '--key-file', metavar='F', help='key of the client certificate'
    )
    parser.add_argument(
        '--ca-file',
        metavar='F',
        help="CA bundle to verify the master (default: the system's)",
    )
    parser.add_argument(
        '--timeout',
        metavar='S',
        type=float_in(0, float('inf'), low_included=False),
        default=DEFAULT_TIMEOUT,
        help=f'seconds for one master request (default {DEFAULT_TIMEOUT:g})',
    )
    parser.add_argument(
        '--computer-json',
        metavar='F',
        help='the JSON dump written by slapos node format '
        '(computer_json in slapos.cfg), reported to '
        'the master when it changes',
    )
    parser.add_argument(
        '--cfg',
        metavar='F',
        help='a slapos.cfg: [slapos] master_url, '
        'computer_id, cert_file, key_file and '
        '[slapformat] computer_json are read from it '
        '(options given here win)',
    )
    parser.add_argument(
        '--slapgrid',
        action='store_true',
        help='slapgrid runs on this node: only the offline '
        'start and the format report, never a start, '
        'stop, destroy or state report',
    )
    parser.add_argument(
        '--address-wait',
        metavar='S',
        type=float_in(0, float('inf')),
        default=ADDRESS_WAIT,
        help="with --slapgrid: at the listener's start, wait "
        "at most S seconds (default "
        f"{ADDRESS_WAIT:g}; 0: no wait) until every "
        "partition address of computer_json can be "
        'bound on this host, then run the offline '
        'start (and log the addresses still missing)',
    )
    parser.add_argument(
        '--phase',
        metavar='S',
        type=float_in(0, PERIOD),
        help='seconds after each wall-clock minute at '
        'which this node asks the master, in [0, 60) '
        '(default: derived from the computer id)',
    )
    return parser


# the options that --cfg may give, as slaposcfg.SlaposConfig names them
CFG_OPTIONS = (
    'master_url',
    'computer_id',
    'cert_file',
    'key_file',
    'computer_json',
)


def apply_cfg(parser, args):
    """Fill the options not given on the command line from --cfg."""
    if not args.cfg:
        return
    try:
        cfg = read_slapos_cfg(args.cfg)
    except ValueError as exc:
        parser.error(f'--cfg: {exc}')
    for name in CFG_OPTIONS:
        if getattr(args, name) is None:
            setattr(args, name, getattr(cfg, name))


def parse_args(argv) -> ListenerArgs:
    """Parse and check the command line (argparse exits on errors)."""
    parser = make_parser()
    args = parser.parse_args(argv)
    apply_cfg(parser, args)
    if args.master_url:
        scheme = urlsplit(args.master_url).scheme
        if scheme not in ('http', 'https'):
            parser.error('--master-url must be an http or https URL')
        if not args.computer_id:
            parser.error('--master-url needs --computer-id')
    if args.key_file and not args.cert_file:
        parser.error('--key-file needs --cert-file')
    return ListenerArgs(
        master_url=args.master_url or None,
        computer_id=args.computer_id,
        cert_file=args.cert_file,
        key_file=args.key_file,
        ca_file=args.ca_file,
        timeout=args.timeout,
        computer_json=args.computer_json,
        slapgrid=args.slapgrid,
        phase=args.phase,
        address_wait=args.address_wait,
    )


def listener_from_args(argv, rpc=None, **kwargs):
    """Build a listener from its command line: no contact with
    supervisord or the master; the only I/O is reading ``--cfg``'s file,
    if given."""
    return listener_from_config(parse_args(argv), rpc, **kwargs)


def listener_from_config(config, rpc=None, **kwargs):
    """Build a listener from its parsed command line (a
    :class:`ListenerArgs`)."""
    # imported here: the plugin parses its listener's command line inside
    # supervisord (offlinestart.py) and needs none of the listener
    from supervisor_slapos.listener import SlaposListener

    master = None
    if config.master_url:
        master = MasterClient(
            config.master_url,
            config.computer_id,
            cert_file=config.cert_file,
            key_file=config.key_file,
            ca_file=config.ca_file,
            timeout=config.timeout,
        )
    return SlaposListener(
        rpc,
        master=master,
        computer_json=config.computer_json,
        slapgrid=config.slapgrid,
        phase=config.phase,
        address_wait=config.address_wait,
        **kwargs,
    )


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    config = parse_args(argv)  # --help and errors need no supervisord
    if not os.environ.get('SUPERVISOR_SERVER_URL'):
        sys.stderr.write(
            'supervisor-slapos-listener must be run by '
            'supervisord as an event listener '
            '(SUPERVISOR_SERVER_URL is not set)\n'
        )
        sys.exit(1)
    for stream in (sys.stdin, sys.stdout):
        if hasattr(stream, 'reconfigure'):
            stream.reconfigure(encoding='utf-8')
    listener = listener_from_config(
        config, rpc=childutils.getRPCInterface(os.environ)
    )
    listener.run()
    # supervisord may be gone: do not fail again flushing stdout at exit
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
