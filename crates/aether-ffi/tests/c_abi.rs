//! The C test (`tests/c/test_ruv_temporal.c`) built with the system C compiler against
//! `libaether_ffi.a` and `include/ruv_temporal.h`, run on a seeded and trained-like blobs
//! with logits expected from the Rust forward.
//!
//! The static library is built by a nested `cargo build -p aether-ffi --lib` into its own
//! target directory next to this test's (`<target>/aether-ffi-ctest`): `cargo test` does
//! not put the crate's staticlib at a known path. `CC` overrides the compiler (default
//! `cc`). With `AETHER_FFI_VALGRIND=1` the C program runs under
//! `valgrind --error-exitcode=1 --leak-check=full`.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use aether_head::TemporalHead;

const MANIFEST: &str = env!("CARGO_MANIFEST_DIR");

fn cc() -> String {
    std::env::var("CC").unwrap_or_else(|_| "cc".into())
}

/// `<target>` of this test binary (`<target>/<profile>/deps/c_abi-…`).
fn target_root() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).unwrap().to_path_buf()
}

/// Builds the static library once per test process and returns its path.
fn staticlib() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let dir = target_root().join("aether-ffi-ctest");
        // The cargo running this test (set at run time by `cargo test`, and at compile time).
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").into());
        let status = Command::new(cargo)
            .args(["build", "-p", "aether-ffi", "--lib", "--target-dir"])
            .arg(&dir)
            .current_dir(MANIFEST)
            .env_remove("CARGO_TARGET_DIR")
            .status()
            .expect("run cargo build for the static library");
        assert!(status.success(), "cargo build -p aether-ffi --lib failed");
        let lib = dir.join("debug").join("libaether_ffi.a");
        assert!(lib.exists(), "{} missing", lib.display());
        lib
    })
}

/// Compiles the C test program once and returns its path.
fn c_program() -> &'static Path {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| {
        let lib = staticlib();
        let out = lib.parent().unwrap().join("test_ruv_temporal");
        let status = Command::new(cc())
            .args([
                "-std=c99",
                "-pedantic",
                "-Wall",
                "-Wextra",
                "-Werror",
                "-O1",
                "-g",
            ])
            .arg("-I")
            .arg(Path::new(MANIFEST).join("include"))
            .arg(Path::new(MANIFEST).join("tests/c/test_ruv_temporal.c"))
            .arg(lib)
            .args(["-lpthread", "-ldl", "-lm", "-o"])
            .arg(&out)
            .status()
            .expect("run the C compiler");
        assert!(
            status.success(),
            "compiling tests/c/test_ruv_temporal.c failed"
        );
        out
    })
}

/// Writes the inputs of one case and runs the C program on them.
fn run_case(name: &str, blob: &[u8], f: usize, c: usize, window: usize, n_frames: usize) {
    let exe = c_program();
    let dir = tempfile::tempdir().unwrap();
    let frames = common::frames(n_frames, f, name.len() as u64 * 7919);
    // f32 blobs: the float head's forward; int8 blobs: the integer head's, exactly.
    let logits_of = |frames: &[f32]| -> Vec<f32> {
        match TemporalHead::from_blob(blob) {
            Ok(head) => head.forward(frames).unwrap(),
            Err(_) => {
                let q = aether_quant::QuantHead::from_blob(blob).unwrap();
                let mut out = vec![0.0f32; c];
                q.logits_to_f32(&q.forward(frames).unwrap(), &mut out);
                out
            }
        }
    };
    // Checkpoints: before and after the ring fills, after it wrapped several times.
    let mut at: Vec<usize> = vec![
        1,
        2,
        3,
        window / 2,
        window - 1,
        window,
        window + 1,
        2 * window + 3,
        n_frames - 1,
        n_frames,
    ];
    at.retain(|&a| a >= 1 && a <= n_frames);
    at.sort_unstable();
    at.dedup();
    let mut expected = Vec::new();
    for &a in &at {
        let lo = a.saturating_sub(window);
        let logits = logits_of(&frames[lo * f..a * f]);
        expected.extend_from_slice(&(a as u32).to_le_bytes());
        for l in logits {
            expected.extend_from_slice(&l.to_le_bytes());
        }
    }
    let raw: Vec<u8> = frames.iter().flat_map(|v| v.to_le_bytes()).collect();
    let (bp, fp, ep) = (
        dir.path().join("model.rvne"),
        dir.path().join("frames.f32"),
        dir.path().join("expected.bin"),
    );
    fs::write(&bp, blob).unwrap();
    fs::write(&fp, raw).unwrap();
    fs::write(&ep, expected).unwrap();
    let mut cmd = if std::env::var("AETHER_FFI_VALGRIND").is_ok_and(|v| v == "1") {
        let mut v = Command::new("valgrind");
        v.args([
            "--error-exitcode=1",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite,indirect,possible",
            "-q",
        ])
        .arg(exe);
        v
    } else {
        Command::new(exe)
    };
    let out = cmd
        .arg(&bp)
        .args([f.to_string(), c.to_string(), window.to_string()])
        .arg(&fp)
        .arg(&ep)
        .output()
        .expect("run the C test program");
    assert!(
        out.status.success(),
        "{name}: C test failed ({})\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("ok: {} checkpoints", at.len())),
        "{name}: {stdout}"
    );
}

#[test]
fn c_program_on_the_seeded_v1_blob() {
    run_case("seeded-v1", &common::seeded_v1(), 16, 4, 48, 130);
}

#[test]
fn c_program_on_the_seeded_v1_f16_blob() {
    run_case("seeded-v1-f16", &common::seeded_v1_f16(), 16, 4, 20, 47);
}

#[test]
fn c_program_on_trained_like_v2_blobs() {
    for (name, blob, f, c) in common::trained_cases() {
        run_case(name, &blob, f, c, 20, 57);
    }
}

#[test]
fn c_program_on_int8_blobs() {
    for (name, blob, f, c) in common::int8_cases() {
        run_case(name, &blob, f, c, 20, 57);
    }
}

#[test]
fn c_program_with_window_one() {
    run_case("window-1", &common::seeded_v1(), 16, 4, 1, 5);
}

/// The header compiles on its own as C99 and as C++, and inside ESP-IDF (an `esp_err.h`
/// on the include path) it takes the codes from there instead of redefining them.
#[test]
fn header_compiles_standalone_and_with_esp_err_h() {
    let dir = tempfile::tempdir().unwrap();
    let tu = dir.path().join("tu.c");
    fs::write(
        &tu,
        "#include \"ruv_temporal.h\"\n\
         typedef char esp_err_t_is_32_bits[sizeof(esp_err_t) == 4 ? 1 : -1];\n\
         typedef char invalid_state_is_0x103[ESP_ERR_INVALID_STATE == 0x103 ? 1 : -1];\n\
         int use(void) { return ESP_OK + (ESP_FAIL < 0); }\n",
    )
    .unwrap();
    let include = Path::new(MANIFEST).join("include");
    let compile = |extra: &[&str], idf: Option<&Path>| {
        let mut cmd = Command::new(cc());
        cmd.args([
            "-std=c99",
            "-pedantic",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-fsyntax-only",
        ])
        .args(extra)
        .arg("-I")
        .arg(&include);
        if let Some(p) = idf {
            cmd.arg("-I").arg(p);
        }
        cmd.arg(&tu).status().expect("run the C compiler")
    };
    assert!(compile(&[], None).success(), "plain C99");
    // A stand-in for ESP-IDF's esp_err.h: `int` status, a marker macro.
    let idf = dir.path().join("idf");
    fs::create_dir(&idf).unwrap();
    fs::write(
        idf.join("esp_err.h"),
        "#pragma once\ntypedef int esp_err_t;\n#define ESP_OK 0\n#define ESP_FAIL -1\n\
         #define ESP_ERR_NO_MEM 0x101\n#define ESP_ERR_INVALID_ARG 0x102\n\
         #define ESP_ERR_INVALID_STATE 0x103\n#define ESP_ERR_INVALID_SIZE 0x104\n\
         #define ESP_ERR_NOT_SUPPORTED 0x106\n#define ESP_ERR_INVALID_CRC 0x109\n\
         #define ESP_ERR_INVALID_VERSION 0x10A\n#define FAKE_IDF_ESP_ERR_H 1\n",
    )
    .unwrap();
    let probe = dir.path().join("probe.c");
    fs::write(
        &probe,
        "#include \"ruv_temporal.h\"\n#ifndef FAKE_IDF_ESP_ERR_H\n#error esp_err.h not used\n#endif\n\
         int use(void) { return ESP_OK; }\n",
    )
    .unwrap();
    let status = Command::new(cc())
        .args([
            "-std=c99",
            "-pedantic",
            "-Wall",
            "-Werror",
            "-fsyntax-only",
            "-I",
        ])
        .arg(&include)
        .arg("-I")
        .arg(&idf)
        .arg(&probe)
        .status()
        .unwrap();
    assert!(status.success(), "with esp_err.h present");
    assert!(compile(&[], Some(&idf)).success(), "C99 with esp_err.h");
    // The same header from C++ (if a C++ compiler is installed).
    let cxx = Command::new("c++").arg("--version").output();
    if cxx.is_ok_and(|o| o.status.success()) {
        let cpp = dir.path().join("tu.cpp");
        fs::write(&cpp, fs::read(&tu).unwrap()).unwrap();
        let status = Command::new("c++")
            .args(["-std=c++11", "-Wall", "-Werror", "-fsyntax-only", "-I"])
            .arg(&include)
            .arg(&cpp)
            .status()
            .unwrap();
        assert!(status.success(), "C++");
    }
}
