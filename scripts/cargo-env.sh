# Sourced by the other scripts: finds cargo and shares one build directory
# outside the clone, so fresh clones (and CI) do not rebuild from scratch.
if ! command -v cargo >/dev/null && [ -f "$HOME/.cargo/env" ]; then . "$HOME/.cargo/env"; fi
if ! command -v cargo >/dev/null; then
  echo "cargo not found: install Rust >= 1.94 with rustup (https://rustup.rs), then re-run." >&2
  exit 1
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/concert-target}"
