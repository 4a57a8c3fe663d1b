#!/usr/bin/env bash
# Code size the firmware pays for libaether_ffi.a: builds the no_std static library for
# TARGET, links only what the five ruv_temporal_* entry points reach (rust-lld,
# --gc-sections; the allocator hooks and libc's memcpy/memset stay unresolved: the
# firmware provides them) and prints the section sizes.
#
#   crates/aether-ffi/scripts/code_size.sh riscv32imac-unknown-none-elf
#   crates/aether-ffi/scripts/code_size.sh thumbv7em-none-eabihf
#   crates/aether-ffi/scripts/code_size.sh host     # x86_64 no_std proxy (panic=abort)
#   TOP=15 crates/aether-ffi/scripts/code_size.sh thumbv7em-none-eabihf   # + largest symbols
# The targets need their rust-std: rustup target add riscv32imac-unknown-none-elf thumbv7em-none-eabihf
set -euo pipefail
cd "$(dirname "$0")/../../.."
target="${1:?usage: code_size.sh TARGET|host}"
tdir="${CARGO_TARGET_DIR:-target}"
if [ "$target" = host ]; then
  tdir="$tdir/nostd-host"
  RUSTFLAGS="-C panic=abort" CARGO_TARGET_DIR="$tdir" \
    cargo build -q -p aether-ffi --release --no-default-features --lib
  lib="$tdir/release/libaether_ffi.a"
else
  if ! rustc --print target-libdir --target "$target" >/dev/null 2>&1 ||
     [ ! -d "$(rustc --print target-libdir --target "$target")" ]; then
    echo "rust-std for $target is not installed: rustup target add $target" >&2
    exit 1
  fi
  cargo build -q -p aether-ffi --release --no-default-features --lib --target "$target"
  lib="$tdir/$target/release/libaether_ffi.a"
fi
sysroot="$(rustc --print sysroot)"
lld="$(find "$sysroot/lib/rustlib" -name rust-lld -type f | head -n 1)"
out="$(mktemp -d)"
syms=(ruv_temporal_init ruv_temporal_push ruv_temporal_classify ruv_temporal_destroy
      ruv_temporal_kernel_self_test)
args=()
for s in "${syms[@]}"; do args+=(--undefined="$s"); done
"$lld" -flavor gnu --gc-sections --entry=ruv_temporal_init "${args[@]}" \
  --unresolved-symbols=ignore-all -o "$out/linked.elf" "$lib"
echo "static library: $(stat -c %s "$lib") bytes ($lib)"
echo "linked (entry points only, --gc-sections):"
llvm-size -A "$out/linked.elf" | awk '$1 ~ /^\.(text|rodata|data|bss|sdata|sbss|srodata)/ {print "  " $1, $2}'
llvm-size "$out/linked.elf" | tail -n 1 | awk '{print "  total text " $1 ", data " $2 ", bss " $3}'
if [ -n "${TOP:-}" ]; then
  echo "largest symbols (bytes, demangled):"
  llvm-nm --size-sort --reverse-sort --demangle -S --radix=d "$out/linked.elf" | head -n "$TOP" |
    awk '{printf "  %7d", $2 + 0; for (i = 4; i <= NF; i++) printf " %s", $i; printf "\n"}'
fi
rm -rf "$out"
