#!/bin/sh
# make fuzz: runs the configuration parser's fuzz target for FUZZ_SECONDS
# (default 300) with cargo-fuzz on the nightly toolchain, seeded with the
# regress corpus. Installs cargo-fuzz when it is missing.
set -eu
seconds=${FUZZ_SECONDS:-300}
if ! cargo fuzz --version >/dev/null 2>&1; then
	cargo install cargo-fuzz
fi
corpus=fuzz/corpus/parse_config
mkdir -p "$corpus"
for f in regress/config/valid/*.conf regress/config/invalid/*.conf; do
	[ -f "$f" ] && cp "$f" "$corpus/"
done
cargo +nightly fuzz run parse_config "$corpus" -- \
    -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048
