"""One POP3 session: connect (TLS, STARTTLS or plain), log in, list by UIDL, RETR, DELE, QUIT.

poplib is blocking: the fetch loop runs a session's calls in a thread. Where the server announces
PIPELINING (RFC 2449 section 6.6; Dovecot, Courier, Cyrus and the large providers do), RETRs go out a
window at a time in one write and their answers are read back to back, so a mailbox costs a round trip
per window rather than per message; poplib has no call for that, so the window is written on its socket
and each answer read with its own multi-line reader. Failures come out as two
kinds the loop acts on: Pop3AuthError (the server said -ERR to our credentials: a person must fix
the configuration) and Pop3Unavailable (no connection, TLS failure, timeout: try again later).
TLS verifies the server against the system's trust store (SSL_CERT_FILE names another CA bundle).
DELE only marks a message; the server removes it at QUIT, so a session cut short deletes nothing.
"""
from __future__ import annotations

import poplib
import socket
import ssl
from dataclasses import dataclass
from typing import Literal

from services.common.retry import TransientError

# poplib refuses lines over 2048 bytes by default; real mail (long base64 or HTML lines) has them.
poplib._MAXLINE = 1024 * 1024
PIPELINE_WINDOW = 20  # RETRs in flight: 20 short commands fit any socket buffer, so the write never blocks


class Pop3AuthError(Exception):
    """The server refused the login: the password changed or the account is locked."""


class Pop3Unavailable(TransientError):
    """The server cannot be reached or broke off: worth another try later."""


@dataclass(frozen=True)
class Pop3Account:
    host: str
    port: int
    security: Literal["tls", "starttls", "none"]
    username: str
    password: str
    timeout_s: float = 30.0


class Pop3Session:
    def __init__(self, account: Pop3Account, tls_context: ssl.SSLContext | None = None):
        self.account = account
        self.tls_context = tls_context  # None: the system's trust store, loaded only when TLS is used
        self._client: poplib.POP3 | None = None
        self.pipelining = False

    # --- session --------------------------------------------------------------------------------
    def open(self) -> Pop3Session:
        account = self.account
        try:
            if account.security == "tls":
                client = poplib.POP3_SSL(account.host, account.port, timeout=account.timeout_s,
                                         context=self.tls_context or ssl.create_default_context())
            else:
                client = poplib.POP3(account.host, account.port, timeout=account.timeout_s)
                if account.security == "starttls":
                    client.stls(self.tls_context or ssl.create_default_context())
        except (OSError, poplib.error_proto) as exc:
            raise Pop3Unavailable(f"cannot connect to {account.host}:{account.port}: {_describe(exc)}") from exc
        self._client = client
        try:
            client.user(account.username)
            client.pass_(account.password)
        except poplib.error_proto as exc:
            self.abort()
            raise Pop3AuthError(f"{account.host} refused the login of {account.username}: {_describe(exc)}") from exc
        except OSError as exc:
            self.abort()
            raise Pop3Unavailable(f"{account.host} broke off the login: {_describe(exc)}") from exc
        self.pipelining = "PIPELINING" in self._capabilities()
        return self

    def _capabilities(self) -> dict:
        """CAPA after login (RFC 2449 lets them change there); a server without CAPA has none of them."""
        try:
            return self._client.capa()
        except poplib.error_proto:
            return {}
        except OSError as exc:
            self.abort()
            raise Pop3Unavailable(f"{self.account.host} broke off after the login: {_describe(exc)}") from exc

    def quit(self) -> None:
        """End the session normally: the server now removes what DELE marked."""
        if self._client is not None:
            try:
                self._client.quit()
            except (OSError, poplib.error_proto):
                pass
            self._client = None

    def abort(self) -> None:
        """Drop the connection without QUIT: nothing marked for deletion is removed."""
        if self._client is not None:
            try:
                self._client.close()
            except OSError:
                pass
            self._client = None

    # --- commands -------------------------------------------------------------------------------
    def uidls(self) -> list[tuple[int, str]]:
        """(message number, unique id) of every message, in the server's order."""
        _, lines, _ = self._call(lambda c: c.uidl())
        listing = []
        for line in lines:
            number, _, uid = line.decode("ascii", "replace").partition(" ")
            listing.append((int(number), uid.strip()))
        return listing

    def sizes(self) -> dict[int, int]:
        """Message number -> size in octets (LIST), to bound a batch before asking for it."""
        _, lines, _ = self._call(lambda c: c.list())
        found = {}
        for line in lines:
            number, _, size = line.decode("ascii", "replace").partition(" ")
            found[int(number)] = int(size.split()[0]) if size.split() else 0
        return found

    def retrieve(self, number: int) -> bytes:
        _, lines, _ = self._call(lambda c: c.retr(number))
        return _message(lines)

    def retrieve_window(self, numbers: list[int]) -> list[bytes]:
        """RETR a few messages (at most PIPELINE_WINDOW): pipelined where the server allows it."""
        if not self.pipelining or len(numbers) < 2:
            return [self.retrieve(n) for n in numbers]
        if len(numbers) > PIPELINE_WINDOW:
            raise ValueError(f"at most {PIPELINE_WINDOW} RETRs in flight, not {len(numbers)}")

        def pipelined(client: poplib.POP3) -> list[bytes]:
            client.sock.sendall(b"".join(b"RETR %d\r\n" % n for n in numbers))
            return read_multiline_answers(client.file.read1, len(numbers))

        return self._call(pipelined)

    def delete(self, number: int) -> None:
        self._call(lambda c: c.dele(number))

    def _call(self, command):
        if self._client is None:
            raise Pop3Unavailable("no open session")
        try:
            return command(self._client)
        except (OSError, poplib.error_proto, EOFError) as exc:
            self.abort()
            raise Pop3Unavailable(f"{self.account.host}: {_describe(exc)}") from exc


_END = b"\r\n.\r\n"
READ_CHUNK = 256 * 1024


def read_multiline_answers(read, count: int) -> list[bytes]:
    """`count` multi-line answers (RFC 1939 section 3) read in bulk with `read` (a socket file's read1),
    each as the message it carries: dot-stuffing undone, lines ending in CRLF.

    poplib reads an answer line by line in Python, which on a 2-core machine was most of a fetch's CPU;
    here each chunk is searched for the terminator by bytes.find. The search resumes where the last one
    stopped, so a 25 MB message costs one pass. Nothing is read past the last answer: the server sends
    nothing we did not ask for. A -ERR answer raises poplib.error_proto, as poplib would.
    """
    data = bytearray()
    answers: list[bytes] = []
    scanned = 0  # where the terminator search resumes
    while len(answers) < count:
        status_end = data.find(b"\r\n")
        if status_end >= 0 and not data.startswith(b"+"):
            raise poplib.error_proto(bytes(data[:status_end]))
        end = data.find(_END, max(scanned, status_end)) if status_end >= 0 else -1
        if end < 0:
            scanned = max(0, len(data) - len(_END) + 1)
            chunk = read(READ_CHUNK)
            if not chunk:
                raise poplib.error_proto(b"-ERR EOF")
            data += chunk
            continue
        answers.append(_unstuffed(bytes(data[status_end + 2:end + 2])))
        del data[:end + len(_END)]
        scanned = 0
    return answers


def _unstuffed(body: bytes) -> bytes:
    """A message as poplib's lines joined would give it: '..' at a line start back to '.'."""
    if not body:
        return b"\r\n"  # an empty message: no lines, and the CRLF _message ends every message with
    body = body.replace(b"\r\n..", b"\r\n.")
    return body[1:] if body.startswith(b"..") else body


def _message(lines: list[bytes]) -> bytes:
    return b"\r\n".join(lines) + b"\r\n"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, poplib.error_proto) and exc.args and isinstance(exc.args[0], bytes):
        return exc.args[0].decode("utf-8", "replace")
    if isinstance(exc, socket.timeout):
        return "timed out"
    return str(exc) or type(exc).__name__
