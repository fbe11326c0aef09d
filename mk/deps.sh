#!/bin/sh
# Installs the Debian packages the build and the tests need, when they are
# missing. Does nothing on OpenBSD, whose base system has them all.
set -eu

case "$(uname -s)" in
OpenBSD) exit 0 ;;
esac

if ! command -v cargo >/dev/null 2>&1; then
	echo "deps: cargo is not installed; install Rust (rustup or the rustc and cargo packages) first" >&2
	exit 1
fi

if ! command -v dpkg-query >/dev/null 2>&1; then
	echo "deps: not a Debian system: install by hand libtls (LibreSSL), libclang, pkg-config, mandoc, bmake, the PAM headers, Berkeley DB 5.3" >&2
	exit 0
fi

# Debian's OpenSMTPD 6.8, whose spool tests/queue_compat.rs reads (root).
[ "$(id -u)" -ne 0 ] || sh "$(dirname "$0")/opensmtpd-ref.sh"

# libtls-dev: libtls-sys; libclang-dev: its bindgen; mandoc: man page lint;
# bmake: the Makefile is tested under BSD make too; openssl: test keys;
# libpam0g-dev: libpam.so to link the parent's password checks against;
# netbase: /etc/services, for "port smtps" and friends.
# nsd: the DNS server the resolver tests run on loopback (tests/common/dns.rs);
# the tests start their own, so the system's is kept from starting (below).
# python3, swaks: regress/smtp (its runner, and a real client to talk to smtpd).
# bsd-mailx: Debian's mail(1), a real mail reader that tests/sendmail.rs
# sends through our sendmail (its sendmail variable).
# dovecot-core, dovecot-lmtpd: the LMTP server tests/mail_lmtp.rs runs
# mail.lmtp against; the tests start their own, so the system's is kept
# from starting as nsd's is.
# libdb5.3-dev: Berkeley DB 5.3, whose dbopen(3) compatibility entry point
# (__db185_open in libdb-5.3.so, see <db_185.h>) makemap and the db table
# backend use, as Debian's OpenSMTPD does (src/sys/db.rs).
# libcrypt-dev: libxcrypt's libcrypt.so, for the password hashes of
# smtpctl encrypt and AUTH (src/sys/crypt.rs).
packages="libcrypt-dev libtls-dev libclang-dev pkg-config mandoc bmake openssl libpam0g-dev netbase nsd python3 swaks dovecot-core dovecot-lmtpd libdb5.3-dev bsd-mailx"

missing=""
for p in $packages; do
	status=$(dpkg-query -W -f '${Status}' "$p" 2>/dev/null || true)
	case "$status" in
	*" installed") ;;
	*) missing="$missing $p" ;;
	esac
done
if [ -z "$missing" ]; then
	[ "$(id -u)" -eq 0 ] && sh "$(dirname "$0")/users.sh" "$@"
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "deps: missing Debian packages:$missing; run 'make deps' as root or apt-get install them" >&2
	exit 1
fi
echo "deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive

# nsd's postinst starts the system's nsd (invoke-rc.d, or systemctl), which
# would then hold port 53 on every address; dovecot's would serve IMAP and
# POP3. The tests never use those ports, but servers nobody asked for
# have no business running: while apt installs, a policy-rc.d (see
# invoke-rc.d(8)) forbids starting services, unless the system already
# has one; afterwards the services are disabled.
services=""
case " $missing " in
*" nsd "*) services="$services nsd" ;;
esac
case " $missing " in
*" dovecot-core "*) services="$services dovecot" ;;
esac
policy=/usr/sbin/policy-rc.d
if [ -n "$services" ] && [ ! -e "$policy" ]; then
	trap 'rm -f "$policy"' EXIT
	printf '#!/bin/sh\n# mk/deps.sh: no service starts while it installs packages.\nexit 101\n' >"$policy"
	chmod 755 "$policy"
fi

apt-get install -y -q $missing >/dev/null || {
	apt-get update -q >/dev/null
	apt-get install -y -q $missing >/dev/null
}

for service in $services; do
	if [ -d /run/systemd/system ]; then
		systemctl disable --now "$service.service" >/dev/null 2>&1 || true
	else
		update-rc.d "$service" disable >/dev/null 2>&1 || true
		# Not through invoke-rc.d, which asks policy-rc.d first.
		if [ -x "/etc/init.d/$service" ]; then
			"/etc/init.d/$service" stop >/dev/null 2>&1 || true
		fi
	fi
done
[ "$(id -u)" -eq 0 ] && sh "$(dirname "$0")/users.sh" "$@"
exit 0
