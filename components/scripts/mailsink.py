"""An SMTP sink: accepts every message and writes it to <dir>/<UTC timestamp>-<counter>.eml."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import itertools
import os
import re
import signal
import socket
import sys
from pathlib import Path

MAX_MESSAGE_BYTES = 25 * 1024 * 1024
MAX_LINE_BYTES = 1024 * 1024
IDLE_TIMEOUT_SECONDS = 300
# gethostname, not getfqdn: no DNS lookup, so an offline machine does not stall each session.
HOSTNAME = socket.gethostname()
# A path in MAIL FROM / RCPT TO: <...>, possibly empty (the null sender), then optional parameters.
PATH_ARGUMENT = re.compile(r"^(?:FROM|TO):\s*<([^<>\s]*)>(?:\s.*)?$", re.IGNORECASE)
BARE_ADDRESS = re.compile(r"^(?:FROM|TO):\s*([^<>\s]+)$", re.IGNORECASE)


def log(message: str) -> None:
    print(f"mailsink: {message}", flush=True)


def recipient_domains(recipients: list[str]) -> str:
    domains = sorted(
        {address.rpartition("@")[2].lower() or "(local)" for address in recipients}
    )
    return ", ".join(domains)


class Mailbox:
    """Writes each message under a fresh name; a reader only ever sees complete .eml files."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._counter = itertools.count(1)

    def deliver(self, sender: str, recipients: list[str], data: bytes) -> str:
        envelope = f"Return-Path: <{sender}>\r\n".encode()
        envelope += b"".join(
            f"Delivered-To: {address}\r\n".encode() for address in recipients
        )
        while True:
            stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
            name = f"{stamp}-{next(self._counter):06d}.eml"
            temporary = self.directory / f".{name}.tmp"
            with open(temporary, "xb") as stream:
                stream.write(envelope + data)
                stream.flush()
                os.fsync(stream.fileno())
            os.chmod(temporary, 0o640)
            try:
                # link() never replaces an existing file, unlike rename(): no message is lost
                # even if a restarted sink reuses a timestamp and counter.
                os.link(temporary, self.directory / name)
            except FileExistsError:
                continue
            finally:
                temporary.unlink()
            return name


class Session:
    """One SMTP conversation (RFC 5321 subset: what a site's smtplib client sends)."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        mailbox: Mailbox,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.mailbox = mailbox
        self.hostname = HOSTNAME
        # True while a message is being received or written: shutdown waits for it to finish.
        self.busy = False
        self.reset()

    def reset(self) -> None:
        self.sender: str | None = None
        self.recipients: list[str] = []

    async def reply(self, *lines: str) -> None:
        for index, line in enumerate(lines):
            separator = " " if index == len(lines) - 1 else "-"
            code, _, text = line.partition(" ")
            self.writer.write(f"{code}{separator}{text}\r\n".encode())
        await self.writer.drain()

    async def read_line(self) -> bytes:
        line = await asyncio.wait_for(self.reader.readline(), IDLE_TIMEOUT_SECONDS)
        if not line:
            raise ConnectionResetError("client closed the connection")
        return line

    async def run(self) -> None:
        await self.reply(f"220 {self.hostname} Siteline mailsink ESMTP")
        while True:
            line = await self.read_line()
            command, _, argument = (
                line.decode("utf-8", "replace").rstrip("\r\n").partition(" ")
            )
            verb = command.upper()
            handler = (
                getattr(self, f"do_{verb.lower()}", None) if verb.isalpha() else None
            )
            if handler is None:
                await self.reply("500 5.5.2 Command not recognized")
                continue
            if await handler(argument.strip()) is False:
                return

    async def do_ehlo(self, argument: str) -> None:
        self.reset()
        await self.reply(
            f"250 {self.hostname} greets {argument or 'client'}",
            f"250 SIZE {MAX_MESSAGE_BYTES}",
            "250 8BITMIME",
            "250 SMTPUTF8",
            "250 AUTH PLAIN LOGIN",
            "250 HELP",
        )

    async def do_helo(self, argument: str) -> None:
        self.reset()
        await self.reply(f"250 {self.hostname}")

    async def do_auth(self, argument: str) -> None:
        # A sink accepts any credentials and keeps none: they are read and dropped unlogged.
        mechanism, _, initial = argument.partition(" ")
        mechanism = mechanism.upper()
        if mechanism == "PLAIN":
            if not initial:
                await self.reply("334 ")
                if (await self.read_line()).strip() == b"*":
                    await self.reply("501 5.0.0 Authentication cancelled")
                    return
        elif mechanism == "LOGIN":
            prompts = (
                ["334 UGFzc3dvcmQ6"]
                if initial
                else ["334 VXNlcm5hbWU6", "334 UGFzc3dvcmQ6"]
            )
            for prompt in prompts:
                await self.reply(prompt)
                if (await self.read_line()).strip() == b"*":
                    await self.reply("501 5.0.0 Authentication cancelled")
                    return
        else:
            await self.reply("504 5.5.4 Unrecognized authentication mechanism")
            return
        await self.reply("235 2.7.0 Authentication successful")

    async def do_mail(self, argument: str) -> None:
        if self.sender is not None:
            await self.reply("503 5.5.1 Nested MAIL command")
            return
        address = self.parse_path(argument, "FROM")
        if address is None:
            await self.reply("501 5.5.4 Syntax: MAIL FROM:<address>")
            return
        self.sender = address
        await self.reply("250 2.1.0 OK")

    async def do_rcpt(self, argument: str) -> None:
        if self.sender is None:
            await self.reply("503 5.5.1 Need MAIL before RCPT")
            return
        address = self.parse_path(argument, "TO")
        if not address:
            await self.reply("501 5.5.4 Syntax: RCPT TO:<address>")
            return
        self.recipients.append(address)
        await self.reply("250 2.1.5 OK")

    async def do_data(self, argument: str) -> None:
        if self.sender is None or not self.recipients:
            await self.reply("503 5.5.1 Need MAIL and RCPT before DATA")
            return
        await self.reply("354 End data with <CR><LF>.<CR><LF>")
        self.busy = True
        try:
            await self.receive_data()
        finally:
            self.busy = False

    async def receive_data(self) -> None:
        lines: list[bytes] = []
        size = 0
        while True:
            line = await self.read_line()
            if line.rstrip(b"\r\n") == b".":
                break
            if line.startswith(b"."):
                line = line[1:]
            size += len(line)
            if size <= MAX_MESSAGE_BYTES:
                lines.append(line)
        sender, recipients = self.sender, self.recipients
        self.reset()
        if size > MAX_MESSAGE_BYTES:
            await self.reply("552 5.3.4 Message too big")
            return
        assert sender is not None
        try:
            name = await asyncio.to_thread(
                self.mailbox.deliver, sender, recipients, b"".join(lines)
            )
        except OSError as error:
            log(f"cannot store a message for {recipient_domains(recipients)}: {error}")
            await self.reply("451 4.3.0 Cannot store the message, try again later")
            return
        log(f"received {name} for {recipient_domains(recipients)}")
        await self.reply(f"250 2.0.0 OK: queued as {name}")

    async def do_rset(self, argument: str) -> None:
        self.reset()
        await self.reply("250 2.0.0 OK")

    async def do_noop(self, argument: str) -> None:
        await self.reply("250 2.0.0 OK")

    async def do_vrfy(self, argument: str) -> None:
        await self.reply("252 2.1.5 Cannot verify, but will accept the message")

    async def do_help(self, argument: str) -> None:
        await self.reply(
            "214 2.0.0 EHLO HELO MAIL RCPT DATA RSET NOOP QUIT AUTH VRFY HELP"
        )

    async def do_quit(self, argument: str) -> bool:
        await self.reply("221 2.0.0 Bye")
        return False

    @staticmethod
    def parse_path(argument: str, keyword: str) -> str | None:
        if not argument.upper().startswith(keyword):
            return None
        match = PATH_ARGUMENT.match(argument) or BARE_ADDRESS.match(argument)
        return match.group(1) if match else None


async def serve(listen: str, port: int, mailbox: Mailbox, pidfile: Path | None) -> None:
    sessions: dict[asyncio.Task[None], Session] = {}
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    async def handle(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        session = sessions[task] = Session(reader, writer, mailbox)
        try:
            await session.run()
        except (TimeoutError, ConnectionError):
            pass
        except ValueError:
            log("closed a session that sent an over-long line")
        finally:
            sessions.pop(task, None)
            writer.close()

    server = await asyncio.start_server(handle, listen, port, limit=MAX_LINE_BYTES)
    bound = server.sockets[0].getsockname()
    if pidfile is not None:
        pidfile.parent.mkdir(parents=True, exist_ok=True)
        temporary = pidfile.with_name(f".{pidfile.name}.tmp")
        temporary.write_text(f"{os.getpid()}\n")
        os.replace(temporary, pidfile)
    log(f"listening on {bound[0]}:{bound[1]}, writing to {mailbox.directory}")

    try:
        await stop.wait()
        log("stopping")
        server.close()
        # A session in the middle of DATA gets a moment to finish its message; idle ones close now.
        busy = {task for task, session in sessions.items() if session.busy}
        for task in set(sessions) - busy:
            task.cancel()
        if busy:
            await asyncio.wait(busy, timeout=5)
        for task in set(sessions):
            task.cancel()
        await server.wait_closed()
    finally:
        if pidfile is not None:
            pidfile.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--listen", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    parser.add_argument(
        "--port", type=int, default=2525, help="port; 0 picks a free one (default 2525)"
    )
    parser.add_argument(
        "--dir",
        type=Path,
        required=True,
        help="directory the .eml files are written to",
    )
    parser.add_argument(
        "--pidfile", type=Path, help="write the process id here once listening"
    )
    args = parser.parse_args(argv)
    directory: Path = args.dir.resolve()
    directory.mkdir(mode=0o750, parents=True, exist_ok=True)
    try:
        asyncio.run(serve(args.listen, args.port, Mailbox(directory), args.pidfile))
    except OSError as error:
        print(
            f"mailsink: cannot listen on {args.listen}:{args.port}: {error}",
            file=sys.stderr,
        )
        return 1
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
