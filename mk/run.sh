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
exec "$smtpd" -d -f "$rundir/smtpd.conf"
