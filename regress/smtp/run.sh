#!/bin/sh
# regress/smtp: SMTP dialogues with a running smtpd (see README).
#
#	sh regress/smtp/run.sh /abs/path/to/smtpd [SCENARIO-GLOB...]
#	sh regress/smtp/run.sh --ref /work/ref-build/inst/sbin/smtpd
#
# One ok/FAIL line per scenario; exits 1 when any fails, 0 when all pass
# or when the smtpd has no SMTP server yet (it says so).  Must run as
# root: smtpd does.
set -u
here=$(cd "$(dirname "$0")" && pwd)

python=""
for p in python3 /usr/bin/python3; do
	if command -v "$p" >/dev/null 2>&1; then
		python=$p
		break
	fi
done
if [ -z "$python" ]; then
	echo "regress/smtp: python3 is not installed (mk/deps.sh installs it)" >&2
	exit 1
fi

LC_ALL=C
export LC_ALL
exec "$python" "$here/smtptest.py" "$@"
