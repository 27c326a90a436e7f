"""The format report: what ``slapos node format`` tells the master.

``slapos node format`` writes a JSON dump of the node (``computer_json`` in
slapos.cfg) and then sends the partitions and their addresses to the master.
When sending fails the local format has still succeeded; the listener sends
it later, from the dump, as ``slapos.put.v0.compute_node_format``.

Pure functions turn the dump into the payload (or a ``ValueError`` that
says what is wrong with the file); :class:`FormatReport` keeps, in
``state_dir``, the hash of what the master last accepted.
"""

import hashlib
import json
import os
from dataclasses import dataclass

from supervisor_slapos.files import read_json
from supervisor_slapos.master import MasterError, MasterUnreachable
from supervisor_slapos.syncstate import write_state_file

FORMAT_STATE_FILE = 'format-report.json'
# A dump is a few hundred bytes per partition.
MAX_DUMP_BYTES = 16 * 1024 * 1024


class FormatFileError(ValueError):
    """The computer_json dump is missing or is not a valid dump."""


@dataclass(frozen=True)
class Sent:
    """What one ``FormatReport.send`` did: whether it contacted the
    master (``contacted``), whether the master accepted the report
    (``accepted``), and the master's refusal (``refusal``, '' if none)."""

    contacted: bool = False
    accepted: bool = False
    refusal: str = ''

    def errors(self):
        """The refusal, as a list of errors for the sync state."""
        return [self.refusal] if self.refusal else []


NOT_SENT = Sent()


def partition_list_from_dump(dump, computer_id):
    """The ``compute_partition_list`` of compute_node_format for ``dump``.

    ``dump`` is the decoded computer_json. Its ``reference`` must be
    ``computer_id`` (None: any reference; reporting the format of
    another node would replace that node's partitions at the master).
    For each partition, every address of ``address_list`` becomes an
    ``ip_list`` entry whose network interface is the partition's tap name,
    or, when the partition has no tap name, the partition reference (as
    ``slapos proxy`` does).
    Keys other than these are ignored.
    """
    if not isinstance(dump, dict):
        raise FormatFileError('not a JSON object')
    reference = dump.get('reference')
    if not isinstance(reference, str) or not reference:
        raise FormatFileError('no "reference" string')
    if computer_id is not None and reference != computer_id:
        raise FormatFileError(
            f'reference {reference!r} is not this node ({computer_id!r})'
        )
    partitions = dump.get('partition_list')
    if not isinstance(partitions, list):
        raise FormatFileError('no "partition_list" array')
    result = []
    seen = set()
    for index, partition in enumerate(partitions):
        converted = _partition_from_dump(partition, f'partition_list[{index}]')
        partition_id = converted['partition_id']
        if partition_id in seen:
            raise FormatFileError(
                f'partition_list[{index}]: partition {partition_id!r} twice'
            )
        seen.add(partition_id)
        result.append(converted)
    return result


def _partition_from_dump(partition, where):
    """One ``compute_partition_list`` entry for the dump's ``partition``
    (found at ``where``)."""
    if not isinstance(partition, dict):
        raise FormatFileError(f'{where} is not an object')
    partition_id = partition.get('reference')
    if not isinstance(partition_id, str) or not partition_id:
        raise FormatFileError(f'{where}: no "reference" string')
    where = f'{where} ({partition_id})'
    addresses = partition.get('address_list', [])
    if not isinstance(addresses, list):
        raise FormatFileError(f'{where}: "address_list" is not an array')
    tap = partition.get('tap')
    if tap is not None and not isinstance(tap, dict):
        raise FormatFileError(f'{where}: "tap" is not an object')
    interface = (tap or {}).get('name') or partition_id
    if not isinstance(interface, str):
        raise FormatFileError(f'{where}: tap "name" is not a string')
    ip_list = []
    for number, address in enumerate(addresses):
        if not isinstance(address, dict):
            raise FormatFileError(
                f'{where}: address {number} is not an object'
            )
        addr, netmask = address.get('addr'), address.get('netmask')
        if not isinstance(addr, str) or not addr:
            raise FormatFileError(
                f'{where}: address {number} has no "addr" string'
            )
        if not isinstance(netmask, str):
            raise FormatFileError(
                f'{where}: address {number} has no "netmask" string'
            )
        ip_list.append(
            {
                'ip-address': addr,
                'netmask': netmask,
                'network-interface': interface,
            }
        )
    return {'partition_id': partition_id, 'ip_list': ip_list}


def read_dump(path, computer_id):
    """Read and convert the dump at ``path``; FormatFileError (naming the
    file) for whatever the file holds that is not a valid dump: missing,
    unreadable, too large, not UTF-8, not JSON, nested too deeply."""
    try:
        with open(path, 'rb') as f:
            raw = f.read(MAX_DUMP_BYTES + 1)
    except FileNotFoundError:
        raise FormatFileError(f'{path}: no such file') from None
    except OSError as exc:
        raise FormatFileError(
            f'{path}: cannot read: {exc.strerror or exc}'
        ) from exc
    if len(raw) > MAX_DUMP_BYTES:
        raise FormatFileError(f'{path}: larger than {MAX_DUMP_BYTES} bytes')
    try:
        dump = json.loads(raw.decode('utf-8'))
    except (UnicodeDecodeError, ValueError) as exc:
        raise FormatFileError(
            f'{path}: not valid JSON: {str(exc)[:200]}'
        ) from exc
    except RecursionError:
        raise FormatFileError(
            f'{path}: not valid JSON: nested too deeply'
        ) from None
    try:
        return partition_list_from_dump(dump, computer_id)
    except FormatFileError as exc:
        raise FormatFileError(f'{path}: {exc}') from exc


def partition_addresses(path):
    """Every address the dump at ``path`` gives the partitions, in order,
    each once; FormatFileError if the file is broken."""
    return list(
        dict.fromkeys(
            ip['ip-address']
            for partition in read_dump(path, None)
            for ip in partition['ip_list']
        )
    )


def payload_hash(master_url, computer_id, partition_list):
    """The sha256 identifying one report to one master."""
    document = json.dumps(
        [master_url, computer_id, partition_list],
        sort_keys=True,
        separators=(',', ':'),
    )
    return hashlib.sha256(document.encode('utf-8')).hexdigest()


class FormatReport:
    """The dump, and what the master accepted of it.

    ``check()`` reads the file each time it is called (it is small), so a
    changed file is noticed at the next attempt. ``error`` is the local
    problem of the file as last read ('' when it is fine). ``send()``
    reports it to ``master`` (a MasterClient) when it is due.
    """

    def __init__(self, path, master, state_dir, logger):
        self.path = path
        self.master = master
        self.computer_id = master.computer_id
        self.master_url = master.display_url
        self.logger = logger
        self.state_dir = state_dir
        self.state_file = os.path.join(state_dir, FORMAT_STATE_FILE)
        self.error = ''
        self.accepted = self._read_accepted()

    def _read_accepted(self):
        try:
            state = read_json(self.state_file)
        except (OSError, ValueError):
            return ''
        digest = state.get('sha256') if isinstance(state, dict) else None
        return digest if isinstance(digest, str) else ''

    def check(self):
        """Return ``(partition_list, digest, changed_error)``.

        ``partition_list`` is None when the file is broken (``self.error``
        then says why) or when the master already accepted this content.
        ``changed_error`` is true when the error differs from the last
        check, so that the caller logs each problem once.
        """
        previous = self.error
        try:
            partition_list = read_dump(self.path, self.computer_id)
        except FormatFileError as exc:
            self.error = f'computer_json {exc}'
            return None, '', self.error != previous
        self.error = ''
        digest = payload_hash(
            self.master_url, self.computer_id, partition_list
        )
        if digest == self.accepted:
            return None, digest, previous != ''
        return partition_list, digest, previous != ''

    def accept(self, digest):
        """The master accepted the report with ``digest``: remember it."""
        self.accepted = digest
        write_state_file(self.state_dir, FORMAT_STATE_FILE, {'sha256': digest})

    def send(self):
        """Send the report if the dump changed since the master accepted
        it, and say what came of it (a :class:`Sent`). MasterUnreachable
        goes up (no point going on then)."""
        partition_list, digest, changed = self.check()
        if self.error:
            if changed:
                self.logger.error(
                    '%s: not reporting the format until it changes', self.error
                )
            return NOT_SENT
        if changed:
            self.logger.info('computer_json %s is valid again', self.path)
        if partition_list is None:
            return NOT_SENT  # the master already has it
        try:
            self.master.report_format(partition_list)
        except MasterUnreachable:
            raise
        except MasterError as exc:
            self.logger.warning('format report refused: %s', exc)
            return Sent(contacted=True, refusal=f'format report: {exc}')
        self.logger.info(
            'format report accepted (%d partitions)', len(partition_list)
        )
        try:
            self.accept(digest)
        except OSError as exc:
            self.logger.error('cannot remember the format report: %s', exc)
        return Sent(contacted=True, accepted=True)
