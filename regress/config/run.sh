#!/bin/sh
# regress/config: the configuration language, end to end.
#
#	sh regress/config/run.sh /abs/path/to/smtpd
#
# valid/NAME.conf	must pass `smtpd -n -v` and print NAME.dump on stdout;
#			the dump, read back, must print itself again.
#			valid/NAME.args, if present, holds more arguments
#			(-D macro=value) for the first run.
# invalid/NAME.conf	must fail `smtpd -n` with exit status 1 and print
#			exactly NAME.err on stderr.
# fixtures/		tables and included files the configurations name.
# hostile inputs	generated here: each must fail cleanly, quickly, with
#			at least one FILE:LINE: message and no panic.
#
# Every file is copied into a scratch directory with @DIR@ replaced by its
# path, smtpd runs there on the configuration's base name, and the scratch
# path in its output is turned back into @DIR@ before comparing.
set -u

if [ $# -ne 1 ]; then
	echo "usage: sh $0 /path/to/smtpd" >&2
	exit 2
fi
smtpd=$1
case "$smtpd" in
/*) ;;
*) smtpd=$(pwd)/$smtpd ;;
esac
if [ ! -x "$smtpd" ]; then
	echo "config: $smtpd is not an executable" >&2
	exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/smtpd-regress-config-XXXXXXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 2' HUP INT TERM

# The scratch path as a sed pattern, and the two substitutions.
tmp_re=$(printf '%s\n' "$tmp" | sed 's/[][\\/.*^$|]/\\&/g')
to_tmp() { sed "s|@DIR@|$tmp|g" "$1"; }
from_tmp() { sed "s|$tmp_re|@DIR@|g" "$1"; }

# Fixtures, with @DIR@ replaced.
for f in "$here"/fixtures/*; do
	to_tmp "$f" >"$tmp/$(basename "$f")"
done

# The certificates and keys the configurations name.
mkcert() { # key cert subject
	openssl req -x509 -newkey rsa:2048 -nodes -days 3650 \
	    -keyout "$tmp/$1" -out "$tmp/$2" -subj "$3" >/dev/null 2>&1
}
if ! mkcert server.key server.crt /CN=mail.example.org ||
    ! mkcert mx2.key mx2.crt /CN=mx2.example.org ||
    ! openssl req -x509 -new -key "$tmp/server.key" -days 3650 \
	-out "$tmp/ca.crt" -subj "/CN=Regress CA" >/dev/null 2>&1; then
	echo "config: openssl could not make the test certificates" >&2
	exit 2
fi
chmod 600 "$tmp"/*.key

# db: tables: smtpd -n opens the database, which makemap (smtpctl by that
# name, next to smtpd) builds from the aliases fixture.
smtpctl=$(dirname "$smtpd")/smtpctl
if [ ! -x "$smtpctl" ]; then
	echo "config: $smtpctl is not an executable" >&2
	exit 2
fi
ln -s "$smtpctl" "$tmp/makemap"
if ! "$tmp/makemap" -t aliases -o "$tmp/aliases.db" "$tmp/aliases" >/dev/null; then
	echo "config: makemap could not build aliases.db" >&2
	exit 2
fi

# A table backend found in the libexec directory: table-regress.
mkdir "$tmp/libexec"
printf '#!/bin/sh\nexit 0\n' >"$tmp/libexec/table-regress"
chmod 755 "$tmp/libexec/table-regress"
SMTPD_LIBEXEC=$tmp/libexec
export SMTPD_LIBEXEC

# Nothing in the environment changes messages or output.
LC_ALL=C
export LC_ALL
unset RUST_BACKTRACE 2>/dev/null || true

tests=0
failed=0
failures=""

# The whole suite takes a few seconds; each smtpd run is bounded by
# timeout(1), and the suite by this budget, checked before each test.
budget=120
start=$(date +%s)
stopped=""
over_budget() {
	[ -n "$stopped" ] && return 0
	if [ $(($(date +%s) - start)) -gt "$budget" ]; then
		stopped=yes
		fail "budget" "the suite ran longer than $budget seconds; stopping"
		return 0
	fi
	return 1
}

ok() {
	tests=$((tests + 1))
	echo "ok $1"
}

fail() { # name reason [file to show]
	tests=$((tests + 1))
	failed=$((failed + 1))
	failures="$failures $1"
	echo "FAIL $1: $2"
	if [ $# -ge 3 ] && [ -s "$3" ]; then
		head -n 40 "$3" | sed 's/^/	/'
	fi
}

# run CONF [ARGS...]: smtpd in the scratch directory; stdout, stderr and
# the exit status land in $tmp/out, $tmp/err and $rc.
run() {
	conf=$1
	shift
	(cd "$tmp" && exec timeout 10 "$smtpd" "$@" -f "$conf") \
	    >"$tmp/out" 2>"$tmp/err"
	rc=$?
}

# A panic or a backtrace hint in stderr is always a failure.
panicked() {
	grep -q -e 'panicked' -e 'RUST_BACKTRACE' "$tmp/err"
}

for conf in "$here"/valid/*.conf; do
	[ -f "$conf" ] || continue
	over_budget && break
	name=$(basename "$conf" .conf)
	t=valid/$name
	if [ ! -f "$here/valid/$name.dump" ]; then
		fail "$t" "valid/$name.dump is missing"
		continue
	fi
	to_tmp "$conf" >"$tmp/$name.conf"
	args=""
	if [ -f "$here/valid/$name.args" ]; then
		args=$(cat "$here/valid/$name.args")
	fi
	# $args is split on purpose: -D macro=value pairs.
	# shellcheck disable=SC2086
	run "$name.conf" -n -v $args
	if [ "$rc" -ne 0 ] || panicked; then
		fail "$t" "exit status $rc" "$tmp/err"
		continue
	fi
	from_tmp "$tmp/out" >"$tmp/dump"
	if ! cmp -s "$tmp/dump" "$here/valid/$name.dump"; then
		diff -u "$here/valid/$name.dump" "$tmp/dump" >"$tmp/diff"
		fail "$t" "the dump differs from $name.dump" "$tmp/diff"
		continue
	fi
	# The round trip: the dump reads back as itself.
	cp "$tmp/out" "$tmp/$name.dump"
	cp "$tmp/out" "$tmp/first"
	run "$name.dump" -n -v
	if [ "$rc" -ne 0 ] || panicked; then
		fail "$t" "its dump does not read back (exit status $rc)" "$tmp/err"
		continue
	fi
	if ! cmp -s "$tmp/out" "$tmp/first"; then
		diff -u "$tmp/first" "$tmp/out" | from_tmp /dev/stdin >"$tmp/diff"
		fail "$t" "its dump, read back, prints a different dump" "$tmp/diff"
		continue
	fi
	rm -f "$tmp/$name.conf" "$tmp/$name.dump"
	ok "$t"
done

for conf in "$here"/invalid/*.conf; do
	[ -f "$conf" ] || continue
	over_budget && break
	name=$(basename "$conf" .conf)
	t=invalid/$name
	if [ ! -f "$here/invalid/$name.err" ]; then
		fail "$t" "invalid/$name.err is missing"
		continue
	fi
	to_tmp "$conf" >"$tmp/$name.conf"
	run "$name.conf" -n
	if panicked; then
		fail "$t" "smtpd panicked" "$tmp/err"
		continue
	fi
	if [ "$rc" -ne 1 ]; then
		fail "$t" "exit status $rc, expected 1" "$tmp/err"
		continue
	fi
	from_tmp "$tmp/err" >"$tmp/errs"
	if ! cmp -s "$tmp/errs" "$here/invalid/$name.err"; then
		diff -u "$here/invalid/$name.err" "$tmp/errs" >"$tmp/diff"
		fail "$t" "stderr differs from $name.err" "$tmp/diff"
		continue
	fi
	rm -f "$tmp/$name.conf"
	ok "$t"
done

# Hostile inputs, made here.
h=$tmp/hostile
mkdir "$h"
head -c 65536 /dev/urandom >"$h/random.conf"
head -c 4096 /dev/zero >"$h/nul.conf"
printf 'action "local" mbox\nmatch for local action "local\n' >"$h/quote.conf"
{
	printf 'table t { '
	head -c 1048576 /dev/zero | tr '\0' 'a'
	printf ' }\n'
} >"$h/longline.conf"
{
	printf 'table t '
	head -c 10000 /dev/zero | tr '\0' '{'
	printf '\n'
} >"$h/braces.conf"
awk 'BEGIN {
	split("} { < > ! = => , \" action match from for table listen on filter phase \\ $x 0 -1 99999999999999999999", w, " ")
	n = 0; for (k in w) n++
	seed = 1
	for (i = 1; i <= 2000; i++) {
		line = ""
		for (j = 0; j < 1 + i % 7; j++) {
			seed = (seed * 1103515245 + 12345) % 2147483648
			line = line w[1 + int(seed / 65536) % n] " "
		}
		print line
	}
}' >"$h/garbage.conf"

for f in random nul quote longline braces garbage; do
	over_budget && break
	t=hostile/$f
	run "hostile/$f.conf" -n
	if [ "$rc" -eq 124 ]; then
		fail "$t" "did not finish within 10 seconds"
	elif panicked; then
		fail "$t" "smtpd panicked" "$tmp/err"
	elif [ "$rc" -ne 1 ]; then
		fail "$t" "exit status $rc, expected 1" "$tmp/err"
	elif ! grep -q "^hostile/$f\.conf:[0-9][0-9]*: " "$tmp/err"; then
		fail "$t" "no FILE:LINE: message" "$tmp/err"
	else
		ok "$t"
	fi
done

if [ "$failed" -ne 0 ]; then
	echo "config: $failed of $tests tests failed:$failures"
	exit 1
fi
echo "config: all $tests tests passed"
