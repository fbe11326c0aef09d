#!/bin/sh
# make install / make uninstall. Installs the binaries and man pages under
# DESTDIR; when installing to the live system (empty DESTDIR) on Linux,
# also creates OpenSMTPD's users and spool directory if they are missing.
# Uninstall removes what install copied, never the users or the spool:
# that is where the mail is.
set -eu
mode=$1 destdir=$2 sbindir=$3 libexecdir=$4 mandir=$5 prefix=$6
spooldir=$7 chrootdir=$8 user=$9
shift 9
quser=$1 target=$2

if [ -z "$mandir" ]; then
	case "$(uname -s)" in
	OpenBSD) mandir=$prefix/man ;;
	*) mandir=$prefix/share/man ;;
	esac
fi
sbin=$destdir$sbindir
man=$destdir$mandir

if [ "$mode" = uninstall ]; then
	rm -f "$sbin/smtpd" "$sbin/smtpctl"
	rm -f "$destdir$libexecdir/mail.lmtp" "$destdir$libexecdir/mail.mda"
	rm -f "$man/man5/smtpd.conf.5" "$man/man8/smtpd.8"
	rm -f "$man/man8/mail.lmtp.8" "$man/man8/mail.mda.8"
	rmdir "$destdir$libexecdir" 2>/dev/null || true
	exit 0
fi

install -d -m 755 "$sbin" "$destdir$libexecdir" "$man/man5" "$man/man8"
install -m 555 "$target/smtpd" "$sbin/smtpd"
install -m 555 "$target/smtpctl" "$sbin/smtpctl"
install -m 444 smtpd.conf.5 "$man/man5/smtpd.conf.5"
install -m 444 smtpd.8 "$man/man8/smtpd.8"
# The delivery helpers, under OpenSMTPD's names (a cargo bin's name cannot
# hold a dot).
install -m 555 "$target/mail-lmtp" "$destdir$libexecdir/mail.lmtp"
install -m 555 "$target/mail-mda" "$destdir$libexecdir/mail.mda"
install -m 444 mail.lmtp.8 "$man/man8/mail.lmtp.8"
install -m 444 mail.mda.8 "$man/man8/mail.mda.8"

[ -z "$destdir" ] || exit 0
case "$(uname -s)" in
OpenBSD) exit 0 ;;
esac

sh "$(dirname "$0")/users.sh" "$user" "$quser" "$chrootdir"
# OpenSMTPD's spool root: root-owned, traversable, not listable.
if [ ! -d "$spooldir" ]; then
	install -d -o root -m 711 "$spooldir"
fi
