#!/usr/bin/env python3
"""Sends one message with Python's smtplib, the way applications do.

    smtplib_send.py HOST PORT FROM TO[,TO...] [--8bit] [--lmtp]

Prints the server's last reply and exits 0 when the message was taken.
"""
import smtplib
import sys
from email.message import EmailMessage


def main():
    host, port, sender, rcpts = sys.argv[1:5]
    eightbit = "--8bit" in sys.argv[5:]
    msg = EmailMessage()
    msg["From"] = "Carol <%s>" % sender
    msg["To"] = rcpts
    msg["Subject"] = "smtplib caf\u00e9" if eightbit else "smtplib"
    body = "Na\u00efve caf\u00e9 cr\u00e8me br\u00fbl\u00e9e.\n" if eightbit \
        else "Plain text.\n"
    # 8bit: the UTF-8 body goes as it is, under BODY=8BITMIME.
    msg.set_content(body, cte="8bit" if eightbit else "7bit")
    with smtplib.SMTP(host, int(port), local_hostname="client.example.net",
                      timeout=20) as s:
        s.ehlo()
        if eightbit and not s.has_extn("8bitmime"):
            print("no 8BITMIME advertised", file=sys.stderr)
            return 1
        refused = s.send_message(msg, from_addr=sender,
                                 to_addrs=rcpts.split(","))
        code, text = s.noop()
        print("refused:", refused)
        print("noop:", code, text.decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
