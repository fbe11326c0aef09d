#!/bin/sh
# mandoc -Tlint must say nothing at all about the man pages, style
# messages included. Cross references resolve first among the pages
# themselves, through a private manual tree indexed by makewhatis(8)
# that comes before the system's: another package's page of the same
# name (postfix has a smtpd(8)) would otherwise be found, and lint would
# complain about the system's index rather than about our pages.
set -eu
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
for page in "$@"; do
	section=${page##*.}
	mkdir -p "$tree/man$section"
	cp "$page" "$tree/man$section/"
done
system=$(manpath 2>/dev/null || echo /usr/share/man)
makewhatis "$tree"
out=$(MANPATH="$tree:$system" mandoc -Tlint -W style "$@" 2>&1 || true)
if [ -n "$out" ]; then
	echo "$out" >&2
	exit 1
fi
echo "manlint: $# pages clean"
