//! Benchmark firmware for emulated microcontrollers (tools/mcu-bench/README.md).
//!
//! Runs the default head through the C ABI (`ruv_temporal_init` / `push` / `classify`
//! of aether-ffi, as firmware calls them) and through the streaming APIs
//! (`aether_head::Stream::push`, f32; `aether_quant::QStream::push`, int8: a push that
//! updates the KV caches and produces logits) on the frames of one recording, for the
//! f32 model and its int8 quantisation. Every measured call sits between the marker
//! functions `mcu_bench_start` / `mcu_bench_stop`, whose executions the QEMU plugin
//! (plugin/icount.c) counts. The firmware prints, over semihosting, the name of each
//! region in order, the logits it computed (compared with the host's by the host tool),
//! the peak heap (arena) of each context and the stack high-water mark.
#![no_std]
#![no_main]

extern crate alloc;

mod kernels;

use core::ptr::{addr_of_mut, read_volatile, write_volatile};

use aether_ffi::{
    ruv_temporal_classify, ruv_temporal_destroy, ruv_temporal_init, ruv_temporal_push,
};
use aether_head::{EvictionPolicy, Stream, TemporalHead};
use aether_quant::{QStream, QuantHead};

/// Features per frame of the default head (docs/features.md).
const F: usize = 16;
/// The window of a classify (the node's deployed N).
const WINDOW: usize = 256;

#[repr(C, align(16))]
struct Align16<T: ?Sized>(T);

macro_rules! blob {
    ($name:ident, $path:literal) => {
        #[link_section = ".blobs"]
        static $name: Align16<[u8; include_bytes!($path).len()]> = Align16(*include_bytes!($path));
    };
}

blob!(F32_MODEL, "../../fixtures/default.rvne");
blob!(INT8_MODEL, "../../fixtures/default.int8.rvne");
blob!(FRAMES, "../../work/frames.bin");

// ---- markers the plugin counts between (distinct bodies: LTO must not merge them) ----

static mut MARK: u32 = 0;

#[no_mangle]
#[inline(never)]
pub extern "C" fn mcu_bench_start() {
    // SAFETY: single-threaded firmware; a volatile store the optimiser keeps.
    unsafe { write_volatile(addr_of_mut!(MARK), 0x5A5A_0001) }
}

#[no_mangle]
#[inline(never)]
pub extern "C" fn mcu_bench_stop() {
    // SAFETY: as above.
    unsafe { write_volatile(addr_of_mut!(MARK), 0xA5A5_0002) }
}

/// Runs `f` as one counted region, printing its label first.
fn region<R>(label: &str, f: impl FnOnce() -> R) -> R {
    out(&["REGION ", label, "\n"]);
    mcu_bench_start();
    let r = core::hint::black_box(f());
    mcu_bench_stop();
    r
}

// ---- heap: a bump arena that tracks the peak of live bytes ---------------------------

const ARENA_BYTES: usize = 2 << 20;
static mut ARENA: Align16<[u8; ARENA_BYTES]> = Align16([0; ARENA_BYTES]);
static mut NEXT: usize = 0;
static mut LIVE: usize = 0;
static mut PEAK: usize = 0;

/// The allocation hook aether-ffi's `no_std` global allocator calls (ruv_temporal.h).
#[no_mangle]
pub extern "C" fn ruv_temporal_alloc(size: usize, align: usize) -> *mut u8 {
    // SAFETY: single-threaded; the arena is only handed out here, never twice.
    unsafe {
        let base = addr_of_mut!(ARENA) as usize;
        let start = (base + NEXT).next_multiple_of(align.max(4));
        let end = start + size;
        if end > base + ARENA_BYTES {
            return core::ptr::null_mut();
        }
        NEXT = end - base;
        LIVE += size;
        if LIVE > PEAK {
            PEAK = LIVE;
        }
        start as *mut u8
    }
}

/// The free hook: memory is not reused (a bump arena), live bytes drop by `size`.
#[no_mangle]
pub extern "C" fn ruv_temporal_free(_ptr: *mut u8, size: usize, _align: usize) {
    // SAFETY: single-threaded.
    unsafe { LIVE = LIVE.saturating_sub(size) }
}

fn reset_peak() {
    // SAFETY: single-threaded.
    unsafe { PEAK = LIVE }
}

fn peak() -> usize {
    // SAFETY: single-threaded.
    unsafe { PEAK }
}

// ---- stack high-water mark ------------------------------------------------------------

const STACK_PAINT: usize = 256 << 10;
const PAINT: u32 = 0xDEAD_C0DE;

extern "C" {
    static _stack_top: u8;
}

fn stack_top() -> usize {
    // SAFETY: only the address of the linker symbol is taken.
    core::ptr::addr_of!(_stack_top) as usize
}

/// Paints the `STACK_PAINT` bytes below the current frame (minus a margin).
#[inline(never)]
fn paint_stack() {
    let x = 0u32;
    let sp = core::hint::black_box(&x) as *const u32 as usize;
    let lo = stack_top() - STACK_PAINT;
    let hi = sp - 256;
    let mut p = lo;
    while p < hi {
        // SAFETY: [lo, hi) lies in the stack region below the live frames.
        unsafe { write_volatile(p as *mut u32, PAINT) };
        p += 4;
    }
}

/// Bytes of stack used since [`paint_stack`]: from the top to the lowest overwritten word.
fn stack_used() -> usize {
    let lo = stack_top() - STACK_PAINT;
    let mut p = lo;
    // SAFETY: reads the painted region.
    while p < stack_top() && unsafe { read_volatile(p as *const u32) } == PAINT {
        p += 4;
    }
    stack_top() - p
}

// ---- output over semihosting -----------------------------------------------------------

mod semihost {
    /// Semihosting call `op` with argument `arg` (a pointer to a parameter block).
    #[cfg(target_arch = "arm")]
    pub fn call(op: usize, arg: usize) -> usize {
        let r;
        // SAFETY: the semihosting trap; QEMU implements it with -semihosting-config.
        unsafe {
            core::arch::asm!("bkpt #0xab", inout("r0") op => r, in("r1") arg, options(nostack));
        }
        r
    }

    /// Semihosting call (RISC-V: the ebreak sequence of the semihosting spec).
    #[cfg(target_arch = "riscv32")]
    pub fn call(op: usize, arg: usize) -> usize {
        let r;
        // SAFETY: the semihosting trap sequence; must not be compressed.
        unsafe {
            core::arch::asm!(
                ".balign 16",
                ".option push",
                ".option norvc",
                "slli x0, x0, 0x1f",
                "ebreak",
                "srai x0, x0, 0x7",
                ".option pop",
                inout("a0") op => r,
                in("a1") arg,
                options(nostack),
            );
        }
        r
    }

    static mut STDOUT: usize = usize::MAX;

    /// Writes `bytes` to the host's stdout (SYS_OPEN ":tt", SYS_WRITE).
    pub fn write(bytes: &[u8]) {
        // SAFETY: single-threaded; the handle is opened once.
        unsafe {
            if STDOUT == usize::MAX {
                let name = b":tt\0";
                let args = [name.as_ptr() as usize, 4, 3];
                STDOUT = call(0x01, args.as_ptr() as usize);
            }
            let args = [STDOUT, bytes.as_ptr() as usize, bytes.len()];
            call(0x05, args.as_ptr() as usize);
        }
    }

    /// Ends the emulation: status 0 (ADP_Stopped_ApplicationExit) or 1.
    pub fn exit(ok: bool) -> ! {
        call(0x18, if ok { 0x20026 } else { 0x20023 });
        loop {
            core::hint::spin_loop();
        }
    }
}

fn out(parts: &[&str]) {
    for p in parts {
        semihost::write(p.as_bytes());
    }
}

/// Decimal digits of `v` into `buf`; returns the text.
fn dec(v: u64, buf: &mut [u8; 24]) -> &str {
    let mut i = buf.len();
    let mut v = v;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    core::str::from_utf8(&buf[i..]).unwrap_or("?")
}

fn hex32(v: u32, buf: &mut [u8; 8]) -> &str {
    for (i, b) in buf.iter_mut().enumerate() {
        let n = (v >> (28 - 4 * i)) & 0xF;
        *b = if n < 10 {
            b'0' + n as u8
        } else {
            b'a' + n as u8 - 10
        };
    }
    core::str::from_utf8(buf).unwrap_or("?")
}

/// `OUT <name> <hex bits> …` (f32 logits as their bits, i32 logits as two's complement).
fn print_bits(name: &str, words: impl Iterator<Item = u32>) {
    out(&["OUT ", name]);
    let mut b = [0u8; 8];
    for w in words {
        out(&[" ", hex32(w, &mut b)]);
    }
    out(&["\n"]);
}

fn print_num(tag: &str, name: &str, v: usize) {
    let mut b = [0u8; 24];
    out(&[tag, " ", name, " ", dec(v as u64, &mut b), "\n"]);
}

fn fail(what: &str) -> ! {
    out(&["FAIL ", what, "\n"]);
    semihost::exit(false)
}

// ---- the benchmark ----------------------------------------------------------------------

fn frames() -> &'static [f32] {
    let b = &FRAMES.0[..];
    // SAFETY: the blob is 16-aligned, little-endian f32 data (work/frames.bin) whose
    // length is a multiple of 4.
    unsafe { core::slice::from_raw_parts(b.as_ptr().cast::<f32>(), b.len() / 4) }
}

/// The C ABI on `blob`: init (window 256), 256 pushes, one classify; prints the logits
/// and the context's peak heap.
fn abi(kind: &str, blob: &'static [u8], classes: usize, label: [&str; 3]) {
    let fr = frames();
    reset_peak();
    let mut ctx = core::ptr::null_mut();
    // SAFETY: the blob is a static (lives for the program); `ctx` is a valid out-pointer.
    let e = region(label[0], || unsafe {
        ruv_temporal_init(
            blob.as_ptr(),
            blob.len(),
            F as u32,
            WINDOW as u32,
            classes as u32,
            &mut ctx,
        )
    });
    if e != 0 {
        fail("ruv_temporal_init");
    }
    print_num("ARENA", kind, peak());
    let ok = region(label[1], || {
        let mut ok = true;
        for t in 0..WINDOW {
            // SAFETY: live context, F floats per frame.
            ok &= unsafe { ruv_temporal_push(ctx, fr[t * F..].as_ptr()) } == 0;
        }
        ok
    });
    if !ok {
        fail("ruv_temporal_push");
    }
    let mut logits = [0.0f32; 16];
    // SAFETY: live context, `classes` ≤ 16 floats writable.
    let e = region(label[2], || unsafe {
        ruv_temporal_classify(ctx, logits.as_mut_ptr(), classes as u32)
    });
    if e != 0 {
        fail("ruv_temporal_classify");
    }
    print_bits(label[2], logits[..classes].iter().map(|x| x.to_bits()));
    // SAFETY: live context, not used afterwards.
    unsafe { ruv_temporal_destroy(ctx) };
}

fn stream_f32(blob: &'static [u8]) {
    let fr = frames();
    let head = TemporalHead::from_blob(blob).unwrap_or_else(|_| fail("f32 head"));
    reset_peak();
    let mut s =
        Stream::new(&head, WINDOW, EvictionPolicy::Error).unwrap_or_else(|_| fail("f32 stream"));
    print_num("ARENA", "f32.stream", peak());
    for t in 0..WINDOW {
        let frame = &fr[t * F..(t + 1) * F];
        if region("f32.stream_push", || s.push(&head, frame).is_err()) {
            fail("f32 stream push");
        }
    }
    print_bits("f32.stream", s.logits().iter().map(|x| x.to_bits()));
}

fn stream_int8(blob: &'static [u8]) {
    let fr = frames();
    let head = QuantHead::from_blob(blob).unwrap_or_else(|_| fail("int8 head"));
    reset_peak();
    let mut s = QStream::new(&head, WINDOW).unwrap_or_else(|_| fail("int8 stream"));
    print_num("ARENA", "int8.stream", peak());
    for t in 0..WINDOW {
        let frame = &fr[t * F..(t + 1) * F];
        if region("int8.stream_push", || s.push(&head, frame).is_err()) {
            fail("int8 stream push");
        }
    }
    print_bits("int8.stream", s.logits().iter().map(|&x| x as u32));
}

fn run() -> ! {
    paint_stack();
    out(&["MCUBENCH ", env!("MCU_BENCH_TARGET"), "\n"]);
    let f32_blob: &'static [u8] = &F32_MODEL.0;
    let int8_blob: &'static [u8] = &INT8_MODEL.0;
    let classes = QuantHead::from_blob(int8_blob)
        .unwrap_or_else(|_| fail("int8 head"))
        .classes();
    if frames().len() < WINDOW * F {
        fail("frames");
    }
    match kernels::check(|k| out(&["CHECK ", k, "\n"])) {
        Ok(n) => print_num("KERNELS", "checked", n),
        Err(k) => fail(k),
    }
    abi(
        "f32.context",
        f32_blob,
        classes,
        ["f32.init", "f32.push", "f32.classify"],
    );
    stream_f32(f32_blob);
    abi(
        "int8.context",
        int8_blob,
        classes,
        ["int8.init", "int8.push", "int8.classify"],
    );
    stream_int8(int8_blob);
    print_num("STACK", "peak", stack_used());
    print_num("BLOB", "f32", f32_blob.len());
    print_num("BLOB", "int8", int8_blob.len());
    out(&["DONE\n"]);
    semihost::exit(true)
}

// ---- start-up ---------------------------------------------------------------------------

#[cfg(target_arch = "arm")]
mod start {
    extern "C" {
        static mut _sbss: u32;
        static mut _ebss: u32;
        static mut _sdata: u32;
        static mut _edata: u32;
        static _sidata: u32;
    }

    /// The reset vector (second word of the vector table).
    #[link_section = ".vector_table.reset"]
    #[no_mangle]
    pub static RESET_VECTOR: [unsafe extern "C" fn() -> !; 15] = [reset; 15];

    /// Copies `.data`, zeroes `.bss`, enables the FPU, runs the benchmark. The other
    /// exception vectors point here too: a fault restarts nothing, it ends the run.
    #[no_mangle]
    pub unsafe extern "C" fn reset() -> ! {
        static mut STARTED: bool = false;
        // SAFETY: single core; first entry is the reset, any later one a fault.
        unsafe {
            if core::ptr::read_volatile(core::ptr::addr_of!(STARTED)) {
                super::fail("exception");
            }
            let mut d = core::ptr::addr_of_mut!(_sdata);
            let mut s = core::ptr::addr_of!(_sidata);
            while d < core::ptr::addr_of_mut!(_edata) {
                d.write_volatile(s.read());
                d = d.add(1);
                s = s.add(1);
            }
            let mut b = core::ptr::addr_of_mut!(_sbss);
            while b < core::ptr::addr_of_mut!(_ebss) {
                b.write_volatile(0);
                b = b.add(1);
            }
            core::ptr::write_volatile(core::ptr::addr_of_mut!(STARTED), true);
            // CPACR: full access to CP10/CP11 (the FPU), then synchronise.
            let cpacr = 0xE000_ED88 as *mut u32;
            cpacr.write_volatile(cpacr.read_volatile() | (0xF << 20));
            core::arch::asm!("dsb", "isb");
        }
        super::run()
    }
}

#[cfg(target_arch = "riscv32")]
mod start {
    core::arch::global_asm!(
        r#"
        .section .text.start, "ax"
        .globl _start
    _start:
        la   sp, _stack_top
        la   t0, trap
        csrw mtvec, t0
        li   t0, 0x2000          # mstatus.FS = Initial: enables the FPU when there is one
        csrs mstatus, t0
        la   t0, _sbss
        la   t1, _ebss
    1:  bgeu t0, t1, 2f
        sw   zero, 0(t0)
        addi t0, t0, 4
        j    1b
    2:  call mcu_bench_main
    3:  j    3b
        .balign 4
    trap:
        call mcu_bench_trap
    "#
    );

    #[no_mangle]
    extern "C" fn mcu_bench_main() -> ! {
        super::run()
    }

    #[no_mangle]
    extern "C" fn mcu_bench_trap() -> ! {
        super::fail("trap")
    }
}
