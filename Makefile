# smtpd: a port of OpenSMTPD to Rust.
#
# Thin targets over cargo. Runs under BSD make (OpenBSD's make, Debian's
# bmake) and GNU make alike: no conditionals, no pattern rules, only
# ?= assignments and shell in recipes.

PREFIX ?=	/usr/local
DESTDIR ?=
SBINDIR ?=	$(PREFIX)/sbin
LIBEXECDIR ?=	$(PREFIX)/libexec/smtpd
# Empty: $(PREFIX)/man on OpenBSD, $(PREFIX)/share/man elsewhere.
MANDIR ?=
SYSCONFDIR ?=	/etc/mail
SPOOLDIR ?=	/var/spool/smtpd
SOCKDIR ?=	/var/run
CHROOTDIR ?=	/var/empty
SMTPD_USER ?=	_smtpd
SMTPD_QUEUE_USER ?= _smtpq

CARGO ?=	cargo
PROFILE ?=	release
SMTPD ?=	target/$(PROFILE)/smtpd
FUZZ_TARGET ?=	parse_config

# Build-time paths, read by src/pathnames.rs with option_env!().
BUILDENV =	SMTPD_BUILD_CONF_FILE=$(SYSCONFDIR)/smtpd.conf \
		SMTPD_BUILD_MAILNAME_FILE=$(SYSCONFDIR)/mailname \
		SMTPD_BUILD_PATH_SPOOL=$(SPOOLDIR) \
		SMTPD_BUILD_SOCKET=$(SOCKDIR)/smtpd.sock \
		SMTPD_BUILD_PATH_LIBEXEC=$(LIBEXECDIR) \
		SMTPD_BUILD_PATH_SMTPCTL=$(SBINDIR)/smtpctl \
		SMTPD_BUILD_PATH_CHROOT=$(CHROOTDIR) \
		SMTPD_BUILD_USER=$(SMTPD_USER) \
		SMTPD_BUILD_QUEUE_USER=$(SMTPD_QUEUE_USER)

MAN5 =		smtpd.conf.5 aliases.5 forward.5 table.5
MAN8 =		smtpd.8 smtpctl.8 mail.lmtp.8 mail.local.8 mail.maildir.8 mail.mboxfile.8 \
		mail.mda.8 makemap.8 newaliases.8 sendmail.8
MANS =		$(MAN5) $(MAN8)

all: deps build

deps:
	@sh mk/deps.sh $(SMTPD_USER) $(SMTPD_QUEUE_USER) $(CHROOTDIR)

# The delivery helpers are cargo's mail-NAME (no '.' in a crate name);
# smtpd runs them from its libexec directory as mail.NAME.
HELPERS =	lmtp local maildir mboxfile mda

build:
	$(BUILDENV) $(CARGO) build --locked --profile $(PROFILE)
	@for h in $(HELPERS); do \
		ln -f target/$(PROFILE)/mail-$$h target/$(PROFILE)/mail.$$h; \
	done

# Every test: unit and integration tests, the regress suite, lints.
# testusers: the local users the delivery tests deliver to (mk/testusers.sh).
test: deps testusers build
	$(BUILDENV) $(CARGO) test --locked
	$(MAKE) regress
	$(MAKE) lint

testusers:
	@sh mk/testusers.sh

regress: build
	@sh regress/run.sh $(SMTPD)

lint:
	$(BUILDENV) $(CARGO) clippy --locked --all-targets -- -D warnings
	$(CARGO) fmt --check
	@sh mk/manlint.sh $(MANS)

bench: build
	@$(BUILDENV) sh mk/bench.sh $(SMTPD)

# make fuzz FUZZ_TARGET=unpack_dns FUZZ_SECONDS=600 (see mk/fuzz.sh).
fuzz:
	@sh mk/fuzz.sh $(FUZZ_TARGET)

run: all
	@sh mk/run.sh $(SMTPD)

install: all
	@sh mk/install.sh install "$(DESTDIR)" "$(SBINDIR)" "$(LIBEXECDIR)" \
	    "$(MANDIR)" "$(PREFIX)" "$(SPOOLDIR)" "$(CHROOTDIR)" \
	    "$(SMTPD_USER)" "$(SMTPD_QUEUE_USER)" target/$(PROFILE)

uninstall:
	@sh mk/install.sh uninstall "$(DESTDIR)" "$(SBINDIR)" "$(LIBEXECDIR)" \
	    "$(MANDIR)" "$(PREFIX)" "$(SPOOLDIR)" "$(CHROOTDIR)" \
	    "$(SMTPD_USER)" "$(SMTPD_QUEUE_USER)" target/$(PROFILE)

clean:
	$(CARGO) clean
	rm -rf run fuzz/target

.PHONY: all deps testusers build test regress lint bench fuzz run install uninstall clean
