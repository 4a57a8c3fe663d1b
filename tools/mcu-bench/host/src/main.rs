//! Host side of the microcontroller benchmark (tools/mcu-bench/README.md).
//!
//! - `prepare WORK [DATA]`: the recording the firmware embeds, `WORK/frames.bin` (f32 LE,
//!   16 features per frame): the features (docs/features.md) of a real ESP32-C3
//!   capture from `DATA/espectre-esp32/movement` when that folder exists, else of one
//!   simulated recording; `WORK/frames.txt` names the source.
//! - `expect WORK FIXTURES`: the outputs the firmware must print, computed on the host
//!   with the same code (aether-ffi's context, the f32 and int8 streams).
//! - `report WORK BUDGET [--write-budget]`: reads each target's run (`WORK/<target>.out`
//!   from the firmware, `WORK/<target>.plugin` from the QEMU plugin, `WORK/<target>.elf`),
//!   checks that the node's outputs equal the host's and that no count exceeds its
//!   budget by more than 5 %, and prints the table (exit status 1 on any failure).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aether_data::features::{capture_features, extract_frames, FeatureConfig};
use aether_data::sim::{simulate_frames, Task};
use aether_ffi::Context;
use aether_head::{EvictionPolicy, Stream, TemporalHead};
use aether_quant::{QStream, QuantHead};

/// Features per frame of the default head.
const F: usize = 16;
/// Frames kept in `frames.bin`.
const KEEP: usize = 512;
/// The classify window.
const WINDOW: usize = 256;
/// Allowed excess over a budget.
const TOLERANCE: f64 = 0.05;
/// The targets, their QEMU machine and the part they stand for.
const TARGETS: [(&str, &str, &str, f64); 3] = [
    (
        "riscv32imac-unknown-none-elf",
        "qemu-system-riscv32 -machine virt",
        "ESP32-C3/C6 class, 160 MHz",
        160.0,
    ),
    (
        "thumbv7em-none-eabihf",
        "qemu-system-arm -machine mps2-an386 -cpu cortex-m4",
        "Cortex-M4F, 168 MHz",
        168.0,
    ),
    (
        "riscv32imafc-unknown-none-elf",
        "qemu-system-riscv32 -machine virt",
        "ESP32-P4 class, 400 MHz",
        400.0,
    ),
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let r = match args.get(1).map(String::as_str) {
        Some("prepare") if args.len() >= 3 => prepare(Path::new(&args[2]), args.get(3).map(Path::new)),
        Some("expect") if args.len() == 4 => expect(Path::new(&args[2]), Path::new(&args[3])),
        Some("report") if args.len() >= 4 => report(
            Path::new(&args[2]),
            Path::new(&args[3]),
            args.iter().any(|a| a == "--write-budget"),
        ),
        _ => Err("usage: aether-mcu-bench prepare WORK [DATA] | expect WORK FIXTURES | report WORK BUDGET [--write-budget]".into()),
    };
    match r {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("mcu-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

type Res<T> = Result<T, String>;

fn read(p: &Path) -> Res<Vec<u8>> {
    fs::read(p).map_err(|e| format!("{}: {e}", p.display()))
}

fn write(p: &Path, b: &[u8]) -> Res<()> {
    fs::write(p, b).map_err(|e| format!("{}: {e}", p.display()))
}

fn prepare(work: &Path, data: Option<&Path>) -> Res<bool> {
    fs::create_dir_all(work).map_err(|e| format!("{}: {e}", work.display()))?;
    let cfg = FeatureConfig::default();
    let real = data.map(|d| d.join("espectre-esp32").join("movement"));
    let (features, source) = match real.filter(|d| d.is_dir()) {
        Some(dir) => {
            let mut files: Vec<PathBuf> = fs::read_dir(&dir)
                .map_err(|e| format!("{}: {e}", dir.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "bin"))
                .collect();
            files.sort();
            let file = files
                .first()
                .ok_or(format!("{}: no capture", dir.display()))?;
            let c = capture_features(&read(file)?, cfg)
                .map_err(|e| format!("{}: {e}", file.display()))?;
            (c.features, format!("real: the features of {} (ESPectre, GPL-3.0, Francesco Pace and contributors; not stored in the repository)", file.display()))
        }
        None => {
            let frames = simulate_frames(Task::Gesture, 0, 0, 7);
            let (f, _) = extract_frames(&frames, cfg).map_err(|e| e.to_string())?;
            (
                f,
                "simulated: gesture class 0, recording 0, seed 7 (../shared/data not found)"
                    .to_string(),
            )
        }
    };
    if features.len() < WINDOW * F {
        return Err(format!("{source}: fewer than {WINDOW} frames"));
    }
    let keep = &features[..features.len().min(KEEP * F)];
    let bytes: Vec<u8> = keep.iter().flat_map(|v| v.to_le_bytes()).collect();
    write(&work.join("frames.bin"), &bytes)?;
    write(&work.join("frames.txt"), format!("{source}\n").as_bytes())?;
    println!("frames: {} × {F} ({source})", keep.len() / F);
    Ok(true)
}

fn frames_of(work: &Path) -> Res<Vec<f32>> {
    Ok(read(&work.join("frames.bin"))?
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

fn hex(words: impl Iterator<Item = u32>) -> String {
    words.map(|w| format!(" {w:08x}")).collect()
}

/// The `OUT` lines the firmware prints, computed on the host with the portable
/// (scalar) kernels the nodes run, so every line must match bit for bit.
fn host_outputs(work: &Path, fixtures: &Path) -> Res<Vec<String>> {
    // Pin the whole process to the portable path (read once, at the first detection).
    std::env::set_var("AETHER_SIMD", "scalar");
    if aether_kernel::SimdLevel::detect() != aether_kernel::SimdLevel::Scalar {
        return Err("SIMD level detected before AETHER_SIMD=scalar was set".into());
    }
    let fr = frames_of(work)?;
    let f32_blob = read(&fixtures.join("default.rvne"))?;
    let int8_blob = read(&fixtures.join("default.int8.rvne"))?;
    let q = QuantHead::from_blob(&int8_blob).map_err(|e| e.to_string())?;
    let c = q.classes();
    let mut lines = Vec::new();
    for (kind, blob) in [("f32", &f32_blob), ("int8", &int8_blob)] {
        let mut ctx =
            Context::new(blob, F as u32, WINDOW as u32, c as u32).map_err(|e| e.to_string())?;
        for t in 0..WINDOW {
            ctx.push(&fr[t * F..(t + 1) * F])
                .map_err(|e| e.to_string())?;
        }
        let mut logits = vec![0.0f32; c];
        ctx.classify(&mut logits).map_err(|e| e.to_string())?;
        lines.push(format!(
            "OUT {kind}.classify{}",
            hex(logits.iter().map(|x| x.to_bits()))
        ));
    }
    let head = TemporalHead::from_blob(&f32_blob).map_err(|e| e.to_string())?;
    let mut s = Stream::new(&head, WINDOW, EvictionPolicy::Error).map_err(|e| e.to_string())?;
    for t in 0..WINDOW {
        s.push(&head, &fr[t * F..(t + 1) * F])
            .map_err(|e| e.to_string())?;
    }
    lines.push(format!(
        "OUT f32.stream{}",
        hex(s.logits().iter().map(|x| x.to_bits()))
    ));
    let mut qs = QStream::new(&q, WINDOW).map_err(|e| e.to_string())?;
    for t in 0..WINDOW {
        qs.push(&q, &fr[t * F..(t + 1) * F])
            .map_err(|e| e.to_string())?;
    }
    lines.push(format!(
        "OUT int8.stream{}",
        hex(qs.logits().iter().map(|&x| x as u32))
    ));
    Ok(lines)
}

fn expect(work: &Path, fixtures: &Path) -> Res<bool> {
    let lines = host_outputs(work, fixtures)?;
    let text = lines.join("\n") + "\n";
    write(&work.join("expect.txt"), text.as_bytes())?;
    print!("{text}");
    Ok(true)
}

/// Counts per region label: `(count, sum, min, max)`.
type Counts = BTreeMap<String, (u64, u64, u64, u64)>;

/// One target's run.
struct Run {
    counts: Counts,
    outputs: BTreeMap<String, String>,
    numbers: BTreeMap<String, u64>,
    text: u64,
    rodata: u64,
    data: u64,
    by_crate: BTreeMap<&'static str, u64>,
}

fn parse_run(work: &Path, target: &str) -> Res<Run> {
    let out = String::from_utf8_lossy(&read(&work.join(format!("{target}.out")))?).into_owned();
    let plugin =
        String::from_utf8_lossy(&read(&work.join(format!("{target}.plugin")))?).into_owned();
    if !out.lines().any(|l| l == "DONE") {
        return Err(format!("{target}: the firmware did not finish:\n{out}"));
    }
    // The on-target kernel checks (fw/src/kernels.rs) ran and passed.
    if !out.lines().any(|l| l.starts_with("KERNELS checked ")) {
        return Err(format!(
            "{target}: no kernel check line in the firmware output"
        ));
    }
    let labels: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("REGION "))
        .collect();
    let insns: Vec<u64> = plugin
        .lines()
        .filter_map(|l| l.strip_prefix("mcu-bench region "))
        .filter_map(|l| l.split_whitespace().nth(2)?.parse().ok())
        .collect();
    if labels.len() != insns.len() {
        return Err(format!(
            "{target}: {} regions announced, the plugin counted {}",
            labels.len(),
            insns.len()
        ));
    }
    let mut counts = Counts::new();
    for (l, &n) in labels.iter().zip(&insns) {
        let e = counts.entry(l.to_string()).or_insert((0, 0, u64::MAX, 0));
        e.0 += 1;
        e.1 += n;
        e.2 = e.2.min(n);
        e.3 = e.3.max(n);
    }
    let mut outputs = BTreeMap::new();
    let mut numbers = BTreeMap::new();
    for l in out.lines() {
        let mut it = l.splitn(3, ' ');
        match (it.next(), it.next(), it.next()) {
            (Some("OUT"), Some(name), Some(rest)) => {
                outputs.insert(name.to_string(), rest.to_string());
            }
            (Some(tag @ ("ARENA" | "STACK" | "BLOB")), Some(name), Some(v)) => {
                numbers.insert(format!("{tag} {name}"), v.parse().unwrap_or(0));
            }
            _ => {}
        }
    }
    let elf = read(&work.join(format!("{target}.elf")))?;
    let sections = elf32_sections(&elf)?;
    let size = |n: &str| {
        sections
            .iter()
            .filter(|(s, ..)| s == n)
            .map(|s| s.1)
            .sum::<u64>()
    };
    Ok(Run {
        counts,
        outputs,
        numbers,
        text: size(".text") + size(".vector_table"),
        rodata: size(".rodata"),
        data: size(".data"),
        by_crate: code_by_crate(&elf)?,
    })
}

fn u16le(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 2)
        .map_or(0, |s| u16::from_le_bytes([s[0], s[1]]) as u64)
}

fn u32le(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 4)
        .map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as u64)
}

/// One ELF section header: `(name, size, type, offset, link)`.
type Section = (String, u64, u64, u64, u64);

/// Every section of a 32-bit little-endian ELF.
fn elf32_sections(b: &[u8]) -> Res<Vec<Section>> {
    if b.get(..4) != Some(b"\x7fELF") || b.get(4) != Some(&1) || b.get(5) != Some(&1) {
        return Err("not a 32-bit little-endian ELF".into());
    }
    let (shoff, shentsize, shnum, shstrndx) = (
        u32le(b, 32) as usize,
        u16le(b, 46) as usize,
        u16le(b, 48) as usize,
        u16le(b, 50) as usize,
    );
    let sh = |i: usize| shoff + i * shentsize;
    let strtab_off = u32le(b, sh(shstrndx) + 16) as usize;
    let mut v = Vec::new();
    for i in 0..shnum {
        let h = sh(i);
        let name_off = strtab_off + u32le(b, h) as usize;
        let end = b[name_off..].iter().position(|&c| c == 0).unwrap_or(0);
        let name = String::from_utf8_lossy(&b[name_off..name_off + end]).into_owned();
        v.push((
            name,
            u32le(b, h + 20),
            u32le(b, h + 4),
            u32le(b, h + 16),
            u32le(b, h + 24),
        ));
    }
    Ok(v)
}

/// Bytes of function symbols by the crate their (mangled) name names.
fn code_by_crate(b: &[u8]) -> Res<BTreeMap<&'static str, u64>> {
    let secs = elf32_sections(b)?;
    let mut m = BTreeMap::new();
    let Some(symtab) = secs.iter().find(|s| s.2 == 2) else {
        return Ok(m);
    };
    let strtab = &secs[symtab.4 as usize];
    let (off, size, str_off) = (symtab.3 as usize, symtab.1 as usize, strtab.3 as usize);
    for i in 0..size / 16 {
        let e = off + i * 16;
        let (name, sz, info) = (u32le(b, e) as usize, u32le(b, e + 8), b[e + 12]);
        if info & 0xF != 2 {
            continue; // not a function
        }
        let s = &b[str_off + name..];
        let s =
            String::from_utf8_lossy(&s[..s.iter().position(|&c| c == 0).unwrap_or(0)]).into_owned();
        let krate = [
            "aether_quant",
            "aether_head",
            "aether_kernel",
            "aether_rvne",
            "aether_ffi",
            "libm",
            "compiler_builtins",
            "aether_mcu_bench_fw",
        ]
        .into_iter()
        .find(|c| s.contains(c))
        .unwrap_or(if s.starts_with("__") {
            "compiler_builtins"
        } else {
            "core, alloc, other"
        });
        *m.entry(krate).or_insert(0) += sz;
    }
    Ok(m)
}

fn mean(c: &(u64, u64, u64, u64)) -> u64 {
    c.1 / c.0.max(1)
}

fn thousands(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// The metrics a budget covers: `(key, value)`.
fn metrics(run: &Run) -> Vec<(String, u64)> {
    let mut v = Vec::new();
    for (k, c) in &run.counts {
        match k.as_str() {
            "f32.stream_push" | "int8.stream_push" => {
                v.push((format!("{k}.mean"), mean(c)));
                v.push((format!("{k}.max"), c.3));
            }
            "f32.push" | "int8.push" => v.push((format!("{k}.per_frame"), c.1 / WINDOW as u64)),
            _ => v.push((k.clone(), c.1)),
        }
    }
    for (k, n) in &run.numbers {
        if k.starts_with("ARENA") || k.starts_with("STACK") {
            v.push((k.replace(' ', "."), *n));
        }
    }
    v.push(("flash.text_rodata".into(), run.text + run.rodata + run.data));
    v
}

fn report(work: &Path, budget_path: &Path, write_budget: bool) -> Res<bool> {
    let expected: BTreeMap<String, String> =
        String::from_utf8_lossy(&read(&work.join("expect.txt"))?)
            .lines()
            .filter_map(|l| {
                let mut it = l.splitn(3, ' ');
                match (it.next(), it.next(), it.next()) {
                    (Some("OUT"), Some(n), Some(r)) => Some((n.to_string(), r.to_string())),
                    _ => None,
                }
            })
            .collect();
    let budget: BTreeMap<String, u64> = fs::read_to_string(budget_path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((
                format!("{} {}", it.next()?, it.next()?),
                it.next()?.parse().ok()?,
            ))
        })
        .collect();
    let source = fs::read_to_string(work.join("frames.txt")).unwrap_or_default();
    let mut ok = true;
    let mut table = String::new();
    let mut new_budget = String::from(
        "# target metric instructions-or-bytes (tools/mcu-bench/run.sh --write-budget)\n",
    );
    let _ = writeln!(table, "recording: {}", source.trim());
    let _ = writeln!(
        table,
        "\n| target (QEMU) | model | push, C ABI (ring copy) | streaming push, mean / max of 256 | classify, window 256 | arena, context N = 256 | arena, stream (256) | flash: model |"
    );
    let _ = writeln!(table, "|---|---|---:|---:|---:|---:|---:|---:|");
    let mut sizes = String::new();
    for (target, machine, _, _) in TARGETS {
        let run = match parse_run(work, target) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{e}");
                ok = false;
                continue;
            }
        };
        for (name, want) in &expected {
            match run.outputs.get(name) {
                Some(got) if got == want => {}
                got => {
                    eprintln!("{target}: {name}: node {got:?}, host {want}");
                    ok = false;
                }
            }
        }
        for kind in ["f32", "int8"] {
            let c = |k: &str| {
                run.counts
                    .get(&format!("{kind}.{k}"))
                    .cloned()
                    .unwrap_or_default()
            };
            let sp = c("stream_push");
            let _ = writeln!(
                table,
                "| {target} (`{machine}`) | {kind} | {} | {} / {} | {} | {} B | {} B | {} B |",
                thousands(c("push").1 / WINDOW as u64),
                thousands(mean(&sp)),
                thousands(sp.3),
                thousands(c("classify").1),
                thousands(
                    run.numbers
                        .get(&format!("ARENA {kind}.context"))
                        .copied()
                        .unwrap_or(0)
                ),
                thousands(
                    run.numbers
                        .get(&format!("ARENA {kind}.stream"))
                        .copied()
                        .unwrap_or(0)
                ),
                thousands(
                    run.numbers
                        .get(&format!("BLOB {kind}"))
                        .copied()
                        .unwrap_or(0)
                ),
            );
        }
        let crates: Vec<String> = run
            .by_crate
            .iter()
            .map(|(k, v)| format!("{k} {}", thousands(*v)))
            .collect();
        let _ = writeln!(
            sizes,
            "- {target}: .text {} + .rodata {} + .data {} B (both heads, the C ABI, the bench harness); stack peak {} B; code by crate: {}",
            thousands(run.text),
            thousands(run.rodata),
            thousands(run.data),
            thousands(run.numbers.get("STACK peak").copied().unwrap_or(0)),
            crates.join(", ")
        );
        for (k, v) in metrics(&run) {
            let key = format!("{target} {k}");
            let _ = writeln!(new_budget, "{key} {v}");
            if let Some(&b) = budget.get(&key) {
                if v as f64 > b as f64 * (1.0 + TOLERANCE) {
                    eprintln!("{key}: {v} exceeds the budget {b} by more than 5 %");
                    ok = false;
                }
            } else if !write_budget {
                eprintln!("{key}: no budget");
                ok = false;
            }
        }
    }
    let _ = writeln!(table, "\nInstructions executed (exact, QEMU TCG plugin, `-icount shift=0`); arena = peak heap bytes live at once.");
    let _ = writeln!(
        table,
        "Flash of the code (one firmware per target):\n{sizes}"
    );
    let _ = writeln!(table, "{}", cycles_table(work)?);
    print!("{table}");
    write(&work.join("report.md"), table.as_bytes())?;
    if write_budget {
        write(budget_path, new_budget.as_bytes())?;
        println!("wrote {}", budget_path.display());
    }
    println!(
        "{}",
        if ok {
            "mcu-bench: ok (node outputs equal the host's; counts within budget)"
        } else {
            "mcu-bench: FAILED"
        }
    );
    Ok(ok)
}

/// Milliseconds at an assumed CPI for each part: the conversion docs/benchmarks.md states.
fn cycles_table(work: &Path) -> Res<String> {
    let mut s = String::from("Estimated time (cycles = instructions × CPI; CPI assumed 1.2 for the in-order RISC-V cores, 1.5 for the M4F; not measured):\n\n| target | part | model | streaming push | classify, N = 256 |\n|---|---|---|---:|---:|\n");
    for (target, _, part, mhz) in TARGETS {
        let Ok(run) = parse_run(work, target) else {
            continue;
        };
        let cpi = if target.starts_with("thumb") {
            1.5
        } else {
            1.2
        };
        for kind in ["f32", "int8"] {
            let c = |k: &str| {
                run.counts
                    .get(&format!("{kind}.{k}"))
                    .cloned()
                    .unwrap_or_default()
            };
            let ms = |insns: u64| insns as f64 * cpi / (mhz * 1000.0);
            let _ = writeln!(
                s,
                "| {target} | {part} | {kind} | {:.2} ms | {:.1} ms |",
                ms(mean(&c("stream_push"))),
                ms(c("classify").1)
            );
        }
    }
    Ok(s)
}
