//! Picks the linker script of the target and rebuilds when the embedded data changes.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    let target = std::env::var("TARGET").unwrap();
    let script = if target.starts_with("thumb") {
        "link-arm.x"
    } else {
        "link-riscv.x"
    };
    println!("cargo:rustc-link-arg=-T{dir}/{script}");
    println!("cargo:rerun-if-changed={script}");
    for f in [
        "../work/frames.bin",
        "../fixtures/default.rvne",
        "../fixtures/default.int8.rvne",
    ] {
        println!("cargo:rerun-if-changed={f}");
    }
    println!("cargo:rustc-env=MCU_BENCH_TARGET={target}");
}
