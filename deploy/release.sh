#!/usr/bin/env bash
# Builds the release archives that the krew manifest (deploy/krew/podcap.yaml) names, and the
# manifest to publish beside them, with each archive's URL and sha256.
#
#   deploy/release.sh --base-url URL [--out DIR] [--platform OS-ARCH=BINARY]...
#
# For each platform of the manifest (linux-amd64, linux-arm64) the archive
# podcap-merge-vVERSION-OS-ARCH.tar.gz holds the podcap-merge binary and README.md. The binary is
# built with `cargo build --release --locked --target TRIPLE` (the target's toolchain must be
# installed: rustup target add TRIPLE). With --platform OS-ARCH=BINARY, only the platforms given
# are packaged, from binaries already built. A platform left out is left out of the manifest
# too, said on stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

base_url="" out="target/release-archives"
declare -A given=()
while [ $# -gt 0 ]; do
  case "$1" in
    --base-url) base_url="${2:?--base-url needs a URL}"; shift 2 ;;
    --out) out="${2:?--out needs a directory}"; shift 2 ;;
    --platform) given["${2%%=*}"]="${2#*=}"; shift 2 ;;
    *) echo "deploy/release.sh: unknown argument $1 (see the header of this script)" >&2; exit 2 ;;
  esac
done
[ -n "$base_url" ] || { echo "deploy/release.sh: give --base-url URL (where the archives will be downloaded from)" >&2; exit 2; }

version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)"
manifest=deploy/krew/podcap.yaml
grep -q "^  version: v$version\$" "$manifest" || {
  echo "deploy/release.sh: $manifest does not name version v$version (Cargo.toml): update it" >&2; exit 1; }

triple() {
  case "$1" in
    linux-amd64) echo x86_64-unknown-linux-gnu ;;
    linux-arm64) echo aarch64-unknown-linux-gnu ;;
    *) return 1 ;;
  esac
}

mkdir -p "$out"
declare -A sha=()
for platform in $(sed -n 's|^ *uri: RELEASE_BASE_URL/podcap-merge-v[^-]*-\(.*\)\.tar\.gz$|\1|p' "$manifest"); do
  archive="podcap-merge-v$version-$platform.tar.gz"
  binary="${given[$platform]:-}"
  if [ -z "$binary" ] && [ ${#given[@]} -gt 0 ]; then
    echo "deploy/release.sh: $platform left out: no --platform $platform=BINARY given" >&2
    continue
  fi
  if [ -n "$binary" ] && [ ! -x "$binary" ]; then
    echo "deploy/release.sh: $binary (for $platform) is not an executable file" >&2
    exit 1
  fi
  if [ -z "$binary" ]; then
    t="$(triple "$platform")" || { echo "deploy/release.sh: no Rust target known for $platform" >&2; exit 1; }
    if cargo build --release --locked --target "$t" --bin podcap-merge >&2; then
      binary="target/$t/release/podcap-merge"
    else
      echo "deploy/release.sh: $platform left out: cargo could not build for $t" >&2
      continue
    fi
  fi
  stage="$(mktemp -d)"
  cp "$binary" "$stage/podcap-merge"
  chmod 755 "$stage/podcap-merge"
  cp README.md "$stage/README.md"
  tar -czf "$out/$archive" -C "$stage" podcap-merge README.md
  rm -rf "$stage"
  sha["$platform"]="$(sha256sum "$out/$archive" | cut -d' ' -f1)"
  echo "$out/$archive ${sha[$platform]}"
done
[ ${#sha[@]} -gt 0 ] || { echo "deploy/release.sh: no archive was built" >&2; exit 1; }

# the manifest: each platform block with its URL and sha256; blocks of platforms not built
# are left out (a block starts at "- selector:" and ends before the next one)
{
  block="" in_platforms=0 platform=""
  flush() {
    if [ -n "$block" ]; then
      if [ -n "$platform" ] && [ -n "${sha[$platform]:-}" ]; then
        printf '%s' "$block" | sed -e "s|RELEASE_BASE_URL|${base_url%/}|" -e "s|RELEASE_SHA256|${sha[$platform]}|"
      else
        echo "deploy/release.sh: ${platform:-a platform} left out of the manifest (no archive)" >&2
      fi
    fi
    block="" platform=""
  }
  while IFS= read -r line; do
    if [ "$in_platforms" -eq 1 ] && [[ "$line" == "    - selector:" ]]; then
      flush
    fi
    if [ "$in_platforms" -eq 1 ] && [[ "$line" == "    "* || "$line" == "" ]]; then
      block+="$line"$'\n'
      if [[ "$line" =~ uri:\ RELEASE_BASE_URL/podcap-merge-v[^-]*-(.*)\.tar\.gz$ ]]; then
        platform="${BASH_REMATCH[1]}"
      fi
      continue
    fi
    flush
    in_platforms=0
    [[ "$line" == "  platforms:" ]] && in_platforms=1
    [[ "$line" == "#"* ]] && continue
    printf '%s\n' "$line"
  done < "$manifest"
  flush
} > "$out/podcap.yaml"
echo "$out/podcap.yaml"
