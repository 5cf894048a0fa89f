"""A tiny in-process SSH server on 127.0.0.1 that answers exec requests with canned output.

It lets the tests drive the real paramiko client path of ``pgchaos logs``
without a real sshd: authentication by one public key (or a password), one
command per channel, and ``direct-tcpip`` forwarding so that it can be a jump
host.  Everything a client tried is recorded: ``peers`` (where connections came
from), ``auth_attempts``, ``commands`` and ``forwarded``.

Run as a script (``fake_sshd.py relay HOST PORT MARKER``) it is a ProxyCommand:
it copies stdin to HOST:PORT and back, after writing its arguments to MARKER.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paramiko

Responder = Callable[[str], tuple[int, bytes, bytes]]


class _Server(paramiko.ServerInterface):
    def __init__(self, sshd: FakeSSHD) -> None:
        self.sshd = sshd
        self.requested: dict[int, str] = {}
        self.upstreams: dict[int, socket.socket] = {}
        self.arrived = threading.Condition()

    def get_allowed_auths(self, username: str) -> str:
        return "publickey,password" if self.sshd.password else "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        self.sshd.auth_attempts.append(("publickey", username, key.get_base64()))
        if username == self.sshd.user and key.get_base64() == self.sshd.client_key.get_base64():
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_auth_password(self, username: str, password: str) -> int:
        self.sshd.auth_attempts.append(("password", username, password))
        if username == self.sshd.user and password == self.sshd.password:
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind == "session":
            return paramiko.OPEN_SUCCEEDED
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_direct_tcpip_request(
        self, chanid: int, origin: tuple[str, int], destination: tuple[str, int]
    ) -> int:
        if not self.sshd.forwarding:
            return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
        try:
            upstream = socket.create_connection(destination, timeout=5)
        except OSError:
            return paramiko.OPEN_FAILED_CONNECT_FAILED
        upstream.settimeout(None)
        self.sshd.forwarded.append((destination, upstream.getsockname()))
        self.upstreams[chanid] = upstream
        return paramiko.OPEN_SUCCEEDED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        with self.arrived:
            self.sshd.commands.append(command.decode())
            self.requested[channel.get_id()] = command.decode()
            self.arrived.notify_all()
        return True

    def wait_command(self, chanid: int, timeout: float = 5) -> str | None:
        with self.arrived:
            self.arrived.wait_for(lambda: chanid in self.requested, timeout=timeout)
            return self.requested.get(chanid)


class FakeSSHD:
    def __init__(
        self,
        client_key: paramiko.PKey,
        user: str,
        respond: Responder,
        *,
        password: str | None = None,
        forwarding: bool = False,
    ) -> None:
        self.host_key = paramiko.ECDSAKey.generate()
        self.client_key = client_key
        self.user = user
        self.respond = respond
        self.password = password
        self.forwarding = forwarding
        self.peers: list[tuple[str, int]] = []
        self.auth_attempts: list[tuple[str, str, str]] = []
        self.commands: list[str] = []
        self.forwarded: list[tuple[tuple[str, int], tuple[str, int]]] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(5)
        self.port = int(self.sock.getsockname()[1])
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def known_hosts_line(self, key: paramiko.PKey | None = None) -> str:
        """This server's line for a known_hosts file (or a line giving it another key)."""
        key = key or self.host_key
        return f"[127.0.0.1]:{self.port} {key.get_name()} {key.get_base64()}\n"

    def _serve(self) -> None:
        while True:
            try:
                conn, peer = self.sock.accept()
            except OSError:
                return
            self.peers.append(peer)
            transport = paramiko.Transport(conn)
            transport.add_server_key(self.host_key)
            server = _Server(self)
            try:
                transport.start_server(server=server)
            except (paramiko.SSHException, EOFError, OSError):
                # A client that refuses this server's host key hangs up mid-handshake: an EOF,
                # or a reset connection (OSError) when it closes with data unread.  Either way
                # the next client must still be served: an exception here ended this thread,
                # and every later connection then waited for a banner that never came (ci21).
                transport.close()
                continue
            threading.Thread(target=self._sessions, args=(transport, server), daemon=True).start()

    def _sessions(self, transport: paramiko.Transport, server: _Server) -> None:
        while transport.is_active():
            channel = transport.accept(timeout=0.5)
            if channel is None:
                continue
            upstream = server.upstreams.pop(channel.get_id(), None)
            if upstream is not None:
                _splice(channel, upstream)
                continue
            command = server.wait_command(channel.get_id())
            if command is None:
                channel.close()
                continue
            status, out, err = self.respond(command)
            channel.sendall(out)
            channel.sendall_stderr(err)
            channel.send_exit_status(status)
            channel.close()

    def close(self) -> None:
        self.sock.close()


def _copy(source: Any, sink: Any) -> None:
    # Either end may already be gone (a closed transport raises EOFError): that ends the copy.
    with contextlib.suppress(OSError, EOFError):
        while data := source.recv(32768):
            sink.sendall(data)
    for end in (sink, source):
        with contextlib.suppress(OSError, EOFError):
            end.close()


def _splice(a: Any, b: Any) -> None:
    for source, sink in ((a, b), (b, a)):
        threading.Thread(target=_copy, args=(source, sink), daemon=True).start()


def _relay(host: str, port: int, marker: Path) -> None:
    marker.write_text(f"{host} {port}\n")
    upstream = socket.create_connection((host, port), timeout=5)
    upstream.settimeout(None)

    def down() -> None:
        while data := upstream.recv(32768):
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()

    threading.Thread(target=down, daemon=True).start()
    while data := sys.stdin.buffer.read1(32768):
        upstream.sendall(data)


if __name__ == "__main__" and sys.argv[1:2] == ["relay"]:
    _relay(sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]))
