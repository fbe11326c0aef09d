#!/bin/sh
# The system side smtpd needs on Linux, as root: its two users (with
# their groups) and the empty directory its processes chroot into.
# Arguments: [user queue-user chroot-dir], OpenSMTPD's names by default.
# Does nothing on OpenBSD, whose base system has them.
set -eu
user=${1:-_smtpd}
quser=${2:-_smtpq}
chrootdir=${3:-/var/empty}

case "$(uname -s)" in
OpenBSD) exit 0 ;;
esac

nologin=/usr/sbin/nologin
[ -x "$nologin" ] || nologin=/bin/false
[ -d "$chrootdir" ] || install -d -o root -m 755 "$chrootdir"
for u in "$user" "$quser"; do
	if ! id "$u" >/dev/null 2>&1; then
		useradd --system --home-dir "$chrootdir" --no-create-home \
		    --shell "$nologin" --user-group --comment "smtpd privsep user" "$u"
	fi
done
