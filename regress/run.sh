#!/bin/sh
# The end-to-end suite: runs every regress/*/run.sh with the smtpd binary
# to test, and fails if any of them fails.
set -u
smtpd=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
top=$(cd "$(dirname "$0")" && pwd)
failed=""
for suite in "$top"/*/run.sh; do
	name=$(basename "$(dirname "$suite")")
	echo "==> regress/$name"
	if ! sh "$suite" "$smtpd"; then
		failed="$failed $name"
	fi
done
if [ -n "$failed" ]; then
	echo "regress: FAILED:$failed" >&2
	exit 1
fi
echo "regress: all suites passed"
