"""A tiny in-process SSH server on 127.0.0.1 that answers exec requests with canned output.

It lets the tests drive the real paramiko client path of ``pgchaos logs``
without a real sshd: authentication by one public key, one command per channel.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

import paramiko

Responder = Callable[[str], tuple[int, bytes, bytes]]


class _Server(paramiko.ServerInterface):
    def __init__(self, key: paramiko.PKey, user: str, commands: list[str]) -> None:
        self.key = key
        self.user = user
        self.commands = commands
        self.requested: dict[int, str] = {}
        self.arrived = threading.Condition()

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        if username == self.user and key.get_base64() == self.key.get_base64():
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind == "session":
            return paramiko.OPEN_SUCCEEDED
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        with self.arrived:
            self.commands.append(command.decode())
            self.requested[channel.get_id()] = command.decode()
            self.arrived.notify_all()
        return True

    def wait_command(self, chanid: int, timeout: float = 5) -> str | None:
        with self.arrived:
            self.arrived.wait_for(lambda: chanid in self.requested, timeout=timeout)
            return self.requested.get(chanid)


class FakeSSHD:
    def __init__(self, client_key: paramiko.PKey, user: str, respond: Responder) -> None:
        self.host_key = paramiko.ECDSAKey.generate()
        self.client_key = client_key
        self.user = user
        self.respond = respond
        self.commands: list[str] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(5)
        self.port = int(self.sock.getsockname()[1])
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            transport = paramiko.Transport(conn)
            transport.add_server_key(self.host_key)
            server = _Server(self.client_key, self.user, self.commands)
            try:
                transport.start_server(server=server)
            except (paramiko.SSHException, EOFError):
                transport.close()
                continue
            threading.Thread(target=self._sessions, args=(transport, server), daemon=True).start()

    def _sessions(self, transport: paramiko.Transport, server: _Server) -> None:
        while transport.is_active():
            channel = transport.accept(timeout=0.5)
            if channel is None:
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
