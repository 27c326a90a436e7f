"""A small client for the SlapOS master's JSON API.

Only the three calls the listener needs: list the instances of this compute
node, report the state of an instance, report the format of the node. Every
answer is checked strictly: anything that is not what the API promises
(connection refused, timeout, an HTTP error status, HTML, truncated JSON, a
missing field, a wrong type, a body larger than the cap) raises
:class:`MasterError`, so that the listener can fall back to its offline mode
as slapgrid does on any request error.
"""

import contextlib
import json
import signal
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

# requests and urllib3 (about 70 ms to import): imported with the first
# session (``import_http``), so that a listener that never asks a master,
# or not before its offline start, does without them.
requests = urllib3 = None

LIST_INSTANCES = 'slapos.allDocs.v0.compute_node_instance_list'
REPORT_STATE = 'slapos.put.v0.software_instance_reported_state'
REPORT_FORMAT = 'slapos.put.v0.compute_node_format'

INSTANCE_STATES = ('started', 'stopped', 'destroyed')
# the states the master accepts in a report (reportedstates keeps those)
REPORTED_STATES = ('started', 'stopped')

DEFAULT_TIMEOUT = 10.0
# Connecting is quick when the master is up; a black-holed master must not
# hold the offline start for the whole read timeout.
MAX_CONNECT_TIMEOUT = 3.0
# An instance list is a few hundred bytes per instance: 16 MiB is tens of
# thousands of instances. Other answers are tiny.
MAX_LIST_BYTES = 16 * 1024 * 1024
MAX_ANSWER_BYTES = 1024 * 1024
# A reverse proxy in front of a master that is restarting: the master is
# unavailable, like one that cannot be reached.
UNAVAILABLE_STATUSES = (502, 503, 504)
CHUNK = 64 * 1024


class DeadlineExpired(BaseException):
    """Raised by SIGALRM inside a blocking read (a BaseException, so that
    no ``except Exception`` on the way swallows it)."""


@contextlib.contextmanager
def total_deadline(seconds):
    """Interrupt whatever runs inside after ``seconds``.

    requests' timeouts bound each read of the socket, not a whole answer:
    a master (or a proxy in front of it) that drips its status line and
    headers a byte at a time would hold the listener, and with it the
    offline start, for ever. The listener is single-threaded, so an alarm
    in its main thread bounds the whole exchange; elsewhere (threads in
    tests) this does nothing and the per-read bounds remain.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise DeadlineExpired()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class MasterError(Exception):
    """The master gave no valid answer (any reason)."""


class MasterUnreachable(MasterError):
    """The master could not be reached at all, or is unavailable
    (connection refused, timeout, TLS failure, 502/503/504).

    The listener stops talking to the master for the current attempt on
    this error, instead of waiting for a timeout once per request.
    """


@dataclass(frozen=True)
class Instance:
    """One entry of the master's instance list for this node."""

    title: str
    instance_guid: str
    state: str
    partition_id: str
    software_release_uri: str = ''


def redact_url(url):
    """``url`` without any user:password part, for logs and sync state."""
    if not url:
        return ''
    parts = urlsplit(url)
    if '@' not in parts.netloc:
        return url
    host = parts.netloc.rpartition('@')[2]
    return urlunsplit(parts._replace(netloc=host))


def import_http():
    """Import requests and urllib3 into this module (once)."""
    global requests, urllib3
    import requests
    import requests.adapters
    import urllib3


def make_session(cert_file=None, key_file=None, ca_file=None):
    """A session that never retries: a failed request is retried by the
    listener's schedule, on the node's own moment (an immediate retry
    would multiply the connections a whole fleet makes to a master that
    is already struggling)."""
    import_http()
    session = requests.Session()
    if cert_file:
        session.cert = (cert_file, key_file) if key_file else cert_file
    session.verify = ca_file or True
    adapter = requests.adapters.HTTPAdapter(max_retries=0)
    session.mount('http://', adapter)
    session.mount('https://', adapter)
    return session


class MasterClient:
    """The SlapOS master as seen from one compute node.

    ``url`` is the base URL of the JSON API (``slapos proxy`` serves it at
    its root). ``timeout`` bounds one request: connecting takes at most
    ``min(timeout, 3)`` seconds, and the whole answer must arrive within
    ``timeout`` seconds.
    """

    def __init__(
        self,
        url,
        computer_id,
        cert_file=None,
        key_file=None,
        ca_file=None,
        timeout=DEFAULT_TIMEOUT,
        max_list_bytes=MAX_LIST_BYTES,
    ):
        if not url:
            raise ValueError('a master URL is required')
        if not computer_id:
            raise ValueError('a computer id is required')
        if not timeout > 0:
            raise ValueError(f'timeout must be positive, not {timeout!r}')
        self.url = url.rstrip('/')
        self.display_url = redact_url(self.url)
        self.computer_id = computer_id
        self.timeout = float(timeout)
        self.connect_timeout = min(self.timeout, MAX_CONNECT_TIMEOUT)
        self.max_list_bytes = max_list_bytes
        # requests lets REQUESTS_CA_BUNDLE override session.verify, so the
        # verification setting is also passed with every request.
        self.verify = ca_file or True
        self._session_files = (cert_file, key_file, ca_file)
        self._made_session = None

    @property
    def _session(self):
        """The HTTP session, made at the first request."""
        if self._made_session is None:
            self._made_session = make_session(*self._session_files)
        return self._made_session

    def close(self):
        if self._made_session is not None:
            self._made_session.close()

    # API calls

    def list_instances(self):
        """The instances the master wants on this node, as a list of
        :class:`Instance`; raise MasterError for anything else."""
        answer = self._post(
            LIST_INSTANCES,
            {'computer_guid': self.computer_id},
            max_bytes=self.max_list_bytes,
        )
        return parse_instance_list(answer)

    def report_state(self, instance_guid, state):
        """Tell the master that instance ``instance_guid`` is ``state``."""
        if state not in REPORTED_STATES:
            raise ValueError(f'cannot report state {state!r}')
        answer = self._post(
            REPORT_STATE,
            {'instance_guid': instance_guid, 'reported_state': state},
        )
        check_success(REPORT_STATE, answer)

    def report_format(self, compute_partition_list):
        """Send the partitions and their addresses (compute_node_format)."""
        answer = self._post(
            REPORT_FORMAT,
            {
                'computer_guid': self.computer_id,
                'compute_partition_list': compute_partition_list,
            },
        )
        check_success(REPORT_FORMAT, answer)

    # transport

    def _post(self, endpoint, body, max_bytes=MAX_ANSWER_BYTES):
        """POST ``body`` as JSON; return the decoded JSON answer.

        Whatever happens on the way (the master's answer is anything it
        likes) comes out as a MasterError: nothing else escapes, so that
        the caller's offline start is never skipped.
        """
        budget = self.connect_timeout + self.timeout + 1
        where = f'{endpoint} at {self.display_url}'
        try:
            with total_deadline(budget):
                return self._exchange(endpoint, body, max_bytes)
        except DeadlineExpired:
            raise MasterUnreachable(
                f'{where}: timed out waiting for the whole answer '
                f'({budget:g} s)'
            ) from None
        except MasterError:
            raise
        except Exception as exc:
            raise MasterError(
                f'{where}: unusable answer: '
                f'{type(exc).__name__}: {str(exc)[:200]}'
            ) from exc

    def _exchange(self, endpoint, body, max_bytes):
        url = f'{self.url}/{endpoint}'
        where = f'{endpoint} at {self.display_url}'
        deadline = time.monotonic() + self.connect_timeout + self.timeout
        try:
            response = self._session.post(
                url,
                json=body,
                headers={'Accept': 'application/json'},
                timeout=(self.connect_timeout, self.timeout),
                verify=self.verify,
                stream=True,
                allow_redirects=False,
            )
        except requests.exceptions.SSLError as exc:
            raise MasterUnreachable(
                f'{where}: TLS error: {_reason(exc)}'
            ) from exc
        except requests.exceptions.Timeout as exc:
            raise MasterUnreachable(
                f'{where}: {_timeout_reason(exc, self)}'
            ) from exc
        except requests.exceptions.ConnectionError as exc:
            raise MasterUnreachable(
                f'{where}: connection failed: {_reason(exc)}'
            ) from exc
        except requests.exceptions.RequestException as exc:
            raise MasterError(
                f'{where}: request failed: {_reason(exc)}'
            ) from exc
        except OSError as exc:
            # e.g. a certificate file that does not exist
            raise MasterUnreachable(f'{where}: cannot connect: {exc}') from exc
        except ValueError as exc:
            raise MasterError(f'{where}: request failed: {exc}') from exc
        try:
            if response.status_code in UNAVAILABLE_STATUSES:
                raise MasterUnreachable(
                    f'{where}: HTTP {response.status_code}'
                )
            if response.status_code != 200:
                raise MasterError(
                    f'{where}: HTTP {response.status_code}'
                    f'{_error_title(response)}'
                )
            data = _read_body(response, max_bytes, deadline, where)
        finally:
            response.close()
        return parse_answer(data, where)


def _read_body(response, max_bytes, deadline, where):
    length = response.headers.get('Content-Length')
    if length is not None:
        try:
            announced = int(length)
        except ValueError:
            raise MasterError(
                f'{where}: bad Content-Length {length!r}'
            ) from None
        if announced > max_bytes:
            raise MasterError(
                f'{where}: answer of {announced} bytes is '
                f'larger than the {max_bytes} bytes allowed'
            )
    chunks = []
    size = 0
    try:
        for chunk in _chunks(response):
            size += len(chunk)
            if size > max_bytes:
                raise MasterError(
                    f'{where}: answer larger than the '
                    f'{max_bytes} bytes allowed'
                )
            if time.monotonic() > deadline:
                raise MasterUnreachable(f'{where}: answer too slow')
            chunks.append(chunk)
    except requests.exceptions.RequestException as exc:
        # ChunkedEncodingError (connection cut mid-body), read timeouts...
        raise MasterUnreachable(
            f'{where}: answer cut: {_reason(exc)}'
        ) from exc
    except OSError as exc:
        raise MasterUnreachable(f'{where}: answer cut: {exc}') from exc
    return b''.join(chunks)


def _chunks(response):
    """The body of ``response`` as it arrives, one read of the socket at a
    time (urllib3's ``read1``), so that a master dripping its answer a
    byte at a time meets the deadline: ``iter_content`` would block until
    a whole CHUNK had arrived. Without ``read1`` (urllib3 < 2.3),
    ``iter_content``."""
    raw = response.raw
    if not hasattr(raw, 'read1'):
        yield from response.iter_content(CHUNK)
        return
    while True:
        try:
            chunk = raw.read1(CHUNK, decode_content=True)
        except urllib3.exceptions.HTTPError as exc:
            # what iter_content would raise: a cut, a read timeout...
            raise requests.exceptions.ConnectionError(exc) from exc
        if not chunk:
            return
        yield chunk


def _reject_constant(name):
    raise ValueError(f'invalid JSON constant {name}')


def parse_answer(data, where):
    """The JSON value in ``data`` (bytes of a master's answer), or
    MasterError: the one place where the master's answers are decoded.

    Any bytes are refused cleanly: not UTF-8, not JSON, NaN, and nesting
    too deep for the decoder (``json`` raises RecursionError there, not
    ValueError).
    """
    try:
        return json.loads(
            data.decode('utf-8'), parse_constant=_reject_constant
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise MasterError(
            f'{where}: answer is not JSON: {str(exc)[:200]}'
        ) from exc
    except RecursionError:
        raise MasterError(
            f'{where}: answer is not JSON: nested too deeply'
        ) from None


def _timeout_reason(exc, client):
    """What timed out, said once: connecting or waiting for the answer."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return f'timed out connecting ({client.connect_timeout:g} s)'
    return f'timed out waiting for the answer ({client.timeout:g} s)'


def _reason(exc):
    """A short reason for a requests exception (innermost cause)."""
    seen = exc
    for _ in range(10):
        inner = seen.__cause__ or seen.__context__
        if inner is None:
            break
        seen = inner
    text = str(seen) or type(seen).__name__
    return text[:300]


def _error_title(response):
    """The ``title`` of a JSON error document, if cheap to get."""
    try:
        if int(response.headers.get('Content-Length', 'x')) > 4096:
            return ''
        document = parse_answer(response.content, '')
        title = document.get('title')
    except (
        ValueError,
        AttributeError,
        OSError,
        MasterError,
        requests.exceptions.RequestException,
    ):
        return ''
    return f': {title[:200]}' if isinstance(title, str) and title else ''


# validation


def check_success(endpoint, answer):
    """A report answer must be a JSON object; a ``type`` must be success."""
    if not isinstance(answer, dict):
        raise MasterError(f'{endpoint}: answer is not a JSON object')
    kind = answer.get('type', 'success')
    if kind != 'success':
        raise MasterError(f'{endpoint}: answer type is {kind!r}, not success')


def parse_instance_list(answer):
    """Validate a decoded compute_node_instance_list answer.

    The whole list is refused when one entry is wrong: a master that sends
    half-valid data is not trusted with the other half. ``title``,
    ``instance_guid``, ``state`` and ``compute_partition_id`` are required
    strings (``instance_guid`` non-empty, ``state`` one of
    INSTANCE_STATES); ``software_release_uri`` is an optional string.
    Whether the partition id is a valid one is the listener's business:
    that is one partition's problem, not the list's.
    """
    if not isinstance(answer, dict):
        raise MasterError('instance list: answer is not a JSON object')
    result_list = answer.get('result_list')
    if not isinstance(result_list, list):
        raise MasterError('instance list: no result_list array')
    instances = []
    for index, entry in enumerate(result_list):
        where = f'instance list: entry {index}'
        if not isinstance(entry, dict):
            raise MasterError(f'{where} is not an object')
        values = {}
        for key in ('title', 'instance_guid', 'state', 'compute_partition_id'):
            value = entry.get(key)
            if not isinstance(value, str):
                raise MasterError(f'{where}: {key} missing or not a string')
            values[key] = value
        if not values['instance_guid']:
            raise MasterError(f'{where}: empty instance_guid')
        if values['state'] not in INSTANCE_STATES:
            raise MasterError(f'{where}: unknown state {values["state"]!r}')
        uri = entry.get('software_release_uri', '')
        if not isinstance(uri, str):
            raise MasterError(f'{where}: software_release_uri not a string')
        instances.append(
            Instance(
                title=values['title'],
                instance_guid=values['instance_guid'],
                state=values['state'],
                partition_id=values['compute_partition_id'],
                software_release_uri=uri,
            )
        )
    return instances
