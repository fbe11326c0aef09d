#!/bin/sh
# The local users the delivery tests send mail to, as root: ordinary
# accounts with a home directory and a shell, so that smtpd's userbase
# (getpwnam) finds them and their mail lands in /var/mail/NAME or
# ~NAME/Maildir. `make test` runs this; nothing else needs these users.
set -eu
case "$(uname -s)" in
OpenBSD) add() { useradd -m -s /bin/sh "$1"; } ;;
*) add() { useradd --create-home --shell /bin/sh --comment "smtpd tests" "$1"; } ;;
esac
[ "$(id -u)" -eq 0 ] || { echo "testusers: run as root" >&2; exit 1; }
for u in smtpdtest1 smtpdtest2; do
	id "$u" >/dev/null 2>&1 || add "$u"
done
