#!/bin/sh
# The reference OpenSMTPD that tests/queue_compat.rs writes a spool with:
# Debian's opensmtpd package (6.8), unpacked under run/ref/opensmtpd
# rather than installed (it conflicts with every other MTA), with the
# libraries it needs installed and the users and chroot directory of
# Debian's build made. Called by mk/deps.sh. Root and Debian only;
# elsewhere, or when the package cannot be fetched, it says why and
# stops without failing, and the test skips.
set -eu
dir=${OPENSMTPD_REF_DIR:-$(cd "$(dirname "$0")/.." && pwd)/run/ref}
ref=$dir/opensmtpd/usr/sbin/smtpd

[ "$(id -u)" -eq 0 ] || exit 0
if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-deb >/dev/null 2>&1; then
	exit 0
fi

if [ ! -x "$ref" ]; then
	mkdir -p "$dir"
	rm -rf "$dir"/opensmtpd_*.deb "$dir/opensmtpd"
	# apt-get download writes to the current directory.
	fetch() { (cd "$dir" && apt-get download -q opensmtpd) >/dev/null 2>&1; }
	if ! fetch && ! { apt-get update -q >/dev/null 2>&1 && fetch; }; then
		echo "opensmtpd-ref: could not download Debian's opensmtpd; tests/queue_compat.rs will skip" >&2
		exit 0
	fi
	dpkg-deb -x "$dir"/opensmtpd_*.deb "$dir/opensmtpd"
fi

# Its shared libraries: the lib* packages it depends on (their names
# change between Debian releases, so they are read from the package).
libs=$(dpkg-deb -f "$dir"/opensmtpd_*.deb Depends | tr ',' '\n' |
    sed -e 's/|.*//' -e 's/(.*)//' -e 's/[[:space:]]//g' | grep '^lib' || true)
missing=""
for p in $libs; do
	case "$(dpkg-query -W -f '${Status}' "$p" 2>/dev/null || true)" in
	*" installed") ;;
	*) missing="$missing $p" ;;
	esac
done
if [ -n "$missing" ]; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -q $missing >/dev/null || {
		apt-get update -q >/dev/null
		apt-get install -y -q $missing >/dev/null
	}
fi

# Debian's build runs as opensmtpd and opensmtpq, chrooted into
# /var/lib/opensmtpd/empty, and keeps its spool in /var/spool/smtpd
# (the test mounts a private one over it).
sh "$(dirname "$0")/users.sh" opensmtpd opensmtpq /var/lib/opensmtpd/empty
mkdir -p /var/spool/smtpd
