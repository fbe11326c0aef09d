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
	echo "deps: not a Debian system: install by hand libtls (LibreSSL), libclang, pkg-config, mandoc, bmake, the PAM headers" >&2
	exit 0
fi

# libtls-dev: libtls-sys; libclang-dev: its bindgen; mandoc: man page lint;
# bmake: the Makefile is tested under BSD make too; openssl: test keys;
# libpam0g-dev: libpam.so to link the parent's password checks against;
# netbase: /etc/services, for "port smtps" and friends.
packages="libtls-dev libclang-dev pkg-config mandoc bmake openssl libpam0g-dev netbase"

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
apt-get install -y -q $missing >/dev/null || {
	apt-get update -q >/dev/null
	apt-get install -y -q $missing >/dev/null
}
[ "$(id -u)" -eq 0 ] && sh "$(dirname "$0")/users.sh" "$@"
exit 0
