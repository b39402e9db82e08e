"""The local mail sink: a real SMTP server (aiosmtpd) that keeps every message it receives
as one .eml file, for people and tests to read. Development and tests only: it accepts any
sender and recipient, without authentication or TLS, and listens on loopback.

    python mail_sink.py [--host 127.0.0.1] [--port 2525] [--dir .dev/mail]

Each message is written as <dir>/<UTC timestamp>-<uuid>.eml (the timestamp sorts in
arrival order), atomically: to a hidden temporary file in the same directory first, then
renamed, so a reader never sees half a message. The file is the message as received
(headers and body, CRLF line ends), with an `X-Runwarden-Rcpt-To:` header per envelope
recipient first, so a reader can match the recipient even when the To header does not
name it (a Bcc).
"""

import argparse
import asyncio
import os
import signal
import sys
import uuid
from datetime import datetime, timezone

from aiosmtpd.controller import Controller


class EmlWriter:
    def __init__(self, directory):
        self.directory = directory

    async def handle_DATA(self, server, session, envelope):
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        name = f"{stamp}-{uuid.uuid4()}.eml"
        prefix = b"".join(
            b"X-Runwarden-Rcpt-To: " + rcpt.encode("utf-8", "replace") + b"\r\n"
            for rcpt in envelope.rcpt_tos
        )
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode("utf-8")
        tmp = os.path.join(self.directory, f".{name}.tmp")
        with open(tmp, "wb") as f:
            f.write(prefix + content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, os.path.join(self.directory, name))
        print(f"stored {name} ({len(envelope.rcpt_tos)} recipient(s))", flush=True)
        return "250 Message accepted for delivery"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2525)
    parser.add_argument("--dir", default=os.path.join(".dev", "mail"))
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)

    directory = os.path.abspath(args.dir)
    controller = Controller(
        EmlWriter(directory),
        hostname=args.host,
        port=args.port,
        # The messages are kept as bytes; SMTPUTF8 lets addresses be UTF-8 as lettre may send.
        enable_SMTPUTF8=True,
        decode_data=False,
        data_size_limit=10 * 1024 * 1024,
        # The greeting names the directory, so a client that finds a sink already running
        # (started from another checkout) knows where its messages go.
        ident=f"runwarden-mail-sink dir={directory}",
    )
    controller.start()
    print(f"mail sink listening on {args.host}:{args.port}, writing to {directory}", flush=True)

    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        loop.run_until_complete(stop.wait())
    finally:
        controller.stop()
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
