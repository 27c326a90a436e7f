"""MasterClient against a fault-injecting HTTP server and a real
``slapos proxy``."""

import pytest

from supervisor_slapos.master import (
    Instance,
    MasterClient,
    MasterError,
    MasterUnreachable,
    check_success,
    parse_instance_list,
    redact_url,
)
from testbed.slapos_master import (
    COMPUTER_ID,
    FORMAT,
    LIST,
    REPORT_STATE,
    SOFTWARE_RELEASE,
    FaultProxy,
    MasterCallError,
    SlaposProxy,
    server_ssl_context,
)

ENTRY = {
    'title': 'inst0',
    'instance_guid': 'inst0______0',
    'state': 'started',
    'compute_partition_id': 'slappart0',
    'software_release_uri': SOFTWARE_RELEASE,
}


@pytest.fixture
def fake():
    proxy = FaultProxy()
    yield proxy
    proxy.close()


@pytest.fixture
def slapos_proxy(tmp_path):
    proxy = SlaposProxy(tmp_path / 'master').start()
    yield proxy
    proxy.stop()


def make_client(url, **kwargs):
    kwargs.setdefault('timeout', 2)
    return MasterClient(url, COMPUTER_ID, **kwargs)


# construction


def test_connect_timeout_is_short_and_bounded():
    assert make_client('http://m', timeout=10).connect_timeout == 3
    assert make_client('http://m', timeout=1.5).connect_timeout == 1.5


@pytest.mark.parametrize('kwargs', [{'timeout': 0}, {'timeout': -1}])
def test_rejects_bad_timeout(kwargs):
    with pytest.raises(ValueError):
        make_client('http://m', **kwargs)


def test_requires_url_and_computer_id():
    with pytest.raises(ValueError):
        MasterClient('', COMPUTER_ID)
    with pytest.raises(ValueError):
        MasterClient('http://m', '')


def test_client_certificate_and_ca_go_to_the_session(tmp_path):
    client = make_client(
        'https://m', cert_file='c.pem', key_file='k.pem', ca_file='ca.pem'
    )
    assert client._session.cert == ('c.pem', 'k.pem')
    assert client._session.verify == 'ca.pem'
    assert client.verify == 'ca.pem'


@pytest.mark.parametrize(
    'url, expected',
    [
        (
            'https://user:secret@master.example/api',
            'https://master.example/api',
        ),
        ('https://master.example/api', 'https://master.example/api'),
        ('', ''),
    ],
)
def test_redact_url(url, expected):
    assert redact_url(url) == expected


def test_display_url_hides_credentials():
    client = make_client('https://u:pw@master.example/')
    assert client.display_url == 'https://master.example'
    assert 'pw' not in client.display_url


# parse_instance_list


def test_parse_instance_list():
    assert parse_instance_list({'result_list': [ENTRY]}) == [
        Instance(
            title='inst0',
            instance_guid='inst0______0',
            state='started',
            partition_id='slappart0',
            software_release_uri=SOFTWARE_RELEASE,
        )
    ]


def test_parse_instance_list_software_release_is_optional():
    entry = dict(ENTRY)
    del entry['software_release_uri']
    assert (
        parse_instance_list({'result_list': [entry]})[0].software_release_uri
        == ''
    )


def test_parse_instance_list_keeps_invalid_partition_ids():
    # the listener skips them, one by one; the list itself is fine
    entry = dict(ENTRY, compute_partition_id='../x')
    assert (
        parse_instance_list({'result_list': [entry]})[0].partition_id == '../x'
    )


def test_instance_is_frozen():
    instance = parse_instance_list({'result_list': [ENTRY]})[0]
    with pytest.raises(AttributeError):
        instance.state = 'stopped'


@pytest.mark.parametrize(
    'answer',
    [
        None,
        [],
        'result_list',
        {},
        {'result_list': None},
        {'result_list': {}},
        {'result_list': [None]},
        {'result_list': ['x']},
        {'result_list': [dict(ENTRY, state='start_requested')]},
        {'result_list': [dict(ENTRY, state=None)]},
        {'result_list': [dict(ENTRY, instance_guid='')]},
        {'result_list': [dict(ENTRY, instance_guid=12)]},
        {'result_list': [dict(ENTRY, compute_partition_id=None)]},
        {'result_list': [dict(ENTRY, software_release_uri=['x'])]},
        {
            'result_list': [
                ENTRY,
                {k: v for k, v in ENTRY.items() if k != 'title'},
            ]
        },
    ]
    + [
        {'result_list': [{k: v for k, v in ENTRY.items() if k != missing}]}
        for missing in (
            'title',
            'instance_guid',
            'state',
            'compute_partition_id',
        )
    ],
)
def test_parse_instance_list_refuses(answer):
    with pytest.raises(MasterError):
        parse_instance_list(answer)


@pytest.mark.parametrize('answer', [[], 'ok', {'type': 'error'}])
def test_check_success_refuses(answer):
    with pytest.raises(MasterError):
        check_success('x', answer)


# requests and answers


def test_list_instances(fake):
    fake.set_fault('json', body={'result_list': [ENTRY]})
    instances = make_client(fake.url).list_instances()
    assert [i.instance_guid for i in instances] == ['inst0______0']
    assert fake.calls(LIST) == [{'computer_guid': COMPUTER_ID}]


def test_base_url_may_end_with_slash(fake):
    fake.set_fault('json', body={'result_list': []})
    assert make_client(fake.url + '/').list_instances() == []
    assert fake.count(LIST) == 1


def test_report_state_sends_the_state(fake):
    fake.set_fault('json', body={'type': 'success', 'title': 'Ignored'})
    make_client(fake.url).report_state('g1', 'stopped')
    assert fake.calls(REPORT_STATE) == [
        {'instance_guid': 'g1', 'reported_state': 'stopped'}
    ]


def test_report_state_refuses_other_states(fake):
    with pytest.raises(ValueError):
        make_client(fake.url).report_state('g1', 'destroyed')
    assert fake.requests == []


def test_report_format_sends_the_partitions(fake):
    fake.set_fault('json', body={'type': 'success', 'title': 'Formatted'})
    partitions = [{'partition_id': 'slappart0', 'ip_list': []}]
    make_client(fake.url).report_format(partitions)
    assert fake.calls(FORMAT) == [
        {'computer_guid': COMPUTER_ID, 'compute_partition_list': partitions}
    ]


def test_report_refused_by_error_document(fake):
    fake.set_fault('json', body={'type': 'error', 'title': 'no'})
    with pytest.raises(MasterError):
        make_client(fake.url).report_state('g1', 'started')


def test_refused_connection_is_unreachable(fake):
    fake.refuse()
    with pytest.raises(MasterUnreachable):
        make_client(fake.url).list_instances()


def test_black_hole_is_unreachable_after_the_timeout(fake):
    fake.set_fault('blackhole')
    with pytest.raises(MasterUnreachable) as info:
        make_client(fake.url, timeout=0.3).list_instances()
    # what timed out, said once
    assert str(info.value).endswith(
        ': timed out waiting for the answer (0.3 s)'
    ), info.value
    assert str(info.value).count('timed out') == 1
    # a read timeout is not retried
    assert fake.count(LIST) == 1


@pytest.mark.parametrize(
    'status, body',
    [
        (200, b'[' * 100000),
        (500, b'[' * 4000),
        (200, b'{"a":' * 50000),
        (200, b'\xff' * 10),
        (404, bytes(range(256))),
    ],
)
def test_any_answer_is_a_master_error(fake, status, body):
    # json raises RecursionError on deep nesting: still a MasterError
    fake.set_fault('status', status=status, body=body)
    with pytest.raises(MasterError):
        make_client(fake.url).list_instances()


@pytest.mark.parametrize('status', [400, 401, 403, 404, 500])
def test_error_status_is_a_master_error(fake, status):
    fake.set_fault('status', status=status)
    with pytest.raises(MasterError, match=f'HTTP {status}: injected') as info:
        make_client(fake.url).list_instances()
    assert not isinstance(info.value, MasterUnreachable)
    assert fake.count(LIST) == 1  # not retried


@pytest.mark.parametrize('status', [502, 503, 504])
def test_unavailable_is_unreachable_and_not_retried(fake, status):
    # the listener's schedule retries, on the node's own moment
    fake.set_fault('status', status=status)
    with pytest.raises(MasterUnreachable, match=f'HTTP {status}'):
        make_client(fake.url).list_instances()
    assert fake.count(LIST) == 1


def test_refused_connection_is_tried_once(fake):
    fake.refuse()
    client = make_client(fake.url)
    adapter = client._session.get_adapter(fake.url)
    assert adapter.max_retries.total == 0
    with pytest.raises(MasterUnreachable, match='connection failed'):
        client.list_instances()


def test_redirect_is_not_followed(fake):
    fake.set_fault('status', status=302, body=b'')
    with pytest.raises(MasterError, match='HTTP 302'):
        make_client(fake.url).list_instances()


@pytest.mark.parametrize('kind', ['html', 'truncated', 'cut', 'missing_field'])
def test_bad_answers_are_master_errors(fake, kind):
    fake.set_fault(kind)
    with pytest.raises(MasterError):
        make_client(fake.url).list_instances()


@pytest.mark.parametrize(
    'body',
    [
        b'NaN',
        b'{"result_list": [], "x": Infinity}',
        b'\xff\xfe{}',
        b'',
    ],
)
def test_undecodable_answers_are_master_errors(fake, body):
    fake.set_fault('status', status=200, body=body)
    with pytest.raises(MasterError):
        make_client(fake.url).list_instances()


@pytest.mark.parametrize('framing', ['length', 'chunked'])
def test_huge_answer_is_refused_without_reading_it_all(fake, framing):
    fake.set_fault('huge', body=framing)
    with pytest.raises(MasterError, match='larger than'):
        make_client(fake.url, max_list_bytes=1024 * 1024).list_instances()


def test_default_cap_refuses_50_megabytes(fake):
    fake.set_fault('huge', body='chunked')
    with pytest.raises(MasterError, match='larger than'):
        make_client(fake.url).list_instances()


# TLS


@pytest.fixture
def tls_fake(pki):
    proxy = FaultProxy(ssl_context=server_ssl_context(pki))
    proxy.set_fault('json', body={'result_list': [ENTRY]})
    yield proxy
    proxy.close()


def test_tls_with_client_certificate(tls_fake, pki, monkeypatch):
    # REQUESTS_CA_BUNDLE must not override the CA given to the client
    monkeypatch.setenv('REQUESTS_CA_BUNDLE', pki['other-ca.pem'])
    client = make_client(
        tls_fake.url,
        cert_file=pki['client.pem'],
        key_file=pki['client.key'],
        ca_file=pki['ca.pem'],
    )
    assert len(client.list_instances()) == 1


def test_tls_wrong_ca_is_unreachable(tls_fake, pki):
    client = make_client(
        tls_fake.url,
        cert_file=pki['client.pem'],
        key_file=pki['client.key'],
        ca_file=pki['other-ca.pem'],
    )
    with pytest.raises(MasterUnreachable, match='TLS'):
        client.list_instances()


def test_tls_without_client_certificate_is_refused(tls_fake, pki):
    client = make_client(tls_fake.url, ca_file=pki['ca.pem'])
    with pytest.raises(MasterUnreachable):
        client.list_instances()


def test_tls_missing_certificate_file_is_unreachable(tls_fake, pki, tmp_path):
    client = make_client(
        tls_fake.url, cert_file=str(tmp_path / 'none'), ca_file=pki['ca.pem']
    )
    with pytest.raises(MasterUnreachable):
        client.list_instances()


# against slapos proxy


def test_slapos_proxy_refuses_an_unknown_node(slapos_proxy):
    with pytest.raises(MasterError, match='403'):
        make_client(slapos_proxy.url).list_instances()


def test_slapos_proxy_round_trip(slapos_proxy):
    client = make_client(slapos_proxy.url)
    client.report_format(
        [
            {
                'partition_id': 'slappart0',
                'ip_list': [
                    {
                        'ip-address': '10.0.0.1',
                        'netmask': '255.255.255.0',
                        'network-interface': 'tap0',
                    }
                ],
            },
            {'partition_id': 'slappart1', 'ip_list': []},
        ]
    )
    assert client.list_instances() == []
    slapos_proxy.supply()
    answer = slapos_proxy.request('inst0', state='stopped')
    assert answer['ip_list'] == [['tap0', '10.0.0.1']]
    [instance] = client.list_instances()
    assert instance == Instance(
        title='inst0',
        instance_guid=answer['instance_guid'],
        state='stopped',
        partition_id='slappart0',
        software_release_uri=SOFTWARE_RELEASE,
    )
    client.report_state(instance.instance_guid, 'stopped')


def test_slapos_proxy_helper_reports_errors(slapos_proxy):
    with pytest.raises(MasterCallError) as info:
        slapos_proxy.instance_list()
    assert info.value.status == 403


def test_headers_dripped_a_byte_at_a_time_are_bounded():
    """Each byte comes within the read timeout, so only a deadline on the
    whole exchange ends it."""
    import socket
    import threading

    server = socket.socket()
    server.bind(('127.0.0.1', 0))
    server.listen(1)
    stop = threading.Event()

    def drip():
        connection, _ = server.accept()
        with connection:
            for byte in b'HTTP/1.1 200 OK\r\nX-Slow: ' + b'x' * 600:
                if stop.wait(0.05):
                    return
                connection.sendall(bytes([byte]))

    dripper = threading.Thread(target=drip, daemon=True)
    dripper.start()
    try:
        client = make_client(
            f'http://127.0.0.1:{server.getsockname()[1]}', timeout=0.5
        )
        with pytest.raises(
            MasterUnreachable, match='timed out waiting for the whole answer'
        ):
            client.list_instances()
    finally:
        stop.set()
        dripper.join(timeout=5)
        server.close()
