//! Streaming decode latency: one `push` + one `decode` per step with a cache holding about
//! `T` positions (T = 1k, 15k, 100k), f32 and f16 storage, AETHER shape (4 query heads,
//! 1 kv head, dim 32, W 32, B 16, globals [0], causal, log-stride + landmarks) and MHA 4/4.
//!
//! Each timed step runs at a position in `[T, T + 2048)`; when that range is used up the
//! cache is reset and refilled to `T` outside the timer.
//!
//! Two clocks: `decode_step/…` is wall time; `decode_step_cpu/…` is the CPU time of the
//! benchmark thread (`CLOCK_THREAD_CPUTIME_ID` on 64-bit Linux), which excludes
//! the time the thread waits while other processes hold the cores — use it on a shared,
//! loaded machine. Elsewhere the CPU clock falls back to wall time.
//!
//! Run: `cargo bench -p aether-kernel --bench decode`.
//!
//! Instruction counts (reliable on a loaded machine): with `AETHER_DECODE_PROFILE=T` set the
//! binary skips criterion and runs `AETHER_DECODE_STEPS` (default 4096) AETHER f32 steps
//! (`AETHER_DECODE_STORAGE=f16` for f16) after filling to `T`, inside the never-inlined
//! `profile_steps`; count them with
//! `valgrind --tool=callgrind --toggle-collect=*profile_steps* <bench binary>` and divide the
//! total `Ir` by the step count.

use std::hint::black_box;
use std::time::{Duration, Instant};

use aether_kernel::{KvCacheOf, KvElem, SparsePattern};
use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{criterion_group, BenchmarkId, Criterion};
use half::f16;

const CHUNK: usize = 2048;

/// A monotonic clock: wall time or thread CPU time.
type Clock = fn() -> Duration;

fn wall_now() -> Duration {
    use std::sync::OnceLock;
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed()
}

/// CPU time of the calling thread (`CLOCK_THREAD_CPUTIME_ID`, ns resolution) on 64-bit
/// Linux; wall time elsewhere.
fn thread_cpu_now() -> Duration {
    #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
    {
        #[repr(C)]
        struct Timespec {
            tv_sec: i64,
            tv_nsec: i64,
        }
        extern "C" {
            fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
        }
        const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
        let mut ts = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `clock_gettime` is the libc function std links against; it writes one
        // `struct timespec` (two 64-bit fields on 64-bit Linux) through a valid pointer.
        if unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) } == 0 {
            return Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
        }
    }
    wall_now()
}

/// Criterion measurement reporting thread CPU time (values are `Duration`s like wall time).
struct CpuTime;

impl Measurement for CpuTime {
    type Intermediate = Duration;
    type Value = Duration;
    fn start(&self) -> Duration {
        thread_cpu_now()
    }
    fn end(&self, i: Duration) -> Duration {
        thread_cpu_now().saturating_sub(i)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        WallTime.formatter()
    }
}

struct Rows {
    k: Vec<Vec<f32>>,
    q: Vec<f32>,
}

fn rows(kv_heads: usize, q_heads: usize, dim: usize) -> Rows {
    let mut s = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let k = (0..257)
        .map(|_| (0..kv_heads * dim).map(|_| next()).collect())
        .collect();
    let q = (0..q_heads * dim).map(|_| next()).collect();
    Rows { k, q }
}

fn fill<S: KvElem>(cache: &mut KvCacheOf<S>, r: &Rows, t: usize) {
    cache.reset();
    for i in 0..t {
        let row = &r.k[i % r.k.len()];
        cache.push(row, row).expect("fill");
    }
}

fn bench_one<S: KvElem, M: Measurement<Value = Duration>>(
    c: &mut Criterion<M>,
    clock: Clock,
    prefix: &str,
    name: &str,
    q_heads: usize,
    kv_heads: usize,
) {
    let p = SparsePattern::default();
    let dim = 32;
    let r = rows(kv_heads, q_heads, dim);
    let mut group = c.benchmark_group(format!("{prefix}/{name}/{}", S::NAME));
    group.sample_size(20);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    for t in [1_000usize, 15_000, 100_000] {
        let mut cache = KvCacheOf::<S>::new(t + CHUNK, kv_heads, dim, p.block_size);
        fill(&mut cache, &r, t);
        let mut out = vec![0.0f32; q_heads * dim];
        cache
            .reserve_decode(&p, q_heads)
            .expect("valid decode shape");
        group.bench_function(BenchmarkId::from_parameter(t), |b| {
            b.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    if cache.len() == cache.capacity() {
                        fill(&mut cache, &r, t);
                    }
                    let n = left.min((cache.capacity() - cache.len()) as u64);
                    let start = clock();
                    for _ in 0..n {
                        let row = &r.k[cache.total() % r.k.len()];
                        cache.push(row, row).expect("push");
                        cache.decode(&p, &r.q, &mut out).expect("decode");
                        black_box(&out);
                    }
                    elapsed += clock().saturating_sub(start);
                    left -= n;
                }
                elapsed
            })
        });
        eprintln!(
            "{prefix}/{name}/{}/{t}: cache bytes {} ({:.1} B/position)",
            S::NAME,
            cache.bytes(),
            cache.bytes() as f64 / cache.capacity() as f64
        );
    }
    group.finish();
}

fn decode(c: &mut Criterion) {
    let clock: Clock = wall_now;
    bench_one::<f32, _>(c, clock, "decode_step", "aether_mqa_4q1kv", 4, 1);
    bench_one::<f16, _>(c, clock, "decode_step", "aether_mqa_4q1kv", 4, 1);
    bench_one::<f32, _>(c, clock, "decode_step", "mha_4q4kv", 4, 4);
    bench_one::<f16, _>(c, clock, "decode_step", "mha_4q4kv", 4, 4);
}

fn decode_cpu(c: &mut Criterion<CpuTime>) {
    let clock: Clock = thread_cpu_now;
    bench_one::<f32, _>(c, clock, "decode_step_cpu", "aether_mqa_4q1kv", 4, 1);
    bench_one::<f16, _>(c, clock, "decode_step_cpu", "aether_mqa_4q1kv", 4, 1);
    bench_one::<f32, _>(c, clock, "decode_step_cpu", "mha_4q4kv", 4, 4);
    bench_one::<f16, _>(c, clock, "decode_step_cpu", "mha_4q4kv", 4, 4);
}

/// The measured steps of the profile mode (a separate symbol for callgrind's toggle).
#[inline(never)]
fn profile_steps<S: KvElem>(
    cache: &mut KvCacheOf<S>,
    r: &Rows,
    p: &SparsePattern,
    out: &mut [f32],
    steps: usize,
) {
    for _ in 0..steps {
        let row = &r.k[cache.total() % r.k.len()];
        cache.push(row, row).expect("push");
        cache.decode(p, &r.q, out).expect("decode");
        black_box(&*out);
    }
}

fn profile<S: KvElem>(t: usize, steps: usize) {
    let p = SparsePattern::default();
    let (q_heads, kv_heads, dim) = (4, 1, 32);
    let r = rows(kv_heads, q_heads, dim);
    let mut cache = KvCacheOf::<S>::new(t + steps, kv_heads, dim, p.block_size);
    fill(&mut cache, &r, t);
    let mut out = vec![0.0f32; q_heads * dim];
    cache.decode(&p, &r.q, &mut out).expect("warm-up decode");
    profile_steps(&mut cache, &r, &p, &mut out, steps);
    eprintln!("profiled {steps} {} steps from T = {t}", S::NAME);
}

criterion_group!(wall, decode);
criterion_group! {
    name = cpu;
    config = Criterion::default().with_measurement(CpuTime);
    targets = decode_cpu
}

fn main() {
    let var = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<usize>().ok());
    if let Some(t) = var("AETHER_DECODE_PROFILE") {
        let steps = var("AETHER_DECODE_STEPS").unwrap_or(4096);
        match std::env::var("AETHER_DECODE_STORAGE").as_deref() {
            Ok("f16") => profile::<f16>(t, steps),
            _ => profile::<f32>(t, steps),
        }
        return;
    }
    wall();
    cpu();
    Criterion::default().configure_from_args().final_summary();
}
