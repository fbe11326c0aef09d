#!/bin/sh
# make run: smtpd in the foreground (-d) on 127.0.0.1 port 2525, from a
# configuration written here, that delivers mail for local users to
# their ~/Maildir. The configuration is checked first (smtpd -n). The
# spool and the control socket live under run/, so that the system's
# /var/spool/smtpd is never touched. Root is needed, as for any smtpd.
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
if [ "$(id -u)" -ne 0 ]; then
	echo "make run: smtpd starts as root (it drops privileges itself); run it as root" >&2
	exit 1
fi
[ -d "$rundir/spool" ] || install -d -m 711 "$rundir/spool"

# The delivery helpers run as the recipient, who may not be able to
# reach the build tree (under /root, say): they run from a copy in a
# directory of their own that anyone can read, removed when smtpd exits.
libexec=$(mktemp -d "${TMPDIR:-/tmp}/smtpd-libexec.XXXXXX")
trap 'rm -rf "$libexec"' EXIT
trap 'exit 0' INT TERM
for h in lmtp local maildir mboxfile mda; do
	cp "$(dirname "$smtpd")/mail-$h" "$libexec/mail.$h"
done
chmod 755 "$libexec" "$libexec"/*

cat >&2 <<MSG
make run: smtpd on 127.0.0.1:2525; its spool is $rundir/spool.
Mail for a local user (not root: OpenSMTPD delivers to root's mbox
only) lands in that user's ~/Maildir.
MSG
export SMTPD_SPOOL="$rundir/spool" SMTPD_SOCKET="$rundir/smtpd.sock"
export SMTPD_LIBEXEC="$libexec"
"$smtpd" -d -f "$rundir/smtpd.conf"
