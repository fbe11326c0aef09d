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
# The delivery helpers, installed in libexecdir.
helpers="lmtp local maildir mboxfile mda"
# The other programs smtpd and smtpctl run from libexecdir: encrypt
# (smtpctl encrypt).
libexec="encrypt"
man=$destdir$mandir
# smtpctl's other names, as OpenSMTPD installs them: the mail submission
# program (sendmail.8), makemap and newaliases; symbolic links, as Debian
# installs OpenSMTPD's (a hard link would keep the old binary when
# install replaces smtpctl).
links="sendmail send-mail mailq makemap newaliases"
# The manual pages besides the helpers'.
man5="smtpd.conf.5 aliases.5 forward.5 table.5"
man8="smtpd.8 smtpctl.8 makemap.8 newaliases.8 sendmail.8"

if [ "$mode" = uninstall ]; then
	rm -f "$sbin/smtpd" "$sbin/smtpctl"
	for l in $links; do
		rm -f "$sbin/$l"
	done
	for p in $man5; do
		rm -f "$man/man5/$p"
	done
	for p in $man8; do
		rm -f "$man/man8/$p"
	done
	for h in $helpers; do
		rm -f "$destdir$libexecdir/mail.$h" "$man/man8/mail.$h.8"
	done
	for p in $libexec; do
		rm -f "$destdir$libexecdir/$p"
	done
	rmdir "$destdir$libexecdir" 2>/dev/null || true
	exit 0
fi

install -d -m 755 "$sbin" "$destdir$libexecdir" "$man/man5" "$man/man8"
install -m 555 "$target/smtpd" "$sbin/smtpd"
install -m 555 "$target/smtpctl" "$sbin/smtpctl"
for l in $links; do
	ln -sf smtpctl "$sbin/$l"
done
for p in $man5; do
	install -m 444 "$p" "$man/man5/$p"
done
for p in $man8; do
	install -m 444 "$p" "$man/man8/$p"
done
# cargo builds mail-NAME (no '.' in a crate name); smtpd runs mail.NAME.
for h in $helpers; do
	install -m 555 "$target/mail-$h" "$destdir$libexecdir/mail.$h"
	install -m 444 "mail.$h.8" "$man/man8/mail.$h.8"
done
for p in $libexec; do
	install -m 555 "$target/$p" "$destdir$libexecdir/$p"
done

[ -z "$destdir" ] || exit 0

# smtpctl runs set-group-ID to the queue user's group, as OpenSMTPD's:
# only that group may write in the spool's offline directory, where
# sendmail leaves mail while the daemon is down; sendmail gives the
# group up once its file is made.
setgid_smtpctl() {
	chgrp "$quser" "$sbin/smtpctl"
	chmod 2555 "$sbin/smtpctl"
}

case "$(uname -s)" in
OpenBSD)
	setgid_smtpctl
	exit 0
	;;
esac

sh "$(dirname "$0")/users.sh" "$user" "$quser" "$chrootdir"
setgid_smtpctl
# mail.local runs as the recipient and locks the mailbox with a
# USER.lock file in /var/mail, which Debian keeps writable by the group
# mail only: like Debian's own mail.local, it runs set-group-ID to the
# directory's group. (OpenBSD's /var/mail is writable by all, sticky.)
mailgroup=$(stat -c %G /var/mail 2>/dev/null || true)
case "$mailgroup" in
"" | root) ;;
*)
	chgrp "$mailgroup" "$destdir$libexecdir/mail.local"
	chmod 2555 "$destdir$libexecdir/mail.local"
	;;
esac
# OpenSMTPD's spool root: root-owned, traversable, not listable.
if [ ! -d "$spooldir" ]; then
	install -d -o root -m 711 "$spooldir"
fi
