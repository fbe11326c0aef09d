#!/bin/sh
# make run: smtpd in the foreground (-d) on 127.0.0.1 port 2525, from a
# configuration written here, that delivers mail for local users to
# their ~/Maildir. The configuration is checked first (smtpd -n).
set -eu
smtpd=$1
rundir=$(pwd)/run
mkdir -p "$rundir"
cat >"$rundir/smtpd.conf" <<CONF
# Written by mk/run.sh for "make run"; edit mk/run.sh, not this file.
listen on 127.0.0.1 port 2525

action "local" maildir
match from any for local action "local"
CONF
"$smtpd" -n -f "$rundir/smtpd.conf"

# Until smtpd receives mail, running it here would only pretend to be a
# mail server: say what is missing instead.
cat >&2 <<MSG
make run: smtpd cannot serve mail yet: its process tree starts and stops
(try: $smtpd -d -f $rundir/smtpd.conf, as root), but the SMTP server,
the queue and local delivery are not implemented, so nothing listens on
127.0.0.1:2525. See README.md and PORTING.md for what exists.
MSG
exit 1
