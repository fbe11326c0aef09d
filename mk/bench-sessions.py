#!/usr/bin/env python3
"""mk/bench.sh's SMTP client for what smtp-source cannot do.

  bench-sessions.py wait PORT SECONDS
      Waits until 127.0.0.1:PORT answers with a 220 banner (then QUIT),
      for at most SECONDS; exits 1 if it never does.

  bench-sessions.py tree PID
      Prints PID and its descendants, one "PID COMM" a line.

  bench-sessions.py idle PORT PID [SESSIONS [HOLD [SECONDS [WINDOW]]]]
      Opens SESSIONS (1000) connections, reads each banner, sends
      "EHLO bench.example" and reads the whole reply, then holds them
      all idle. HOLD (2) seconds after the last one is set up (or given
      up on), it sums the memory of the server's process tree (PID and
      every descendant): VmRSS from /proc/N/status, and Pss from
      /proc/N/smaps_rollup, which shares each shared page out among the
      processes that map it instead of counting it in each. Then it
      sends QUIT everywhere and closes. Setting up stops after SECONDS
      (120); at most WINDOW (5) sessions are between connect and the
      end of the EHLO reply at any time. Prints one line of key=value
      for mk/bench.sh, and to stderr why sessions failed, if any did.

Standard library only; the descriptors it needs (SESSIONS + a few) must
be allowed by RLIMIT_NOFILE.
"""

import errno
import os
import selectors
import socket
import sys
import time

EHLO = b"EHLO bench.example\r\n"


def tree(pid):
    """pid and its descendants, from the PPid of every /proc entry."""
    children = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces.
        fields = stat[stat.rfind(b")") + 2:].split()
        children.setdefault(int(fields[1]), []).append(int(name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def field_kb(path, key):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def memory(pid):
    """(VmRSS KiB, Pss KiB, processes) of the tree under pid."""
    rss = pss = n = 0
    for p in tree(pid):
        if not os.path.exists("/proc/%d" % p):
            continue
        n += 1
        rss += field_kb("/proc/%d/status" % p, "VmRSS:")
        pss += field_kb("/proc/%d/smaps_rollup" % p, "Pss:")
    return rss, pss, n


class Session:
    __slots__ = ("sock", "state", "buf", "why")

    def __init__(self):
        self.sock = None
        self.state = "connect"
        self.buf = b""
        self.why = ""


def reply(buf):
    """A complete SMTP reply at the start of buf: (code, rest) or None."""
    start = 0
    while True:
        end = buf.find(b"\n", start)
        if end == -1:
            return None
        line = buf[start:end]
        if len(line) < 4 or line[3:4] != b"-":
            return line[:3].decode("ascii", "replace"), buf[end + 1:]
        start = end + 1


def first_line(buf):
    return buf.split(b"\n", 1)[0].strip().decode("ascii", "replace")[:80]


def idle(port, pid, count, hold, limit, window):
    sel = selectors.DefaultSelector()
    sessions = [Session() for _ in range(count)]
    started = 0
    busy = 0
    done = 0
    failed = 0

    def fail(s, why):
        nonlocal busy, failed
        s.why = why
        s.state = "failed"
        sel.unregister(s.sock)
        s.sock.close()
        s.sock = None
        busy -= 1
        failed += 1

    rss0, pss0, n0 = memory(pid)
    t0 = time.monotonic()
    deadline = t0 + limit
    while done + failed < count:
        while busy < window and started < count:
            s = sessions[started]
            started += 1
            s.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.sock.setblocking(False)
            err = s.sock.connect_ex(("127.0.0.1", port))
            busy += 1
            sel.register(s.sock, selectors.EVENT_WRITE, s)
            if err not in (0, errno.EINPROGRESS):
                fail(s, "connect: " + os.strerror(err))
        left = deadline - time.monotonic()
        if left <= 0:
            break
        for key, _ in sel.select(min(left, 1.0)):
            s = key.data
            if s.state == "connect":
                err = s.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    fail(s, "connect: " + os.strerror(err))
                    continue
                s.state = "banner"
                sel.modify(s.sock, selectors.EVENT_READ, s)
                continue
            try:
                data = s.sock.recv(4096)
            except OSError as e:
                fail(s, "%s: %s" % (s.state, e.strerror))
                continue
            if not data:
                fail(s, "%s: closed by the server%s" % (
                    s.state, (" after " + first_line(s.buf)) if s.buf else ""))
                continue
            s.buf += data
            r = reply(s.buf)
            if r is None:
                continue
            code, s.buf = r
            if s.state == "banner":
                if code != "220":
                    fail(s, "banner: " + first_line(data))
                    continue
                s.state = "ehlo"
                try:
                    s.sock.send(EHLO)
                except OSError as e:
                    fail(s, "ehlo: " + e.strerror)
            elif s.state == "ehlo":
                if code != "250":
                    fail(s, "ehlo: " + first_line(data))
                    continue
                s.state = "idle"
                sel.unregister(s.sock)
                busy -= 1
                done += 1
    setup = time.monotonic() - t0
    for s in sessions:
        if s.state not in ("idle", "failed"):
            s.why = "no %s within %d s" % (
                "connection" if s.state == "connect" else s.state + " reply", limit)
            failed += 1

    time.sleep(hold)
    # The sessions must still be open: a server that dropped them
    # would look lighter than it is.
    dropped = 0
    for s in sessions:
        if s.state == "idle":
            try:
                if s.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                    dropped += 1
            except BlockingIOError:
                pass
            except OSError:
                dropped += 1
    rss, pss, n = memory(pid)
    for s in sessions:
        if s.sock is not None:
            try:
                s.sock.send(b"QUIT\r\n")
            except OSError:
                pass
            s.sock.close()

    reasons = {}
    for s in sessions:
        if s.why:
            reasons[s.why] = reasons.get(s.why, 0) + 1
    for why, k in sorted(reasons.items(), key=lambda x: -x[1]):
        print("bench-sessions: %d session(s): %s" % (k, why), file=sys.stderr)
    if dropped:
        print("bench-sessions: %d session(s) closed by the server while idle" % dropped,
              file=sys.stderr)
    print("ok=%d failed=%d dropped=%d setup=%.2f rss0=%d pss0=%d procs0=%d "
          "rss=%d pss=%d procs=%d" % (done, failed, dropped, setup, rss0, pss0, n0,
                                      rss, pss, n))
    return 0


def wait(port, limit):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
                c.settimeout(max(1.0, deadline - time.monotonic()))
                buf = b""
                while reply(buf) is None:
                    data = c.recv(4096)
                    if not data:
                        break
                    buf += data
                r = reply(buf)
                if r is not None and r[0] == "220":
                    c.sendall(b"QUIT\r\n")
                    return 0
        except OSError:
            pass
        time.sleep(0.1)
    print("bench-sessions: nothing answered on 127.0.0.1:%d in %d s" % (port, limit),
          file=sys.stderr)
    return 1


def main(argv):
    if len(argv) == 3 and argv[0] == "wait":
        return wait(int(argv[1]), float(argv[2]))
    if len(argv) == 2 and argv[0] == "tree":
        for p in tree(int(argv[1])):
            try:
                with open("/proc/%d/comm" % p) as f:
                    print(p, f.read().strip())
            except OSError:
                pass
        return 0
    if 3 <= len(argv) <= 7 and argv[0] == "idle":
        a = [int(argv[1]), int(argv[2])] + [float(x) for x in argv[3:]]
        defaults = [None, None, 1000, 2, 120, 5]
        a += defaults[len(a):]
        return idle(a[0], a[1], int(a[2]), a[3], a[4], int(a[5]))
    print(__doc__.strip(), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
