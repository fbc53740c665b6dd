#!/usr/bin/env bash
# Installs forge's dependencies, builds forge in release mode and builds the
# example nginx image into out/. Run as root on Debian 12 with a Rust
# toolchain.
set -euo pipefail

cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "build-example.sh: run as root: forge build needs it" >&2
  exit 1
fi

if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi

scripts/install-deps.sh
export LIBGUESTFS_BACKEND_SETTINGS="${LIBGUESTFS_BACKEND_SETTINGS:-force_tcg}"

cargo build --release
target/release/forge build recipes/debian-12-nginx.toml --output out
