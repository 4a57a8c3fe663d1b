#!/usr/bin/env bash
# The microcontroller benchmark (tools/mcu-bench/README.md): builds the bare-metal
# firmware around aether-ffi for three targets, runs it under QEMU with an
# instruction-counting plugin (-icount shift=0), checks the node's outputs equal the
# host's and every count stays within 5 % of budget.txt, and prints the table.
#
#   tools/mcu-bench/run.sh                  # measure and check
#   tools/mcu-bench/run.sh --write-budget   # measure and rewrite budget.txt
#
# Needs: qemu-system-arm, qemu-system-riscv32 (Debian: qemu-system-arm
# qemu-system-misc), a C compiler for the plugin, the three Rust targets. The recording
# is a real ESP32-C3 capture from ../shared/data (AETHER_DATA overrides) when present,
# else a simulated one.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="$here/work"
data="${AETHER_DATA:-$root/../shared/data}"
mode="${1:-}"

need() { command -v "$1" >/dev/null || { echo "mcu-bench: $1 missing (apt-get install -y qemu-system-arm qemu-system-misc gcc)" >&2; exit 1; }; }
need qemu-system-arm
need qemu-system-riscv32
need cc
targets=(riscv32imac-unknown-none-elf thumbv7em-none-eabihf riscv32imafc-unknown-none-elf)
rustup target add "${targets[@]}" >/dev/null 2>&1 || true

mkdir -p "$work"
cc -shared -fPIC -O2 -Wall -Wextra -o "$work/icount.so" "$here/plugin/icount.c"
cargo build --release -q -p aether-mcu-bench --manifest-path "$root/Cargo.toml"
host="$root/target/release/aether-mcu-bench"
"$host" prepare "$work" "$data"
"$host" expect "$work" "$here/fixtures" >/dev/null

for t in "${targets[@]}"; do
  (cd "$here/fw" && cargo build --release -q --target "$t" --target-dir "$root/target/mcu-bench")
  cp "$root/target/mcu-bench/$t/release/aether-mcu-bench-fw" "$work/$t.elf"
  case "$t" in
    thumb*) qemu=(qemu-system-arm -machine mps2-an386 -cpu cortex-m4) ;;
    *) qemu=(qemu-system-riscv32 -machine virt -bios none) ;;
  esac
  timeout 300 "${qemu[@]}" -nographic -icount shift=0 \
    -semihosting-config enable=on,target=native \
    -plugin "$work/icount.so" -d plugin -D "$work/$t.plugin" \
    -kernel "$work/$t.elf" >"$work/$t.out" 2>&1 || { echo "mcu-bench: $t run failed:"; cat "$work/$t.out"; exit 1; }
done

echo "QEMU: $(qemu-system-arm --version | head -1); rustc: $(rustc --version)"
if [ "$mode" = "--write-budget" ]; then
  "$host" report "$work" "$here/budget.txt" --write-budget
else
  "$host" report "$work" "$here/budget.txt"
fi
