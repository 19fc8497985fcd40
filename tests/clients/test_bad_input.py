"""Hostile and malformed input gets an error, never a crash or a hang, and other clients go on."""
import socket
import struct

import psycopg


def startup(sock):
    params = b"user\0crate\0database\0doc\0\0"
    body = struct.pack("!i", 196608) + params
    sock.sendall(struct.pack("!i", len(body) + 4) + body)
    sock.settimeout(10)
    data = b""
    while b"Z\0\0\0\x05" not in data:
        chunk = sock.recv(65536)
        assert chunk, "server closed during startup"
        data += chunk


def test_message_claiming_one_gigabyte_is_rejected(creek):
    with socket.create_connection(("127.0.0.1", creek.pg_port)) as sock:
        startup(sock)
        sock.sendall(b"Q" + struct.pack("!i", 1 << 30) + b"SELECT 1")
        sock.settimeout(10)
        try:
            reply = sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            reply = b""
        # Either an ErrorResponse or a closed connection; never an attempt to read 1 GB.
        assert reply == b"" or reply[:1] == b"E"
    with psycopg.connect(creek.dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert creek.alive()


def test_invalid_utf8_query(creek):
    with socket.create_connection(("127.0.0.1", creek.pg_port)) as sock:
        startup(sock)
        query = b"SELECT '\xff\xfe'\0"
        sock.sendall(b"Q" + struct.pack("!i", len(query) + 4) + query)
        sock.settimeout(10)
        reply = sock.recv(65536)
        assert reply[:1] in (b"E", b"")
    assert creek.alive()


def test_deeply_nested_expression(creek):
    with psycopg.connect(creek.dsn, autocommit=True) as conn:
        try:
            conn.execute("SELECT " + "(" * 10000 + "1" + ")" * 10000)
            raise AssertionError("10,000 nested parentheses should be rejected")
        except psycopg.Error as error:
            assert error.sqlstate in ("54000", "54001", "42601")
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert creek.alive()
