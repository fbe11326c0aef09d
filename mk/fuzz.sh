#!/bin/sh
# make fuzz [FUZZ_TARGET=name]: runs a cargo-fuzz target (default
# parse_config; also unpack_dns, envelope, smtp_command and mailaddr)
# for FUZZ_SECONDS (default 300) on the nightly toolchain. Installs
# cargo-fuzz when it is missing.
#
# Each target's corpus, fuzz/corpus/<target>, is seeded on every run:
# parse_config with the regress configurations, every target with its
# committed inputs under fuzz/seeds/<target>/.
set -eu
target=${1:-parse_config}
seconds=${FUZZ_SECONDS:-300}
case $target in
parse_config|unpack_dns|envelope|smtp_command|mailaddr) ;;
*)	echo "fuzz.sh: unknown target $target" >&2; exit 1 ;;
esac
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
	cargo install cargo-fuzz
fi
corpus=fuzz/corpus/$target
mkdir -p "$corpus"
if [ "$target" = parse_config ]; then
	for f in regress/config/valid/*.conf regress/config/invalid/*.conf; do
		[ -f "$f" ] && cp "$f" "$corpus/"
	done
fi
for f in fuzz/seeds/"$target"/*; do
	[ -f "$f" ] && cp "$f" "$corpus/"
done
cargo +nightly fuzz run "$target" "$corpus" -- \
    -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048
