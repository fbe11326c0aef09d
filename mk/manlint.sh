#!/bin/sh
# mandoc -Tlint must say nothing at all about the man pages, style
# messages included. The pages are linted together so that their cross
# references resolve among themselves.
set -eu
out=$(mandoc -Tlint -W style "$@" 2>&1 || true)
if [ -n "$out" ]; then
	echo "$out" >&2
	exit 1
fi
echo "manlint: $# pages clean"
