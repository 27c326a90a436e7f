"""clients.waiting: a socket with something to read, and only then."""

import socket

from supervisor_slapos import clients


def test_waiting_sees_a_request_and_only_then():
    server_side, client_side = socket.socketpair()
    with server_side, client_side:
        sockets = {server_side.fileno(): object()}
        assert not clients.waiting(sockets)
        client_side.sendall(b'POST /RPC2 HTTP/1.1\r\n')
        assert clients.waiting(sockets)


def test_waiting_sees_a_new_connection(tmp_path):
    path = str(tmp_path / 's.sock')
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind(path)
        listening.listen()
        sockets = {listening.fileno(): object()}
        assert not clients.waiting(sockets)
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(path)
            assert clients.waiting(sockets)


def test_waiting_with_no_socket_is_false():
    assert not clients.waiting({})
