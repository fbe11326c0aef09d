#!/usr/bin/env python3
"""regress/smtp: SMTP dialogues with a running smtpd, end to end.

    python3 smtptest.py [--ref] [-j N] [-k] [-v] SMTPD [SCENARIO-GLOB...]

Each scenario starts its own smtpd (-d -P mda -P mta, so that whatever
it accepts stays in its spool) on free loopback ports with a private
spool, talks SMTP to it over raw sockets or through real clients, checks
the replies and then the spool, and stops it.  --ref runs OpenSMTPD 7.8
(a build with its paths compiled in) in a private mount namespace, with
its spool and run directories bind-mounted over private ones, so that
several can run at once and nothing of the system's is touched.

The scenario language is described in README in this directory.
"""

import argparse
import ast
import concurrent.futures
import fnmatch
import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# The reference build's compiled-in directories (its config.log).
REF_SPOOL = "/work/ref-build/inst/spool"
REF_RUN = "/work/ref-build/inst/run"

REPLY_TIMEOUT = 10.0      # seconds to wait for one reply
SCENARIO_TIMEOUT = 60.0   # a whole scenario, daemon start and stop included
START_TIMEOUT = 10.0      # for the listeners to accept connections
PROBE_TIMEOUT = 5.0       # the same, to tell whether there is a server
BUDGET = 900.0            # the whole run; scenarios past it fail unrun
RUN_TIMEOUT = 30.0        # one `run` command

ESC_RE = re.compile(r"^([245]\.[0-9]{1,3}\.[0-9]{1,3})(?: |$)")


class ScenarioError(Exception):
    """A scenario file that does not parse."""


class Failure(Exception):
    """A scenario whose expectations do not hold."""


# ---------------------------------------------------------------------
# The scenario files

class Step:
    def __init__(self, kind, lineno, target, *args):
        self.kind = kind
        self.lineno = lineno
        self.target = target    # None (both), "ref" or "ours"
        self.args = args

    def __repr__(self):
        return "%s@%d%r" % (self.kind, self.lineno, self.args)


class Scenario:
    def __init__(self, name, path, lineno):
        self.name = name
        self.path = path
        self.lineno = lineno
        self.conf = None        # text, or None for conf/default.conf
        self.conf_name = "default"
        self.files = {}
        self.steps = []
        self.timeout = SCENARIO_TIMEOUT
        self.requires = set()

    def where(self, step=None):
        rel = os.path.relpath(self.path, HERE)
        return "%s:%d" % (rel, step.lineno if step else self.lineno)


# `start WHAT`: the session up to WHAT, every step checked.
_EHLO = [("expect", "220", "-", ""),
         ("send", "EHLO client.example.net"),
         ("expect", "250", "-", r"^mx\.example\.org Hello client\.example\.net ")]
_MAIL = _EHLO + [("send", "MAIL FROM:<carol@example.net>"),
                 ("expect", "250", "2.0.0", "^Ok$")]
_RCPT = _MAIL + [("send", "RCPT TO:<alice@example.org>"),
                 ("expect", "250", "2.1.5", "Recipient ok$")]
_DATA = _RCPT + [("send", "DATA"),
                 ("expect", "354", "-", "^Enter mail")]
START = {
    "helo": [("expect", "220", "-", ""),
             ("send", "HELO client.example.net"),
             ("expect", "250", "-", r"^mx\.example\.org Hello client\.example\.net ")],
    "ehlo": _EHLO, "mail": _MAIL, "rcpt": _RCPT, "data": _DATA,
}
# `commit`: from after a MAIL FROM to the message accepted, for alice.
COMMIT = [("send", "RCPT TO:<alice@example.org>"),
          ("expect", "250", "2.1.5", "Recipient ok$"),
          ("send", "DATA"),
          ("expect", "354", "-", "^Enter mail"),
          ("send", "Subject: test"), ("send", ""), ("send", "Hello."),
          ("send", "."),
          ("expect", "250", "2.0.0", "Message accepted for delivery$")]
# `finish`: QUIT, and the server hangs up.
FINISH = [("send", "QUIT"), ("expect", "221", "2.0.0", "^Bye$"), ("closed",)]


def parse_bytes(expr, lineno):
    """A `>>` expression: string and bytes literals joined by +, and
    repeated by * COUNT.  Strings are encoded as UTF-8."""
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError as e:
        raise ScenarioError("line %d: bad expression: %s" % (lineno, e))

    def ev(node):
        if isinstance(node, ast.Constant):
            if isinstance(node.value, str):
                return node.value.encode("utf-8")
            if isinstance(node.value, bytes):
                return node.value
            if isinstance(node.value, int) and not isinstance(node.value, bool):
                return node.value
        if isinstance(node, ast.BinOp):
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Add) and \
                    isinstance(left, bytes) and isinstance(right, bytes):
                return left + right
            if isinstance(node.op, ast.Mult):
                if isinstance(left, bytes) and isinstance(right, int):
                    return left * right
                if isinstance(left, int) and isinstance(right, bytes):
                    return right * left
            if isinstance(node.op, (ast.Add, ast.Mult)) and \
                    isinstance(left, int) and isinstance(right, int):
                return left + right if isinstance(node.op, ast.Add) \
                    else left * right
        raise ScenarioError("line %d: only string literals, + and * "
                            "are allowed in %r" % (lineno, expr))

    value = ev(tree.body)
    if not isinstance(value, bytes):
        raise ScenarioError("line %d: not a string: %r" % (lineno, expr))
    return value


def parse_file(path):
    scenarios = []
    cur = None
    target = None
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    i = 0

    def heredoc(start, word):
        body = []
        j = start
        while j < len(lines):
            if lines[j] == word:
                return "\n".join(body) + "\n", j + 1
            body.append(lines[j])
            j += 1
        raise ScenarioError("%s:%d: no %s ends this text" % (path, start, word))

    while i < len(lines):
        raw = lines[i]
        lineno = i + 1
        i += 1
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("=== "):
            if target is not None:
                raise ScenarioError("%s:%d: unclosed %s block" %
                                    (path, lineno, target))
            cur = Scenario(line[4:].strip(), path, lineno)
            scenarios.append(cur)
            continue
        if cur is None:
            raise ScenarioError("%s:%d: outside a scenario" % (path, lineno))

        def add(kind, *args):
            cur.steps.append(Step(kind, lineno, target, *args))

        # Dialogue lines keep their spaces: "> TEXT" sends TEXT exactly.
        if raw.startswith(">> "):
            add("send", parse_bytes(raw[3:], lineno))
            continue
        if raw.startswith("> ") or raw == ">":
            add("send", raw[2:].encode("utf-8") + b"\r\n")
            continue
        if raw.startswith("< ") or raw.startswith("<\t"):
            rest = raw[2:].strip()
            if rest == "closed":
                add("closed")
                continue
            m = re.match(r"^([2-5][0-9][0-9])\s+(\S+)(?:\s(.*))?$", rest)
            if not m:
                raise ScenarioError("%s:%d: expected `< CODE ESC [REGEX]` "
                                    "or `< closed`" % (path, lineno))
            code, esc, rx = m.group(1), m.group(2), (m.group(3) or "").strip()
            if esc not in ("-", "*") and not ESC_RE.match(esc):
                raise ScenarioError("%s:%d: %r is not an enhanced status "
                                    "code, - (none) or * (any)" %
                                    (path, lineno, esc))
            if esc != "-" and esc != "*" and esc[0] != code[0]:
                raise ScenarioError("%s:%d: code %s with class %s" %
                                    (path, lineno, code, esc))
            try:
                re.compile(rx)
            except re.error as e:
                raise ScenarioError("%s:%d: bad regex: %s" % (path, lineno, e))
            add("expect", code, esc, rx)
            continue

        word, _, rest = line.partition(" ")
        rest = rest.strip()
        if word in ("ref", "ours") and rest == "{":
            if target is not None:
                raise ScenarioError("%s:%d: nested block" % (path, lineno))
            target = word
            continue
        if word == "}" and not rest:
            if target is None:
                raise ScenarioError("%s:%d: } without a block" % (path, lineno))
            target = None
            continue
        if word == "conf":
            if target is not None:
                raise ScenarioError("%s:%d: conf inside a block" % (path, lineno))
            m = re.match(r"^<<(\w+)$", rest)
            if m:
                cur.conf, i = heredoc(i, m.group(1))
                cur.conf_name = None
            elif re.match(r"^[\w.-]+$", rest):
                cur.conf_name = rest
            else:
                raise ScenarioError("%s:%d: conf NAME or conf <<WORD" %
                                    (path, lineno))
            continue
        if word == "file":
            m = re.match(r"^([\w.-]+)\s+<<(\w+)$", rest)
            if not m:
                raise ScenarioError("%s:%d: file NAME <<WORD" % (path, lineno))
            cur.files[m.group(1)], i = heredoc(i, m.group(2))
            continue
        if word == "timeout":
            cur.timeout = float(rest)
            continue
        if word == "connect":
            args = rest.split()
            family, port = "ipv4", "PORT"
            for a in args:
                if a in ("ipv4", "ipv6", "linklocal") or ":" in a or \
                        re.match(r"^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$", a):
                    family = a
                elif re.match(r"^PORT\d*$|^[0-9]+$", a):
                    port = a
                else:
                    raise ScenarioError("%s:%d: connect [ipv4|ipv6|linklocal|"
                                        "ADDRESS] [PORTn|NUMBER]" %
                                        (path, lineno))
            if family == "linklocal":
                cur.requires.add("linklocal")
            if family == "ipv6" or ":" in family:
                cur.requires.add("ipv6")
            add("connect", family, port)
            continue
        if word in ("start", "finish", "commit"):
            # Shorthands for the usual openings and ending of a session.
            macro = START.get(rest) if word == "start" else \
                None if rest else FINISH if word == "finish" else COMMIT
            if macro is None:
                raise ScenarioError("%s:%d: start %s, commit or finish" % (
                    path, lineno, "|".join(START)))
            for kind, *args in macro:
                if kind == "send":
                    args = [args[0].encode() + b"\r\n"]
                add(kind, *args)
            continue
        if word == "requires":
            if rest not in REQUIREMENTS:
                raise ScenarioError("%s:%d: requires %s" % (
                    path, lineno, "|".join(REQUIREMENTS)))
            cur.requires.add(rest)
            continue
        if word in ("close", "restart") and not rest:
            add(word)
            continue
        if word == "sleep":
            add("sleep", float(rest))
            continue
        if word == "ehlo":
            add("ehlo", rest.split())
            continue
        if word == "spool":
            m = re.match(r"^(messages|envelopes)\s+(\d+)$", rest)
            if not m:
                raise ScenarioError("%s:%d: spool messages|envelopes N" %
                                    (path, lineno))
            add("spool", m.group(1), int(m.group(2)))
            continue
        if word in ("envelopes", "messages"):
            # envelopes N FIELD REGEX, messages N REGEX: exactly N match.
            m = re.match(r"^(\d+)\s+(\S+)(?:\s+(.*))?$", rest)
            if not m:
                raise ScenarioError("%s:%d: envelopes N FIELD REGEX or "
                                    "messages N REGEX" % (path, lineno))
            n = int(m.group(1))
            if word == "envelopes":
                field, rx = m.group(2), (m.group(3) or "").strip()
            else:
                field, rx = None, rest[len(m.group(1)):].strip()
            try:
                re.compile(rx)
            except re.error as e:
                raise ScenarioError("%s:%d: bad regex: %s" % (path, lineno, e))
            add(word, field, rx, n)
            continue
        if word in ("envelope", "message", "output", "log"):
            neg = False
            if word == "envelope":
                field, _, rx = rest.partition(" ")
                rx = rx.strip()
            else:
                field, rx = None, rest
            if rx.startswith("! "):
                neg, rx = True, rx[2:].strip()
            try:
                re.compile(rx)
            except re.error as e:
                raise ScenarioError("%s:%d: bad regex: %s" % (path, lineno, e))
            add(word, field, rx, neg)
            continue
        if word in ("run", "run-fails"):
            add(word, rest)
            continue
        raise ScenarioError("%s:%d: unknown directive %r" % (path, lineno, word))
    if target is not None:
        raise ScenarioError("%s: unclosed %s block at the end" % (path, target))
    return scenarios


# ---------------------------------------------------------------------
# Ports: free ones, never handed out twice by this process.

_ports_lock = threading.Lock()
_ports_used = set()


def ipv6_loopback():
    """Whether ::1 is there (it is not in some containers)."""
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        try:
            s.bind(("::1", 0))
        finally:
            s.close()
        return True
    except OSError:
        return False


HAVE_IPV6 = ipv6_loopback()


def free_port():
    with _ports_lock:
        for _ in range(100):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            finally:
                s.close()
            # Also free on ::1, where the default configuration listens too.
            if HAVE_IPV6:
                try:
                    s6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
                    try:
                        s6.bind(("::1", port))
                    finally:
                        s6.close()
                except OSError:
                    continue
            if port not in _ports_used and port != 587:
                _ports_used.add(port)
                return port
    raise RuntimeError("no free port")


# ---------------------------------------------------------------------
# What this run started and made, for the cleanup on a signal: process
# groups (each daemon and each `run` command leads its own) and scratch
# directories.

_live_lock = threading.RLock()
_live_groups = set()
_live_dirs = set()


def cleanup_and_exit(signum, frame):
    with _live_lock:
        for pgid in list(_live_groups):
            try:
                os.killpg(pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for d in list(_live_dirs):
            shutil.rmtree(d, ignore_errors=True)
    print("regress/smtp: interrupted", file=sys.stderr)
    os._exit(2)


# ---------------------------------------------------------------------
# The daemon

class Daemon:
    """One smtpd in a scratch directory."""

    def __init__(self, opts, scenario, tmp):
        self.opts = opts
        self.scenario = scenario
        self.tmp = tmp
        self.proc = None
        self.start_timeout = START_TIMEOUT
        self.log = os.path.join(tmp, "smtpd.log")
        self.spool = os.path.join(tmp, "spool")
        self.rundir = os.path.join(tmp, "run")
        if opts.ref and not opts.unshare:
            # No mount namespaces: the reference's own directories, one
            # daemon at a time, emptied before each.
            self.spool, self.rundir = REF_SPOOL, REF_RUN
        self.vars = {"DIR": tmp, "HERE": HERE, "PYTHON": sys.executable}
        if opts.linklocal:
            self.vars["LLADDR"], self.vars["LLIFACE"] = opts.linklocal[:2]
        for n in ("PORT", "PORT2", "PORT3", "DEADPORT"):
            self.vars[n] = str(free_port())

    def subst(self, text):
        def rep(m):
            if m.group(1) in self.vars:
                return self.vars[m.group(1)]
            raise Failure("unknown placeholder @%s@" % m.group(1))
        return re.sub(r"@([A-Z0-9]+)@", rep, text)

    def empty_ref_dirs(self):
        for d in (self.spool, self.rundir):
            for name in os.listdir(d):
                p = os.path.join(d, name)
                if os.path.isdir(p) and not os.path.islink(p):
                    shutil.rmtree(p)
                else:
                    os.unlink(p)

    def prepare(self):
        if self.spool == REF_SPOOL:
            self.empty_ref_dirs()
        else:
            os.mkdir(self.rundir, 0o755)
            # OpenSMTPD wants its spool root 0711 and owned by root.
            os.mkdir(self.spool, 0o711)
            os.chmod(self.spool, 0o711)
        os.chmod(self.tmp, 0o755)
        # The hosts file only: a scenario must not wait on whatever name
        # server this machine has (CI once lost a reverse lookup of
        # 127.0.0.1 there, and with it a banner).
        with open(os.path.join(self.tmp, "resolv.conf"), "w") as f:
            f.write("lookup file\n")
        for name in os.listdir(os.path.join(HERE, "files")):
            with open(os.path.join(HERE, "files", name)) as f:
                text = f.read()
            with open(os.path.join(self.tmp, name), "w") as f:
                f.write(self.subst(text))
        for name, text in self.scenario.files.items():
            with open(os.path.join(self.tmp, name), "w") as f:
                f.write(self.subst(text))
        if self.scenario.conf is not None:
            conf = self.scenario.conf
        else:
            p = os.path.join(HERE, "conf", self.scenario.conf_name + ".conf")
            try:
                with open(p) as f:
                    conf = f.read()
            except OSError:
                raise Failure("no configuration %s" % p)
        if not HAVE_IPV6:
            # No ::1 here: the IPv6 listeners go (their scenarios are
            # skipped).
            conf = re.sub(r"(?m)^\s*listen\s+on\s+::1\s.*$", "", conf)
        self.conf = self.subst(conf)
        self.conf_path = os.path.join(self.tmp, "smtpd.conf")
        with open(self.conf_path, "w") as f:
            f.write(self.conf)
        os.chmod(self.conf_path, 0o644)
        # sendmail, for local submissions: smtpctl called by that name.
        smtpctl = self.opts.smtpctl
        os.symlink(smtpctl, os.path.join(self.tmp, "sendmail"))
        self.vars["SENDMAIL"] = os.path.join(self.tmp, "sendmail")
        self.vars["SMTPCTL"] = smtpctl

    def listeners(self):
        """(family, address, port) of the configuration's TCP listeners."""
        out = []
        for line in self.conf.split("\n"):
            m = re.match(r"^\s*listen\s+on\s+(\S+)\s.*\bport\s+(\d+)", line)
            if not m:
                continue
            addr = m.group(1)
            if addr in ("localhost", "lo", "lo0"):
                addr = "127.0.0.1"
            elif ":" not in addr and \
                    not re.match(r"^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$", addr):
                # An interface: set up with the others, checked through them.
                continue
            fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
            out.append((fam, addr, int(m.group(2))))
        return out

    def env(self):
        e = dict(os.environ)
        e["LC_ALL"] = "C"
        e["TZ"] = "UTC"
        e["ASR_CONFIG"] = os.path.join(self.tmp, "resolv.conf")
        if not self.opts.ref:
            e["SMTPD_SPOOL"] = self.spool
            e["SMTPD_SOCKET"] = os.path.join(self.rundir, "smtpd.sock")
        return e

    def start(self):
        argv = [self.opts.smtpd, "-d", "-P", "mda", "-P", "mta",
                "-f", self.conf_path]
        if self.opts.ref and self.opts.unshare:
            # Private spool and run directories for the reference, whose
            # paths are compiled in: a mount namespace of its own.
            script = ('mount --bind "$1" %s && mount --bind "$2" %s && '
                      'shift 2 && exec "$@"' % (REF_SPOOL, REF_RUN))
            argv = ["unshare", "-m", "--propagation", "private",
                    "sh", "-c", script, "sh", self.spool, self.rundir] + argv
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=logf, stderr=subprocess.STDOUT,
                                     env=self.env(), cwd=self.tmp,
                                     start_new_session=True)
        logf.close()
        with _live_lock:
            _live_groups.add(self.proc.pid)
        deadline = time.time() + self.start_timeout
        pending = self.listeners()
        while pending:
            if self.proc.poll() is not None:
                raise Failure("smtpd exited with status %d at start" %
                              self.proc.returncode)
            fam, addr, port = pending[0]
            s = socket.socket(fam, socket.SOCK_STREAM)
            s.settimeout(1)
            try:
                s.connect((addr, port))
                pending.pop(0)
            except OSError:
                if time.time() > deadline:
                    raise Failure("smtpd does not accept connections on "
                                  "%s port %d" % (addr, port))
                time.sleep(0.05)
            finally:
                s.close()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        # The whole process group we created: its children too.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        with _live_lock:
            _live_groups.discard(self.proc.pid)

    def log_tail(self, n=25):
        try:
            with open(self.log, "rb") as f:
                lines = f.read().decode("utf-8", "replace").split("\n")
        except OSError:
            return []
        return lines[-n:]

    def command(self, cmd):
        """A shell command line, run next to the daemon: in its mount
        namespace for the reference."""
        argv = ["sh", "-c", cmd]
        if self.opts.ref and self.opts.unshare:
            argv = ["nsenter", "-t", str(self.proc.pid), "-m", "--"] + argv
        return argv

    # The spool, as OpenSMTPD lays it out:
    # queue/XX/MSGID/{message,EVPID...}.
    def messages(self):
        return sorted(d for d in glob.glob(os.path.join(
            self.spool, "queue", "[0-9a-f][0-9a-f]", "[0-9a-f]" * 8))
            if os.path.isdir(d))

    def envelopes(self):
        out = []
        for d in self.messages():
            out += sorted(glob.glob(os.path.join(d, "[0-9a-f]" * 16)))
        return out


# ---------------------------------------------------------------------
# A session

def linklocal():
    """An IPv6 link-local address of this host that it can connect to
    itself: (address, interface name, interface index), or None."""
    try:
        with open("/proc/net/if_inet6") as f:
            rows = [l.split() for l in f]
    except OSError:
        return None
    for r in rows:
        if len(r) < 6 or not r[0].startswith("fe80") or r[5] == "lo":
            continue
        addr = ":".join(r[0][i:i + 4] for i in range(0, 32, 4))
        addr = socket.inet_ntop(socket.AF_INET6,
                                socket.inet_pton(socket.AF_INET6, addr))
        index = int(r[1], 16)
        try:
            s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            c = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            try:
                s.bind((addr, 0, 0, index))
                s.listen(1)
                c.settimeout(2)
                c.connect((addr, s.getsockname()[1], 0, index))
            finally:
                s.close()
                c.close()
        except OSError:
            continue
        return addr, r[5], index
    return None


def port587_free(opts):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # As smtpd binds: a connection of an earlier run in TIME_WAIT does
    # not keep the port.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.2", 587))
    except OSError as e:
        return "cannot bind 127.0.0.2 port 587: %s" % e.strerror
    finally:
        s.close()
    return None


def sendmail_submits(opts):
    # An smtpctl without mail submission says "not implemented yet" and
    # nothing else: the scenarios that need it wait for it.  Any other
    # answer (here, no control socket to reach, and no spool to leave the
    # message in offline) means it is built.
    env = dict(os.environ, SMTPD_SOCKET="/nonexistent/smtpd.sock",
               SMTPD_SPOOL="/nonexistent")
    try:
        p = subprocess.run(["sendmail", "-f", "a@example.org", "b@example.org"],
                           executable=opts.smtpctl, input=b"",
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           env=env, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return "cannot run %s as sendmail: %s" % (opts.smtpctl, e)
    if b"not implemented yet" in p.stdout:
        return "this smtpctl has no mail submission yet"
    return None


# `requires WHAT`: a check that says why the scenario cannot run here.
REQUIREMENTS = {
    "ipv6": lambda opts: None if HAVE_IPV6 else "no IPv6 loopback (::1)",
    "linklocal": lambda opts: None if opts.linklocal else
    "no IPv6 link-local address this host can connect to itself on",
    "port587": port587_free,
    "sendmail": sendmail_submits,
}


class Session:
    def __init__(self, family, port, transcript):
        self.transcript = transcript
        if family == "ipv4":
            family = "127.0.0.1"
        elif family == "ipv6":
            family = "::1"
        if family == "linklocal":
            ll = linklocal()
            if ll is None:
                raise Failure("no usable IPv6 link-local address")
            host = "%s%%%s" % (ll[0], ll[1])
            fam, addr = socket.AF_INET6, (ll[0], port, 0, ll[2])
        elif ":" in family:
            host, fam, addr = family, socket.AF_INET6, (family, port)
        else:
            host, fam, addr = family, socket.AF_INET, (family, port)
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.settimeout(REPLY_TIMEOUT)
        try:
            self.sock.connect(addr)
        except OSError as e:
            raise Failure("cannot connect to %s port %d: %s" % (host, port, e))
        self.buf = b""
        self.eof = False
        self.error = None
        self.transcript.append("-- connected to %s port %d" % (host, port))

    def send(self, data):
        self.transcript.append(">> " + shorten(data))
        try:
            self.sock.sendall(data)
        except OSError as e:
            # The server may hang up while we write (after a line too
            # long): what it said before is still to be read.
            self.transcript.append("-- send: %s" % e)

    def fill(self, deadline):
        if self.eof:
            return False
        t = deadline - time.time()
        if t <= 0:
            return False
        self.sock.settimeout(t)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return False
        except OSError as e:
            self.error = str(e)
            self.eof = True
            self.transcript.append("-- recv: %s" % e)
            return False
        if not data:
            self.eof = True
            self.transcript.append("-- closed by the server")
            return False
        self.buf += data
        return True

    def line(self, deadline):
        while b"\n" not in self.buf:
            if not self.fill(deadline):
                return None
        line, self.buf = self.buf.split(b"\n", 1)
        if line.endswith(b"\r"):
            line = line[:-1]
        text = line.decode("utf-8", "replace")
        self.transcript.append("<< " + text)
        return text

    def reply(self, timeout=REPLY_TIMEOUT):
        """A whole reply: [(code, text)], or None."""
        deadline = time.time() + timeout
        lines = []
        while True:
            text = self.line(deadline)
            if text is None:
                if lines:
                    raise Failure("the server stopped in a multi-line reply")
                return None
            m = re.match(r"^([0-9]{3})([ -]|$)(.*)$", text)
            if not m:
                raise Failure("not an SMTP reply line: %r" % text)
            if lines and m.group(1) != lines[0][0]:
                raise Failure("reply codes differ in a multi-line reply")
            lines.append((m.group(1), m.group(3)))
            if m.group(2) != "-":
                return lines

    def wait_closed(self, timeout=REPLY_TIMEOUT):
        deadline = time.time() + timeout
        while not self.eof:
            if self.buf:
                return False
            if not self.fill(deadline):
                if not self.eof:
                    return False
        return not self.buf

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def shorten(data, n=200):
    r = repr(data)[2:-1]
    if len(r) > n:
        r = r[:n // 2] + "...(%d bytes)..." % len(data) + r[-n // 4:]
    return r


def split_esc(text):
    m = ESC_RE.match(text)
    if m:
        return m.group(1), text[m.end():]
    return None, text


def describe(reply):
    return " / ".join("%s %s" % (c, t) for c, t in reply)


# ---------------------------------------------------------------------
# Running one scenario

def run_scenario(sc, opts):
    """None when the scenario passes, ("skip", why) when it cannot run
    here, or the failure's text."""
    for r in sorted(sc.requires):
        why = REQUIREMENTS[r](opts)
        if why:
            return ("skip", why)
    tmp = tempfile.mkdtemp(prefix="smtpd-regress-smtp-")
    with _live_lock:
        _live_dirs.add(tmp)
    transcript = []
    d = Daemon(opts, sc, tmp)
    started = time.time()
    try:
        d.prepare()
        d.start()
        run_steps(sc, d, opts, transcript, started)
        return None
    except Failure as e:
        out = [str(e)]
        n = 40 if opts.verbose else 10
        if transcript:
            out.append("transcript (last lines):")
            out += ["    " + t for t in transcript[-n:]]
        tail = [t for t in d.log_tail(n) if t]
        if tail:
            out.append("smtpd log (last lines):")
            out += ["    " + t for t in tail]
        return "\n".join(out)
    except Exception as e:   # a bug here, not in smtpd: say so loudly
        import traceback
        return "runner error: %s\n%s" % (e, traceback.format_exc())
    finally:
        d.stop()
        if d.spool == REF_SPOOL and not opts.keep:
            d.empty_ref_dirs()
        if opts.keep:
            print("kept %s for %s" % (tmp, sc.name), file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        with _live_lock:
            _live_dirs.discard(tmp)


def run_steps(sc, d, opts, transcript, started):
    me = "ref" if opts.ref else "ours"
    steps = [s for s in sc.steps if s.target in (None, me)]
    sess = None
    last = None          # the last reply
    last_output = ""
    i = 0

    def check_time():
        if time.time() - started > sc.timeout:
            raise Failure("the scenario ran longer than %gs" % sc.timeout)

    def session():
        nonlocal sess
        if sess is None:
            sess = Session("ipv4", int(d.vars["PORT"]), transcript)
        return sess

    try:
        while i < len(steps):
            check_time()
            st = steps[i]
            where = sc.where(st)
            k = st.kind
            if k == "connect":
                if sess:
                    sess.close()
                port = st.args[1]
                port = int(d.vars[port]) if port in d.vars else int(port)
                sess = Session(st.args[0], port, transcript)
            elif k == "restart":
                if sess:
                    sess.close()
                    sess = None
                transcript.append("-- restarting smtpd")
                d.stop()
                d.start()
            elif k == "close":
                if sess:
                    sess.close()
                    transcript.append("-- closed by the client")
                sess = None
            elif k == "send":
                # A run of sends goes out in one write.
                data = b""
                while i < len(steps) and steps[i].kind == "send":
                    data += steps[i].args[0]
                    i += 1
                session().send(data)
                continue
            elif k == "sleep":
                time.sleep(st.args[0])
            elif k == "expect":
                code, esc, rx = st.args
                want = "%s %s %s" % (code, esc, rx)
                r = session().reply()
                if r is None:
                    raise Failure("%s: expected `%s`, got %s" % (
                        where, want, "the connection closed" if sess.eof
                        else "nothing within %gs" % REPLY_TIMEOUT))
                last = r
                got_esc, _ = split_esc(r[0][1])
                text = "\n".join(split_esc(t)[1] for _, t in r)
                ok = r[0][0] == code
                if esc == "-":
                    ok = ok and got_esc is None
                elif esc != "*":
                    ok = ok and got_esc == esc
                if ok and rx and not re.search(rx, text, re.M):
                    ok = False
                if not ok:
                    raise Failure("%s: expected `%s`, got `%s`" %
                                  (where, want, describe(r)))
            elif k == "closed":
                if not session().wait_closed():
                    extra = sess.buf.decode("utf-8", "replace")
                    raise Failure("%s: expected the server to close the "
                                  "connection, %s" % (where,
                                  "got %r" % extra if extra else
                                  "it is still open"))
                sess.close()
                sess = None
            elif k == "ehlo":
                if last is None:
                    raise Failure("%s: no reply to look at" % where)
                got = sorted(t.split(" ")[0].upper() for _, t in last[1:])
                want = sorted(w.upper() for w in st.args[0])
                if got != want:
                    raise Failure("%s: EHLO keywords: expected %s, got %s" %
                                  (where, " ".join(want), " ".join(got)))
            elif k in ("spool", "envelope", "message", "envelopes",
                       "messages"):
                if sess:
                    sess.close()
                    sess = None
                check_spool(st, d, where)
            elif k in ("run", "run-fails"):
                cmd = d.subst(st.args[0])
                transcript.append("-- run: " + cmd)
                rc, out = run_command(d, cmd)
                if rc is None:
                    raise Failure("%s: `%s` ran longer than %gs" %
                                  (where, cmd, RUN_TIMEOUT))
                last_output = out.decode("utf-8", "replace")
                for l in last_output.rstrip("\n").split("\n")[-30:]:
                    transcript.append("   | " + l)
                if (rc == 0) != (k == "run"):
                    raise Failure("%s: `%s` exited with status %d" %
                                  (where, cmd, rc))
            elif k == "output":
                _, rx, neg = st.args
                if bool(re.search(rx, last_output, re.M)) == neg:
                    raise Failure("%s: the output %s /%s/" % (
                        where, "matches" if neg else "does not match", rx))
            elif k == "log":
                _, rx, neg = st.args
                with open(d.log, "rb") as f:
                    log = f.read().decode("utf-8", "replace")
                if bool(re.search(rx, log, re.M)) == neg:
                    raise Failure("%s: the log %s /%s/" % (
                        where, "matches" if neg else "does not match", rx))
            else:
                raise Failure("%s: step %s not implemented" % (where, k))
            i += 1
    finally:
        if sess:
            sess.close()

    # Whatever happened, the daemon must still be up and greeting.
    check_time()
    if not d.alive():
        raise Failure("%s: smtpd is no longer running (status %s)" %
                      (sc.where(), d.proc.returncode))
    s = Session("ipv4", int(d.vars["PORT"]), transcript)
    try:
        r = s.reply()
        if r is None or r[0][0] != "220":
            raise Failure("%s: after the scenario, a new session gets %s "
                          "instead of a 220 banner" % (sc.where(),
                          describe(r) if r else "nothing"))
        s.send(b"QUIT\r\n")
        s.reply()
    finally:
        s.close()


def run_command(d, cmd):
    """(exit status, output) of a shell command, or (None, output) when
    it ran too long; in its own process group, killed whole."""
    p = subprocess.Popen(d.command(cmd), env=d.env(), cwd=d.tmp,
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, start_new_session=True)
    with _live_lock:
        _live_groups.add(p.pid)
    try:
        out, _ = p.communicate(timeout=RUN_TIMEOUT)
        return p.returncode, out
    except subprocess.TimeoutExpired:
        return None, b""
    finally:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        p.wait()
        with _live_lock:
            _live_groups.discard(p.pid)


def read_kv(path):
    with open(path, "rb") as f:
        text = f.read().decode("utf-8", "replace")
    out = {}
    for line in text.split("\n"):
        k, sep, v = line.partition(": ")
        if sep and k not in out:
            out[k] = v
        elif line.endswith(":") and line[:-1] not in out:
            out[line[:-1]] = ""
    return out


def read_message(msgdir):
    with open(os.path.join(msgdir, "message"), "rb") as f:
        return f.read().decode("utf-8", "surrogateescape")


def check_spool(st, d, where):
    k = st.kind
    if k == "spool":
        what, n = st.args
        items = d.messages() if what == "messages" else d.envelopes()
        if len(items) != n:
            raise Failure("%s: expected %d %s in the spool, found %d" %
                          (where, n, what, len(items)))
    elif k == "envelope":
        field, rx, neg = st.args
        evps = d.envelopes()
        if not evps:
            raise Failure("%s: no envelope in the spool" % where)
        for e in evps:
            v = read_kv(e).get(field, "")
            if bool(re.search(rx, v)) == neg:
                raise Failure("%s: envelope %s: %s: %r %s /%s/" % (
                    where, os.path.basename(e), field, v,
                    "matches" if neg else "does not match", rx))
    elif k in ("envelopes", "messages"):
        field, rx, n = st.args
        got = 0
        if k == "envelopes":
            for e in d.envelopes():
                if re.search(rx, read_kv(e).get(field, "")):
                    got += 1
        else:
            for m in d.messages():
                if re.search(rx, read_message(m), re.M):
                    got += 1
        if got != n:
            raise Failure("%s: expected %d %s matching /%s/, found %d" % (
                where, n, k, rx, got))
    elif k == "message":
        _, rx, neg = st.args
        msgs = d.messages()
        if not msgs:
            raise Failure("%s: no message in the spool" % where)
        for m in msgs:
            text = read_message(m)
            if bool(re.search(rx, text, re.M)) == neg:
                head = text[:600]
                raise Failure("%s: message %s %s /%s/; it begins:\n%s" % (
                    where, os.path.basename(m),
                    "matches" if neg else "does not match", rx,
                    "\n".join("    " + l for l in head.split("\n"))))


# ---------------------------------------------------------------------
# Is there an SMTP server in this smtpd at all?

def has_smtp_server(opts):
    """Starts the daemon on the default configuration: True when its
    listener accepts a connection, False when the daemon is up but never
    opens it.  Anything else (it does not start, it dies) is an error."""
    sc = Scenario("probe", os.path.join(HERE, "conf", "default.conf"), 0)
    tmp = tempfile.mkdtemp(prefix="smtpd-regress-smtp-probe-")
    with _live_lock:
        _live_dirs.add(tmp)
    opts.linklocal = None
    d = Daemon(opts, sc, tmp)
    d.start_timeout = PROBE_TIMEOUT
    try:
        d.prepare()
        try:
            d.start()
            return True, None
        except Failure as e:
            if d.alive():
                return False, "\n".join(d.log_tail(5))
            return None, "%s\n%s" % (e, "\n".join(d.log_tail(10)))
    finally:
        d.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        with _live_lock:
            _live_dirs.discard(tmp)


# ---------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description="SMTP dialogue scenarios")
    ap.add_argument("--ref", action="store_true",
                    help="the smtpd is the OpenSMTPD 7.8 reference build")
    ap.add_argument("-j", type=int, default=4, help="scenarios at once")
    ap.add_argument("-k", "--keep", action="store_true",
                    help="keep the scratch directories")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--smtpctl", help="smtpctl to use as sendmail "
                    "(default: next to smtpd)")
    ap.add_argument("--list", action="store_true", help="list and exit")
    ap.add_argument("--no-namespace", action="store_true",
                    help="run the reference on its own spool, one at a time")
    ap.add_argument("smtpd")
    ap.add_argument("only", nargs="*", help="scenario names (globs)")
    opts = ap.parse_intermixed_args()

    opts.smtpd = os.path.abspath(opts.smtpd)
    if not opts.smtpctl:
        opts.smtpctl = os.path.join(os.path.dirname(opts.smtpd), "smtpctl")
    opts.unshare = False

    scenarios = []
    names = set()
    try:
        for path in sorted(glob.glob(os.path.join(HERE, "scenarios",
                                                  "*.smtp"))):
            for sc in parse_file(path):
                if sc.name in names:
                    raise ScenarioError("%s: scenario %s defined twice" %
                                        (sc.where(), sc.name))
                names.add(sc.name)
                scenarios.append(sc)
    except ScenarioError as e:
        print("regress/smtp: %s" % e, file=sys.stderr)
        return 2
    if opts.only:
        scenarios = [s for s in scenarios
                     if any(fnmatch.fnmatch(s.name, g) for g in opts.only)]
    if opts.list:
        for s in scenarios:
            print(s.name)
        return 0

    signal.signal(signal.SIGINT, cleanup_and_exit)
    signal.signal(signal.SIGTERM, cleanup_and_exit)
    signal.signal(signal.SIGHUP, cleanup_and_exit)

    if not os.access(opts.smtpd, os.X_OK):
        print("regress/smtp: %s is not an executable" % opts.smtpd,
              file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("regress/smtp: must run as root (smtpd does)", file=sys.stderr)
        return 2

    if opts.ref:
        # Each reference daemon gets its own mount namespace, so that
        # they do not share the compiled-in spool and socket.
        if not opts.no_namespace and \
                shutil.which("unshare") and shutil.which("nsenter") and \
                subprocess.run(["unshare", "-m", "true"],
                               stderr=subprocess.DEVNULL).returncode == 0:
            opts.unshare = True
        else:
            print("regress/smtp: no mount namespaces: running the reference "
                  "one at a time on %s" % REF_SPOOL, file=sys.stderr)
            opts.j = 1
    else:
        ok, why = has_smtp_server(opts)
        if ok is False:
            print("regress/smtp: skipped: the SMTP server is not in this "
                  "build (smtpd started but its listener never accepted a "
                  "connection)")
            for l in (why or "").split("\n"):
                if l:
                    print("    " + l)
            return 0
        if ok is None:
            print("FAIL regress/smtp: smtpd does not start on the default "
                  "configuration:")
            for l in why.split("\n"):
                print("    " + l)
            return 1

    t0 = time.time()
    failed = []
    skipped = []
    opts.linklocal = linklocal()

    def one(sc):
        if time.time() - t0 > BUDGET:
            return "not run: the suite ran longer than %gs" % BUDGET
        return run_scenario(sc, opts)

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, opts.j)) as ex:
        futures = [(sc, ex.submit(one, sc)) for sc in scenarios]
        for sc, fu in futures:
            err = fu.result()
            if err is None:
                print("ok %s" % sc.name)
            elif isinstance(err, tuple):
                skipped.append(sc.name)
                print("skip %s: %s" % (sc.name, err[1]))
            else:
                failed.append(sc.name)
                print("FAIL %s (%s)" % (sc.name, sc.where()))
                for l in err.split("\n"):
                    print("    " + l)
            sys.stdout.flush()

    dt = time.time() - t0
    mode = "reference" if opts.ref else "smtpd"
    if failed:
        print("regress/smtp: %d of %d scenarios failed against the %s "
              "(%.0fs):" % (len(failed), len(scenarios), mode, dt))
        for n in failed:
            print("    " + n)
        return 1
    print("regress/smtp: all %d scenarios passed against the %s (%.0fs)%s" %
          (len(scenarios) - len(skipped), mode, dt,
           ", %d skipped" % len(skipped) if skipped else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
