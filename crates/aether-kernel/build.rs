//! Emits `aether_arm_dsp` on Arm cores with the DSP extension (ARMv7E-M: Cortex-M4/M7;
//! ARMv8-M Mainline), whose `smlad`/`sxtb16` the int8 matrix kernel uses. Stable Rust
//! does not expose that target feature to `cfg`, hence the target-name test.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(aether_arm_dsp)");
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.starts_with("thumbv7em") || target.starts_with("thumbv8m.main") {
        println!("cargo::rustc-cfg=aether_arm_dsp");
    }
}
