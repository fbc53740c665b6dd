#!/usr/bin/env bash
# Installs forge's dependencies and runs the whole test suite: format and
# lint checks, then every test in release mode, including the tests that
# build, boot and inspect real images.
#
# Run as root on Debian 12 with a Rust toolchain. The image tests build each
# example image once per run. Under TCG (no KVM) on a 2-core host the
# image tests took about 26 min.
set -euo pipefail

cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "test.sh: run as root: forge build and the package installation need it" >&2
  exit 1
fi

# A toolchain installed with rustup puts cargo under ~/.cargo/bin, which a
# non-login shell may not have on PATH.
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "test.sh: cargo not found; install a Rust toolchain first" >&2
  exit 1
fi

scripts/install-deps.sh

# libguestfs starts its appliance with KVM when it can. On nested
# virtualization KVM may pass a probe and still hang, so use TCG unless the
# caller chose otherwise.
export LIBGUESTFS_BACKEND_SETTINGS="${LIBGUESTFS_BACKEND_SETTINGS:-force_tcg}"

echo "test.sh: cargo fmt --check"
cargo fmt --check

if cargo clippy --version >/dev/null 2>&1; then
  echo "test.sh: cargo clippy"
  cargo clippy --all-targets -- -D warnings
else
  echo "test.sh: clippy is not installed; skipped the lint check"
fi

# Release mode: the image tests run the forge binary of the test profile,
# and a debug build hashes a 30 GiB disk many times slower.
echo "test.sh: cargo test --release"
cargo test --release -- --test-threads=2
