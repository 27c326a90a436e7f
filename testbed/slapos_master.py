"""A real SlapOS master for tests, and a fault-injecting proxy in front.

:class:`SlaposProxy` runs ``slapos proxy start --cfg FILE`` (slapos.core's
stand-alone master) on a free loopback port in a temporary directory and
speaks its JSON API: register the node (compute_node_format), supply a
software release, request instances.

:class:`FaultProxy` is a small HTTP(S) server that forwards to an upstream
master (or to nothing), records every request, and can misbehave on
demand: refuse connections, hold them without answering, answer 403/500,
HTML, truncated or cut JSON, a list entry without a field, a 50 MB body,
or a rewritten answer; or, as a whole, accept every connection and never
answer (``hang()``: a :class:`SilentServer` on its port).
"""

import contextlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
import requests

from testbed import stacks
from testbed.polling import wait_until

LIST = 'slapos.allDocs.v0.compute_node_instance_list'
REPORT_STATE = 'slapos.put.v0.software_instance_reported_state'
FORMAT = 'slapos.put.v0.compute_node_format'
COMPUTER_ID = 'COMP-TEST'
FORM = 'application/x-www-form-urlencoded'
SOFTWARE_RELEASE = 'http://example.invalid/software/test/software.cfg'
# Size of the 'huge' answer, in MB.
HUGE_MB = int(os.environ.get('SLAPOS_TEST_HUGE_MB', '50'))


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def slapos_executable():
    """The ``slapos`` command of this run's stack (testbed.stacks:
    ``SUPERVISOR_SLAPOS_STACK``), or skip the test saying why."""
    stack = stacks.require()
    if not stack.eggs:
        try:
            import slapos.libnetworkcache  # noqa: F401 (proxy needs it)
        except ImportError:
            pytest.skip('slapos.libnetworkcache is missing: no slapos proxy')
    return stack.slapos


def write_dump(path, addresses):
    """A computer_json as slapos node format writes it; ``addresses``
    maps a partition to its IPv4 address. Replaced at once: a listener
    reading it meanwhile sees the old dump or the new one."""
    tmp = path.with_name(path.name + '.tmp')
    tmp.write_text(
        json.dumps(
            {
                'reference': COMPUTER_ID,
                'address': '10.0.0.1',
                'netmask': '255.255.255.0',
                'partition_list': [
                    {
                        'reference': pid,
                        'path': f'/srv/slapgrid/{pid}',
                        'address_list': [
                            {'addr': addr, 'netmask': '255.255.255.0'}
                        ],
                        'tap': {'name': f'slaptap{index}'},
                    }
                    for index, (pid, addr) in enumerate(
                        sorted(addresses.items())
                    )
                ],
            },
            indent=2,
            sort_keys=True,
        )
    )
    tmp.replace(path)


class MasterCallError(AssertionError):
    def __init__(self, endpoint, status, text):
        super().__init__(f'{endpoint}: HTTP {status}: {text[:500]}')
        self.status = status


class SlaposProxy:
    """``slapos proxy`` serving the JSON API for node ``computer_id``."""

    def __init__(self, root, computer_id=COMPUTER_ID, stack=None):
        self.root = Path(root)
        # the stack's slapos command (the run's stack unless given)
        self.slapos = stack.slapos if stack else slapos_executable()
        self.root.mkdir(parents=True, exist_ok=True)
        self.computer_id = computer_id
        self.port = free_port()
        self.url = f'http://127.0.0.1:{self.port}'
        self.config = self.root / 'slapos-proxy.cfg'
        self.log = self.root / 'slapos-proxy.log'
        self.config.write_text(
            f'[slapos]\n'
            f'computer_id = {computer_id}\n'
            f'master_url = {self.url}\n'
            f'\n[slapproxy]\n'
            f'host = 127.0.0.1\n'
            f'port = {self.port}\n'
            f'database_uri = {self.root / "proxy.db"}\n'
        )
        self.process = None

    def start(self, timeout=60):
        with open(self.log, 'ab') as log:
            self.process = subprocess.Popen(
                [self.slapos, 'proxy', 'start', '--cfg', str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.root,
                start_new_session=True,
            )

        def answers():
            if self.process.poll() is not None:
                raise AssertionError(
                    'slapos proxy exited:\n'
                    + self.log.read_text(errors='replace')
                )
            try:
                return requests.get(f'{self.url}/getRunId', timeout=5).ok
            except requests.RequestException:
                return False

        wait_until(answers, timeout, what='slapos proxy to answer')
        return self

    def stop(self):
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        self.process = None

    # JSON API

    def call(self, endpoint, body):
        response = requests.post(
            f'{self.url}/{endpoint}', json=body, timeout=30
        )
        if response.status_code != 200:
            raise MasterCallError(
                endpoint, response.status_code, response.text
            )
        return response.json()

    def format(self, partitions):
        """Register the node and its partitions: ``partitions`` maps a
        partition id to a list of ``(address, netmask)``."""
        return self.call(
            FORMAT,
            {
                'computer_guid': self.computer_id,
                'compute_partition_list': [
                    {
                        'partition_id': pid,
                        'ip_list': [
                            {
                                'ip-address': addr,
                                'netmask': mask,
                                'network-interface': f'tap-{pid}',
                            }
                            for addr, mask in addresses
                        ],
                    }
                    for pid, addresses in partitions.items()
                ],
            },
        )

    def supply(self, software_release=SOFTWARE_RELEASE, state='available'):
        return self.call(
            'slapos.post.v0.software_installation',
            {
                'computer_guid': self.computer_id,
                'software_release_uri': software_release,
                'state': state,
            },
        )

    def request(
        self,
        title,
        state='started',
        software_release=SOFTWARE_RELEASE,
        software_type='default',
    ):
        """Request instance ``title`` in ``state``; returns the master's
        answer (``instance_guid``, ``compute_partition_id``, ...)."""
        return self.call(
            'slapos.post.v0.software_instance',
            {
                'title': title,
                'software_release_uri': software_release,
                'software_type': software_type,
                'state': state,
                'sla_parameters': {'computer_guid': self.computer_id},
            },
        )

    def instance(self, instance_guid):
        return self.call(
            'slapos.get.v0.software_instance', {'instance_guid': instance_guid}
        )

    def instance_list(self):
        return self.call(LIST, {'computer_guid': self.computer_id})


# fault injection


class Fault:
    """How FaultProxy answers a POST to one of ``endpoints`` (all if
    None)."""

    def __init__(
        self, kind, endpoints=None, status=500, body=None, rewrite=None
    ):
        self.kind = kind
        self.endpoints = endpoints
        self.status = status
        self.body = body
        self.rewrite = rewrite

    def applies(self, endpoint):
        return self.endpoints is None or endpoint in self.endpoints


class _Handler(BaseHTTPRequestHandler):
    server_version = 'FaultProxy/1'

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        self._forward('GET', None)

    def do_POST(self):
        length = int(self.headers.get('Content-Length') or 0)
        body = self.rfile.read(length) if length else b''
        proxy = self.server.fault_proxy
        endpoint = self.path.lstrip('/')
        try:
            decoded = json.loads(body) if body else None
        except ValueError:
            decoded = None
        if self.headers.get('Content-Type') == FORM:  # the slap XML API
            decoded = dict(parse_qsl(body.decode()))
        fault = proxy.fault
        proxy.record(endpoint, decoded)
        if fault is None or not fault.applies(endpoint):
            self._forward('POST', body)
            return
        getattr(self, f'_fault_{fault.kind}')(fault, body)

    # answers

    def _send(
        self, status, body, content_type='application/json', length=None
    ):
        self.send_response(status)
        self.send_header('Content-Type', content_type)
        self.send_header(
            'Content-Length', str(len(body) if length is None else length)
        )
        self.end_headers()
        with contextlib.suppress(OSError):
            self.wfile.write(body)

    def _forward(self, method, body):
        proxy = self.server.fault_proxy
        if proxy.upstream is None:
            self._send(404, b'{"status": 404, "title": "no upstream"}')
            return
        try:
            response = requests.request(
                method,
                proxy.upstream + self.path,
                data=body,
                headers={
                    'Content-Type': self.headers.get(
                        'Content-Type', 'application/json'
                    )
                },
                timeout=30,
            )
        except requests.RequestException:
            self._send(502, b'{"status": 502, "title": "upstream down"}')
            return
        content = response.content
        fault = proxy.fault
        endpoint = self.path.lstrip('/')
        if (
            fault is not None
            and fault.kind == 'rewrite'
            and fault.applies(endpoint)
            and response.status_code == 200
        ):
            content = json.dumps(fault.rewrite(json.loads(content))).encode()
        self._send(
            response.status_code,
            content,
            response.headers.get('Content-Type', 'application/json'),
        )

    def _fault_rewrite(self, fault, body):
        self._forward('POST', body)

    def _fault_delay(self, fault, body):
        # Answer normally, ``fault.status`` seconds late.
        self.server.fault_proxy.released.wait(fault.status)
        self._forward('POST', body)

    def _fault_blackhole(self, fault, body):
        # Hold the connection, answer nothing.
        self.server.fault_proxy.released.wait(120)
        self.close_connection = True

    def _fault_status(self, fault, body):
        self._send(
            fault.status,
            fault.body
            if fault.body is not None
            else json.dumps(
                {'status': fault.status, 'type': 'Error', 'title': 'injected'}
            ).encode(),
        )

    def _fault_html(self, fault, body):
        self._send(
            200,
            b'<!DOCTYPE html><html><body><h1>Maintenance</h1></body></html>',
            'text/html; charset=utf-8',
        )

    def _fault_truncated(self, fault, body):
        self._send(200, b'{"result_list": [{"title": "inst0", "instance_gu')

    def _fault_cut(self, fault, body):
        # Announce more than is sent, then close the connection.
        self._send(200, b'{"result_list": [', length=1000)
        self.close_connection = True

    def _fault_missing_field(self, fault, body):
        self._send(
            200,
            json.dumps(
                {
                    'result_list': [
                        {
                            'title': 'inst0',
                            'state': 'started',
                            'compute_partition_id': 'slappart0',
                            'software_release_uri': SOFTWARE_RELEASE,
                        }
                    ]
                }
            ).encode(),
        )

    def _fault_json(self, fault, body):
        self._send(200, json.dumps(fault.body).encode())

    def _fault_huge(self, fault, body):
        size = HUGE_MB * 1024 * 1024
        self.send_response(200)
        self.send_header('Content-Type', 'application/json')
        if fault.body != 'chunked':
            self.send_header('Content-Length', str(size))
        self.end_headers()
        chunk = b' ' * (1024 * 1024)
        try:
            self.wfile.write(b'{"result_list": [], "padding": "')
            for _ in range(HUGE_MB):
                self.wfile.write(chunk)
        except OSError:
            pass
        self.close_connection = True


class SilentServer:
    """A loopback TCP socket on ``port`` that accepts every connection and
    never reads or answers (a master that hangs): each client waits for
    its own timeout. ``close()`` closes the port and every connection."""

    def __init__(self, port, host='127.0.0.1'):
        self.connections = []
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        deadline = time.monotonic() + 10
        while True:
            try:
                self._sock.bind((host, port))
                break
            except OSError:
                if time.monotonic() > deadline:
                    self._sock.close()
                    raise
                time.sleep(0.05)
        self._sock.listen(128)
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self):
        while True:
            try:
                connection, _ = self._sock.accept()
            except OSError:  # closed
                return
            self.connections.append(connection)

    def close(self):
        # shutdown wakes the accepting thread up; close alone may not
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(10)
        for connection in self.connections:
            connection.close()
        self.connections = []


class FaultProxy:
    """An HTTP(S) server on a free loopback port in front of ``upstream``.

    ``requests`` records ``(endpoint, decoded JSON body)`` of every POST,
    ``arrivals`` ``(time.time(), endpoint)``.
    ``set_fault(kind, ...)`` makes POSTs misbehave (see ``_Handler``);
    ``refuse()`` closes the port (connection refused) and ``hang()`` puts
    a :class:`SilentServer` on it, each until ``reopen()``.
    With ``ssl_context`` it speaks TLS (wrap the listening socket).
    """

    handler_class = _Handler

    def __init__(self, upstream=None, ssl_context=None):
        self.upstream = upstream.rstrip('/') if upstream else None
        self.ssl_context = ssl_context
        self.requests = []
        self.arrivals = []
        self.fault = None
        self.released = threading.Event()
        self._lock = threading.Lock()
        self.port = free_port()
        self._server = None
        self._silent = None
        self.reopen()

    @property
    def url(self):
        scheme = 'https' if self.ssl_context else 'http'
        return f'{scheme}://127.0.0.1:{self.port}'

    def reopen(self):
        """Accept connections (again) on the same port."""
        self._close_silent()
        if self._server is not None:
            return
        self.released.clear()
        deadline = time.monotonic() + 10
        while True:
            try:
                server = ThreadingHTTPServer(
                    ('127.0.0.1', self.port), self.handler_class
                )
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        server.daemon_threads = True
        server.block_on_close = False
        server.fault_proxy = self
        if self.ssl_context is not None:
            server.socket = self.ssl_context.wrap_socket(
                server.socket, server_side=True
            )
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={'poll_interval': 0.05},
            daemon=True,
        )
        self._thread.start()

    def refuse(self):
        """Close the port: connections are refused until reopen()."""
        self._close_silent()
        if self._server is None:
            return
        self.released.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
        self._server = None

    def hang(self):
        """Accept connections and never answer, until reopen()."""
        self.refuse()
        if self._silent is None:
            self._silent = SilentServer(self.port)

    def hung_connections(self):
        """How many connections the port accepted (and left unanswered)
        since ``hang()``."""
        return len(self._silent.connections) if self._silent else 0

    def _close_silent(self):
        if self._silent is not None:
            self._silent.close()
            self._silent = None

    def close(self):
        self.refuse()

    def set_fault(self, kind=None, endpoints=None, **kwargs):
        """Misbehave from now on (``kind=None``: behave again)."""
        if kind is None:
            self.fault = None
            self.released.set()
            return
        if isinstance(endpoints, str):
            endpoints = {endpoints}
        self.released.clear()
        self.fault = Fault(kind, endpoints, **kwargs)

    def record(self, endpoint, body):
        with self._lock:
            self.requests.append((endpoint, body))
            self.arrivals.append((time.time(), endpoint))

    def calls(self, endpoint, **match):
        """The recorded bodies sent to ``endpoint`` that contain ``match``."""
        with self._lock:
            recorded = list(self.requests)
        return [
            body
            for name, body in recorded
            if name == endpoint
            and all(
                isinstance(body, dict) and body.get(k) == v
                for k, v in match.items()
            )
        ]

    def arrived(self, endpoint):
        """[(time.time() of arrival, decoded body)] of the requests sent
        to ``endpoint``, in order."""
        with self._lock:
            recorded = list(zip(self.arrivals, self.requests))
        return [
            (at, body)
            for (at, _), (name, body) in recorded
            if name == endpoint
        ]

    def count(self, endpoint, **match):
        return len(self.calls(endpoint, **match))


# TLS


def make_pki(directory):
    """Make two CAs, a server certificate for 127.0.0.1 and a client
    certificate, with the openssl command; return a dict of paths."""
    openssl = shutil.which('openssl')
    if openssl is None:
        pytest.skip('openssl is not installed')
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)

    def run(*args):
        subprocess.run(
            [openssl, *args],
            check=True,
            cwd=d,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    for ca in ('ca', 'other-ca'):
        run(
            'req',
            '-x509',
            '-newkey',
            'rsa:2048',
            '-nodes',
            '-days',
            '2',
            '-subj',
            f'/CN=test {ca}',
            '-keyout',
            f'{ca}.key',
            '-out',
            f'{ca}.pem',
            # Python 3.13 verifies strictly (VERIFY_X509_STRICT): a CA
            # must say it signs certificates
            '-addext',
            'basicConstraints=critical,CA:TRUE',
            '-addext',
            'keyUsage=critical,keyCertSign,cRLSign',
        )
    (d / 'server.ext').write_text(
        'subjectAltName = IP:127.0.0.1\nextendedKeyUsage = serverAuth\n'
    )
    (d / 'client.ext').write_text('extendedKeyUsage = clientAuth\n')
    for name in ('server', 'client'):
        run(
            'req',
            '-new',
            '-newkey',
            'rsa:2048',
            '-nodes',
            '-subj',
            f'/CN=test {name}',
            '-keyout',
            f'{name}.key',
            '-out',
            f'{name}.csr',
        )
        run(
            'x509',
            '-req',
            '-in',
            f'{name}.csr',
            '-CA',
            'ca.pem',
            '-CAkey',
            'ca.key',
            '-CAcreateserial',
            '-days',
            '2',
            '-extfile',
            f'{name}.ext',
            '-out',
            f'{name}.pem',
        )
    return {
        name: str(d / name)
        for name in (
            'ca.pem',
            'other-ca.pem',
            'server.pem',
            'server.key',
            'client.pem',
            'client.key',
        )
    }


def server_ssl_context(pki):
    """TLS server side that requires a client certificate from our CA."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki['server.pem'], pki['server.key'])
    context.load_verify_locations(pki['ca.pem'])
    context.verify_mode = ssl.CERT_REQUIRED
    return context


class Master:
    """A real ``slapos proxy`` behind a recording, fault-injecting
    FaultProxy: the listener talks to ``url`` (the front), tests set up
    the master through ``proxy`` directly (not recorded)."""

    front_class = FaultProxy

    def __init__(self, root, ssl_context=None, stack=None):
        self.proxy = SlaposProxy(root, stack=stack).start()
        try:
            self.front = self.front_class(
                self.proxy.url, ssl_context=ssl_context
            )
        except BaseException:
            self.proxy.stop()
            raise

    @property
    def url(self):
        return self.front.url

    def close(self):
        self.front.close()
        self.proxy.stop()
