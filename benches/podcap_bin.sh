# Sourced by the benchmark scripts once they are in the repository's root (`$root`): sets
# `bin`, the podcap-merge to measure: $PODCAP_BIN when given (`cargo bench` sets it to the
# binary it has just built), else a release build of this checkout.
if [[ -n "${PODCAP_BIN:-}" ]]; then
    bin="$PODCAP_BIN"
else
    echo "== cargo build --release" >&2
    cargo build --release --quiet --bin podcap-merge
    bin="$root/target/release/podcap-merge"
fi
[[ -x "$bin" ]] || { echo "not executable: $bin" >&2; exit 2; }
