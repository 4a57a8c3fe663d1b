//! A physical multipath CSI simulator.
//!
//! Channel of subcarrier `k` at frame time `t` (HT20, 2.4 GHz, 64
//! subcarriers, spacing 312.5 kHz, `f_k = 2412 MHz + k·312.5 kHz`,
//! `k ∈ −32..31`, active `1 ≤ |k| ≤ 26`):
//!
//! `H_k(t) = Σ_static a_p·e^{j(φ_p − 2π f_k d_p / c)} + Σ_body σ_b/(d1_b(t)·d2_b(t))·e^{j(φ_b − 2π f_k (d1_b(t) + d2_b(t)) / c)}`
//!
//! where static paths (line of sight `a = 1/L`, walls and furniture
//! `a = ρ/d`) are fixed per room and every body point `b` (torso, head, chest,
//! abdomen, elbows, hands, hips) reflects with cross-section `σ_b` over the
//! bistatic path `d1 = |tx − p_b(t)|`, `d2 = |p_b(t) − rx|` whose point
//! follows the activity. Each frame then gets a random common phase and
//! timing slope (CFO/STO), complex white noise at the recording's SNR, an
//! AGC gain with occasional steps, and is quantised to int8 I/Q like a node. The
//! frames are encoded as raw CSI frames, parsed back and passed through
//! [`crate::features::extract_frames`] — the extractor used for real captures.
//!
//! Each seed draws its own pool of rooms and subjects; each recording picks a
//! room and a subject and draws its own orientation, position, speed, SNR,
//! sample-rate offset and timing jitter. Output is deterministic per seed.
//! docs/simulator.md describes the classes and parameter ranges.

use crate::dataset::{Dataset, Recording};
use crate::features::{extract_frames, feature_names, FeatureConfig, FeatureError};
use crate::rng::SplitMix64;
use crate::wire::{encode_capture, parse_capture, RawCsiFrame};

const C: f64 = 299_792_458.0;
const F0: f64 = 2_412e6;
const SPACING: f64 = 312.5e3;
/// Subcarriers per frame (HT20).
pub const N_SUBCARRIERS: usize = 64;
const ROOMS_PER_SEED: usize = 32;
const SUBJECTS_PER_SEED: usize = 24;

/// A simulated task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// Arm gestures: wave, circle, push, swipe (300 frames at 100 Hz).
    Gesture,
    /// Fall vs sitting down vs nothing (≈200 frames at 50 Hz).
    Fall,
    /// Breathing quality: normal, shallow, apnea, paradoxical (500 frames at 20 Hz).
    Breathing,
    /// Routine vs anomalous motion (≈300 frames at 50 Hz).
    Anomaly,
}

/// Why a simulation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// Zero recordings per class requested.
    #[error("recordings per class must be at least 1")]
    NoRecordings,
    /// An unknown task name.
    #[error("unknown task `{0}` (gesture, fall, breathing, anomaly)")]
    UnknownTask(String),
    /// The feature extractor refused the simulated frames.
    #[error("feature extraction: {0}")]
    Features(#[from] FeatureError),
}

impl Task {
    /// All tasks.
    pub const ALL: [Task; 4] = [Task::Gesture, Task::Fall, Task::Breathing, Task::Anomaly];

    /// Parses `gesture`, `fall`, `breathing` or `anomaly`.
    pub fn parse(s: &str) -> Result<Task, SimError> {
        match s {
            "gesture" => Ok(Task::Gesture),
            "fall" => Ok(Task::Fall),
            "breathing" => Ok(Task::Breathing),
            "anomaly" => Ok(Task::Anomaly),
            _ => Err(SimError::UnknownTask(s.to_string())),
        }
    }

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Task::Gesture => "gesture",
            Task::Fall => "fall",
            Task::Breathing => "breathing",
            Task::Anomaly => "anomaly",
        }
    }

    /// Class names, in class-index order.
    pub fn classes(self) -> &'static [&'static str] {
        match self {
            Task::Gesture => &["circle", "push", "swipe", "wave"],
            Task::Fall => &["fall", "nothing", "sit_down"],
            Task::Breathing => &["apnea", "normal", "paradoxical", "shallow"],
            Task::Anomaly => &["anomalous", "routine"],
        }
    }

    /// Frames per recording.
    pub fn frames(self) -> usize {
        match self {
            Task::Gesture => 300,
            Task::Fall => 200,
            Task::Breathing => 500,
            Task::Anomaly => 300,
        }
    }

    /// Nominal frame rate in Hz.
    pub fn rate_hz(self) -> f64 {
        match self {
            Task::Breathing => 20.0,
            Task::Gesture => 100.0,
            _ => 50.0,
        }
    }

    /// Default recordings per class (sized to train in about a minute on 2 cores).
    pub fn default_recordings(self) -> usize {
        match self {
            Task::Gesture => 500,
            Task::Fall => 200,
            Task::Breathing => 60,
            Task::Anomaly => 250,
        }
    }

    fn id(self) -> u64 {
        match self {
            Task::Gesture => 1,
            Task::Fall => 2,
            Task::Breathing => 3,
            Task::Anomaly => 4,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct V3(f64, f64, f64);

impl V3 {
    fn add(self, o: V3) -> V3 {
        V3(self.0 + o.0, self.1 + o.1, self.2 + o.2)
    }
    fn sub(self, o: V3) -> V3 {
        V3(self.0 - o.0, self.1 - o.1, self.2 - o.2)
    }
    fn mul(self, s: f64) -> V3 {
        V3(self.0 * s, self.1 * s, self.2 * s)
    }
    fn norm(self) -> f64 {
        (self.0 * self.0 + self.1 * self.1 + self.2 * self.2).sqrt()
    }
}

const UP: V3 = V3(0.0, 0.0, 1.0);

/// Static geometry: transmitter, receiver and fixed reflections.
#[derive(Debug, Clone)]
struct Room {
    tx: V3,
    rx: V3,
    /// `(length m, amplitude, phase rad)` including line of sight.
    paths: Vec<(f64, f64, f64)>,
    /// Half-width of the walkable area across the link (m).
    half_width: f64,
}

impl Room {
    fn draw(r: &mut SplitMix64) -> Room {
        let l = r.uniform(3.0, 7.0);
        let tx = V3(0.0, 0.0, r.uniform(0.8, 1.6));
        let rx = V3(l, 0.0, r.uniform(0.8, 1.6));
        let los = rx.sub(tx).norm();
        let mut paths = vec![(los, 1.0 / los, 0.0)];
        for _ in 0..4 + r.below(5) {
            let d = los + r.uniform(0.5, 12.0);
            paths.push((
                d,
                r.uniform(0.15, 0.8) / d,
                r.uniform(0.0, std::f64::consts::TAU),
            ));
        }
        Room {
            tx,
            rx,
            paths,
            half_width: r.uniform(1.5, 3.0),
        }
    }
}

/// A person: height and habitual speed.
#[derive(Debug, Clone, Copy)]
struct Subject {
    height: f64,
    speed: f64,
    left_handed: bool,
    breath_hz: f64,
}

impl Subject {
    fn draw(r: &mut SplitMix64) -> Subject {
        Subject {
            height: r.uniform(1.5, 1.95),
            speed: r.uniform(0.75, 1.3),
            left_handed: r.below(5) == 0,
            breath_hz: r.uniform(0.2, 0.3),
        }
    }
}

/// Per-recording pose: position on the floor and facing direction.
#[derive(Debug, Clone, Copy)]
struct Pose {
    pos: V3,
    fwd: V3,
    right: V3,
}

fn smoothstep(x: f64) -> f64 {
    let x = x.clamp(0.0, 1.0);
    x * x * (3.0 - 2.0 * x)
}

/// A slow random wobble: sum of three sinusoids, amplitude `amp`, band `lo..hi` Hz.
#[derive(Debug, Clone)]
struct Wobble([(f64, f64, f64); 3]);

impl Wobble {
    fn draw(r: &mut SplitMix64, amp: f64, lo: f64, hi: f64) -> Wobble {
        let mut w = [(0.0, 0.0, 0.0); 3];
        for x in &mut w {
            *x = (
                amp * r.uniform(0.3, 1.0) / 1.6,
                r.uniform(lo, hi),
                r.uniform(0.0, std::f64::consts::TAU),
            );
        }
        Wobble(w)
    }
    fn at(&self, t: f64) -> f64 {
        self.0
            .iter()
            .map(|&(a, f, p)| a * (std::f64::consts::TAU * f * t + p).sin())
            .sum()
    }
}

/// A reflecting body point: position and radar cross-section scale (m²-like).
type Point = (V3, f64);

/// Everything one recording needs to produce its body points at time `t`.
struct Actor {
    task: Task,
    class: usize,
    subj: Subject,
    pose: Pose,
    // Class-specific draws.
    t0: f64,
    dur: f64,
    reps: f64,
    amp: f64,
    dir: V3,
    extra: Vec<f64>,
    sway: Wobble,
    sway2: Wobble,
    fidget: Wobble,
    breath_hz: f64,
    breath_mm: f64,
}

impl Actor {
    fn draw(task: Task, class: usize, subj: Subject, pose: Pose, r: &mut SplitMix64) -> Actor {
        let ang = r.uniform(0.0, std::f64::consts::TAU);
        let mut a = Actor {
            task,
            class,
            subj,
            pose,
            t0: 0.0,
            dur: 1.0,
            reps: 1.0,
            amp: 1.0,
            dir: V3(ang.cos(), ang.sin(), 0.0),
            extra: (0..8).map(|_| r.next_f64()).collect(),
            sway: Wobble::draw(r, 0.006, 0.1, 0.6),
            sway2: Wobble::draw(r, 0.004, 0.1, 0.6),
            fidget: Wobble::draw(r, 0.03, 0.3, 1.5),
            breath_hz: subj.breath_hz * r.uniform(0.9, 1.1),
            breath_mm: r.uniform(3.0, 6.0),
        };
        match task {
            Task::Gesture => {
                // Each gesture has its own rhythm and extent: two steady
                // turns, two push strokes, one quick sweep, four fast waves.
                a.t0 = r.uniform(0.1, 0.4);
                let (reps, dur) = match class {
                    0 => (2.0, r.uniform(1.6, 1.9)),  // circle
                    1 => (2.0, r.uniform(1.0, 1.2)),  // push
                    2 => (1.0, r.uniform(0.35, 0.5)), // swipe
                    _ => (3.0, r.uniform(1.0, 1.2)),  // wave
                };
                if class == 2 {
                    a.t0 = r.uniform(0.4, 0.8);
                }
                a.reps = reps;
                // a deliberate gesture's tempo varies less than walking pace
                a.dur = dur / subj.speed.sqrt();
                a.amp = r.uniform(0.8, 1.15);
            }
            Task::Fall => {
                a.t0 = r.uniform(0.5, 1.5);
                a.dur = match class {
                    0 => r.uniform(0.4, 0.8) / subj.speed.sqrt(),
                    _ => r.uniform(1.0, 2.0) / subj.speed,
                };
                a.amp = r.uniform(0.6, 1.0);
                // falls go mostly forward or sideways
                let side = r.uniform(-1.2, 1.2);
                a.dir = pose.fwd.mul(side.cos()).add(pose.right.mul(side.sin()));
            }
            Task::Breathing => {
                let (hz, mm) = match class {
                    1 => (r.uniform(0.2, 0.33), r.uniform(4.0, 7.0)), // normal
                    3 => (r.uniform(0.3, 0.5), r.uniform(1.0, 2.5)),  // shallow
                    0 => (r.uniform(0.15, 0.3), r.uniform(4.0, 7.0)), // apnea
                    _ => (r.uniform(0.2, 0.4), r.uniform(3.0, 6.0)),  // paradoxical
                };
                a.breath_hz = hz;
                a.breath_mm = mm;
                a.t0 = r.uniform(3.0, 10.0); // apnea onset
                a.dur = r.uniform(8.0, 15.0); // apnea length
            }
            Task::Anomaly => {
                a.amp = subj.speed * r.uniform(0.8, 1.3); // walking speed m/s
                a.reps = r.uniform(1.6, 2.0); // step frequency
                a.t0 = r.uniform(0.5, 2.0);
            }
        }
        a
    }

    fn breathing(&self, t: f64) -> f64 {
        let ph = std::f64::consts::TAU * self.breath_hz * t + self.extra[0] * std::f64::consts::TAU;
        self.breath_mm
            * 1e-3
            * (ph.sin() + 0.25 * (2.0 * ph + self.extra[1] * std::f64::consts::TAU).sin())
            / 1.25
    }

    /// Body points at time `t`.
    fn points(&self, t: f64) -> Vec<Point> {
        let h = self.subj.height;
        let Pose { pos, fwd, right } = self.pose;
        let right = if self.subj.left_handed {
            right.mul(-1.0)
        } else {
            right
        };
        let sway = fwd.mul(self.sway.at(t)).add(right.mul(self.sway2.at(t)));
        match self.task {
            Task::Gesture => {
                let base = pos.add(sway);
                let torso = base.add(UP.mul(0.55 * h)).add(fwd.mul(self.breathing(t)));
                let shoulder = base.add(UP.mul(0.82 * h)).add(right.mul(0.2));
                let la = 0.44 * h * self.amp;
                let rest = shoulder.sub(UP.mul(0.85 * la)).add(fwd.mul(0.08));
                let u = ((t - self.t0) / self.dur).clamp(0.0, 1.0);
                let tau = std::f64::consts::TAU;
                let target = match self.class {
                    // circle: constant speed in a plane tilted 45° towards the front
                    0 => {
                        let a = tau * self.reps * u;
                        let tilt = UP.add(fwd).mul(std::f64::consts::FRAC_1_SQRT_2);
                        shoulder
                            .add(fwd.mul(0.5 * la))
                            .add(right.mul(0.3 * la * a.cos()))
                            .add(tilt.mul(0.3 * la * a.sin()))
                    }
                    // push: the hand goes from the chest up and out to the full reach
                    1 => {
                        let e = 0.5 - 0.5 * (tau * self.reps * u).cos();
                        shoulder
                            .add(fwd.mul((0.2 + 0.7 * e) * la))
                            .sub(UP.mul((0.3 - 0.3 * e) * la))
                    }
                    // swipe: one quick sweep across the body along a shallow arc
                    2 => {
                        let s = 2.0 * smoothstep(u) - 1.0;
                        shoulder
                            .add(fwd.mul(0.5 * la))
                            .add(right.mul(0.6 * la * s))
                            .sub(UP.mul(0.15 * la * (1.0 - s * s)))
                    }
                    // wave: the forearm swings ±30° about the raised elbow
                    _ => {
                        let th = 0.4 * (tau * self.reps * u).sin();
                        let r = 0.45 * la;
                        shoulder
                            .add(UP.mul(0.1 * la + r * th.cos()))
                            .add(fwd.mul(0.2 * la))
                            .add(right.mul(r * th.sin()))
                    }
                };
                // raise over 0.3 s before the gesture, lower over 0.3 s after it
                let w = smoothstep((t - self.t0 + 0.3) / 0.3)
                    * (1.0 - smoothstep((t - self.t0 - self.dur) / 0.3));
                let hand = rest.add(target.sub(rest).mul(w));
                let elbow = shoulder.add(hand).mul(0.5).sub(UP.mul(0.06));
                let upper_arm = shoulder.add(elbow).mul(0.5);
                let forearm = elbow.add(hand).mul(0.5);
                vec![
                    (torso, 0.5),
                    (shoulder.add(UP.mul(0.12)), 0.15),
                    (upper_arm, 0.2),
                    (forearm, 0.25),
                    (hand, 0.3),
                ]
            }
            Task::Fall => {
                let te = self.t0;
                let u = ((t - te) / self.dur).clamp(0.0, 1.0);
                let after = (t - te - self.dur).max(0.0);
                let (torso_h, head_h, shift, micro) = match self.class {
                    0 => {
                        let p = u * u; // accelerating descent
                        let bounce = if after > 0.0 {
                            0.03 * (-after * 8.0).exp()
                                * (std::f64::consts::TAU * 3.0 * after).sin()
                        } else {
                            0.0
                        };
                        (
                            0.55 * h + (0.15 - 0.55 * h) * p + bounce,
                            0.93 * h + (0.12 - 0.93 * h) * p + bounce,
                            0.45 * h * self.amp * p,
                            0.0,
                        )
                    }
                    2 => {
                        let p = smoothstep(u);
                        let m = if after > 0.0 { 1.0 } else { 0.0 };
                        (
                            0.55 * h + (0.75 - 0.55 * h) * p, // seated torso centre ≈ 0.75 m
                            0.93 * h - 0.35 * h * p,
                            -0.15 * p,
                            m,
                        )
                    }
                    _ => (0.55 * h, 0.93 * h, 0.0, 0.3),
                };
                let base = pos
                    .add(self.dir.mul(shift))
                    .add(if self.class == 0 && u >= 1.0 {
                        V3(0.0, 0.0, 0.0)
                    } else {
                        sway
                    });
                let fid = self.fidget.at(t) * micro;
                let br = fwd.mul(self.breathing(t));
                let torso = base.add(UP.mul(torso_h)).add(br).add(right.mul(fid * 0.3));
                let head = base
                    .add(self.dir.mul(if self.class == 0 {
                        0.5 * h * self.amp * u * u
                    } else {
                        0.0
                    }))
                    .add(UP.mul(head_h))
                    .add(fwd.mul(fid * 0.5));
                let hips = base.add(UP.mul(torso_h * 0.6));
                let hand = torso
                    .add(right.mul(0.25))
                    .add(fwd.mul(0.1 + fid))
                    .add(UP.mul(fid * 0.5));
                vec![(torso, 0.5), (head, 0.2), (hips, 0.3), (hand, 0.1)]
            }
            Task::Breathing => {
                // seated, still; chest and abdomen move along the facing direction
                let chest_base = pos.add(UP.mul(1.05)).add(sway.mul(0.05));
                let abd_base = pos.add(UP.mul(0.8)).add(sway.mul(0.05));
                let mut b = self.breathing(t);
                if self.class == 0 && t >= self.t0 && t < self.t0 + self.dur {
                    b = 0.0;
                } else if self.class == 0 && t >= self.t0 + self.dur {
                    b *= 1.3; // recovery breaths are deeper
                }
                let (chest, abd) = match self.class {
                    2 => (b * 0.8, -b), // paradoxical: abdomen moves against the chest
                    _ => (b, 0.8 * b),
                };
                let heart =
                    0.0002 * (std::f64::consts::TAU * (1.0 + self.extra[2] * 0.4) * t).sin();
                vec![
                    (chest_base.add(fwd.mul(chest + heart)), 0.6),
                    (abd_base.add(fwd.mul(abd)), 0.5),
                    (pos.add(UP.mul(1.45)), 0.15),
                ]
            }
            Task::Anomaly => {
                let tau = std::f64::consts::TAU;
                let v = self.amp;
                let step = self.reps;
                let (dist, bob, swing, drop, lateral) = if self.class == 1 {
                    if self.extra[3] < 0.6 {
                        // steady walk
                        (
                            v * t,
                            0.025 * (tau * step * t).sin().abs(),
                            0.22 * (tau * step * 0.5 * t).sin(),
                            0.0,
                            0.0,
                        )
                    } else {
                        // seated typing: small fast hand motion, no displacement
                        (
                            0.0,
                            0.0,
                            0.02 * (tau * 3.0 * t).sin() * (0.5 + 0.5 * (tau * 0.4 * t).sin()),
                            -0.3 * h,
                            0.0,
                        )
                    }
                } else {
                    // erratic: direction reversals, bursts, a stumble, flailing arms
                    let turns = 2.0 + (self.extra[4] * 3.0).floor();
                    let seg = (t * turns / 6.0).floor();
                    let burst =
                        1.0 + 1.2 * (0.5 + 0.5 * (tau * 0.35 * t + self.extra[5] * 6.0).sin());
                    let sgn = if (seg as i64) % 2 == 0 { 1.0 } else { -1.0 };
                    let d = sgn * v * burst * (t * turns / 6.0).fract() * 6.0 / turns;
                    let stumble = -0.3 * (-(t - self.t0 - 2.0).powi(2) * 20.0).exp();
                    let flail =
                        0.4 * (tau * (1.2 + self.extra[6] * 1.5) * t).sin() * (tau * 0.7 * t).cos();
                    (
                        d,
                        0.04 * (tau * step * 1.4 * t).sin().abs(),
                        flail,
                        stumble,
                        0.3 * (tau * 0.5 * t).sin(),
                    )
                };
                let mut p = pos.add(self.dir.mul(dist)).add(right.mul(lateral));
                // keep within the room's walkable strip by reflecting
                p.1 = reflect(p.1, -2.5, 2.5);
                let torso = p.add(UP.mul(0.55 * h + bob + drop));
                let head = p.add(UP.mul(0.93 * h + bob + drop));
                let hand_l = torso.add(right.mul(0.25)).add(self.dir.mul(swing));
                let hand_r = torso.sub(right.mul(0.25)).sub(self.dir.mul(swing));
                let legs = p.add(UP.mul(0.3 * h)).add(self.dir.mul(swing * 0.5));
                vec![
                    (torso, 0.5),
                    (head, 0.2),
                    (hand_l, 0.1),
                    (hand_r, 0.1),
                    (legs, 0.3),
                ]
            }
        }
    }
}

fn reflect(x: f64, lo: f64, hi: f64) -> f64 {
    let w = hi - lo;
    let mut y = (x - lo).rem_euclid(2.0 * w);
    if y > w {
        y = 2.0 * w - y;
    }
    lo + y
}

/// ESP32 subcarrier order: index `i < 32` is `k = i`, else `k = i − 64`.
fn subcarrier_offset(i: usize) -> i64 {
    if i < 32 {
        i as i64
    } else {
        i as i64 - 64
    }
}

fn is_active(k: i64) -> bool {
    (1..=26).contains(&k.abs())
}

/// Raw int8 CSI frames of one simulated recording of `task`, class index
/// `class`, index `index`, under `seed` (the frames a node would send).
pub fn simulate_frames(task: Task, class: usize, index: usize, seed: u64) -> Vec<RawCsiFrame> {
    let mut pool = SplitMix64::derive(seed, &[0x5EED, task.id()]);
    let rooms: Vec<Room> = (0..ROOMS_PER_SEED).map(|_| Room::draw(&mut pool)).collect();
    let subjects: Vec<Subject> = (0..SUBJECTS_PER_SEED)
        .map(|_| Subject::draw(&mut pool))
        .collect();
    let mut r = SplitMix64::derive(seed, &[task.id(), class as u64, index as u64]);
    let room = &rooms[r.below(ROOMS_PER_SEED)];
    let mut subj = subjects[r.below(SUBJECTS_PER_SEED)];
    subj.speed *= r.uniform(0.9, 1.1);

    let l = room.rx.0;
    let tau = std::f64::consts::TAU;
    let (pos, face) = match task {
        // Gestures are made towards the node (the receiver), a breathing subject
        // sits by it (a bedside node): 0.6–1.6 m from the receiver, facing it
        // within ±25°; breathing up to 40° off the link axis, gestures 14°–57°
        // off it on either side (on the link line the bistatic path length is
        // stationary and small motions do not show).
        Task::Gesture | Task::Breathing => {
            let dist = r.uniform(0.6, 1.6);
            // Gestures are made away from the link line (see docs/simulator.md).
            let off = if task == Task::Gesture {
                let side = if r.below(2) == 0 { 1.0 } else { -1.0 };
                side * r.uniform(0.25, 1.0)
            } else {
                r.uniform(-0.7, 0.7)
            };
            let pos = V3(l - dist * off.cos(), dist * off.sin(), 0.0);
            let to_rx = (-pos.1).atan2(l - pos.0);
            (pos, to_rx + r.uniform(-0.44, 0.44))
        }
        // Falls and routines happen anywhere in the room, facing anywhere.
        _ => {
            let y = r.uniform(0.4, room.half_width) * if r.below(2) == 0 { 1.0 } else { -1.0 };
            (V3(r.uniform(0.25, 0.75) * l, y, 0.0), r.uniform(0.0, tau))
        }
    };
    let pose = Pose {
        pos,
        fwd: V3(face.cos(), face.sin(), 0.0),
        right: V3(face.sin(), -face.cos(), 0.0),
    };
    let actor = Actor::draw(task, class, subj, pose, &mut r);

    let snr_db = match task {
        Task::Breathing => r.uniform(25.0, 40.0),
        Task::Gesture => r.uniform(22.0, 35.0),
        _ => r.uniform(18.0, 35.0),
    };
    let rate = task.rate_hz() * (1.0 + r.uniform(-0.03, 0.03));
    let jitter = 0.1 / rate;
    let target = r.uniform(30.0, 90.0); // AGC target for the largest I/Q component
                                        // AGC: a fixed gain with 0–2 steps of ±1–3 dB at random frames, as a
                                        // receiver re-settles its gain now and then. A breathing monitor locks the
                                        // gain (as ESP32 breathing setups do), so it has no steps.
    let n_steps = match task {
        Task::Breathing => 0,
        _ => r.below(3),
    };
    let agc_steps: Vec<(usize, f64)> = (0..n_steps)
        .map(|_| {
            let db = r.uniform(1.0, 3.0) * if r.below(2) == 0 { 1.0 } else { -1.0 };
            (r.below(task.frames()), 10f64.powf(db / 20.0))
        })
        .collect();
    let body_phase: Vec<f64> = (0..8)
        .map(|_| r.uniform(0.0, std::f64::consts::TAU))
        .collect();

    let n = task.frames();
    let mut channels: Vec<Vec<(f64, f64)>> = Vec::with_capacity(n);
    for f in 0..n {
        let t = f as f64 / rate + r.normal() * jitter;
        let pts = actor.points(t.max(0.0));
        let mut h = vec![(0.0f64, 0.0f64); N_SUBCARRIERS];
        for (i, hk) in h.iter_mut().enumerate() {
            let k = subcarrier_offset(i);
            if !is_active(k) {
                continue;
            }
            let fk = F0 + k as f64 * SPACING;
            let beta = std::f64::consts::TAU * fk / C;
            let (mut re, mut im) = (0.0, 0.0);
            for &(d, a, ph) in &room.paths {
                let p = ph - beta * d;
                re += a * p.cos();
                im += a * p.sin();
            }
            for (b, &(p, sigma)) in pts.iter().enumerate() {
                let d1 = room.tx.sub(p).norm().max(0.1);
                let d2 = p.sub(room.rx).norm().max(0.1);
                let a = sigma / (d1 * d2);
                let ph = body_phase[b % body_phase.len()] - beta * (d1 + d2);
                re += a * ph.cos();
                im += a * ph.sin();
            }
            *hk = (re, im);
        }
        channels.push(h);
    }
    // Noise relative to the mean channel power of the recording.
    let (mut pw, mut cnt) = (0.0, 0usize);
    let mut peak: f64 = 0.0;
    for h in &channels {
        for &(re, im) in h {
            if re != 0.0 || im != 0.0 {
                pw += re * re + im * im;
                cnt += 1;
                peak = peak.max(re.abs()).max(im.abs());
            }
        }
    }
    let sigma_n = (pw / cnt.max(1) as f64).sqrt() * 10f64.powf(-snr_db / 20.0) / 2f64.sqrt();
    let scale = target / (peak + 3.0 * sigma_n).max(1e-12);
    channels
        .iter()
        .enumerate()
        .map(|(f, h)| {
            let g = agc_steps
                .iter()
                .filter(|&&(at, _)| f >= at)
                .fold(scale, |g, &(_, step)| g * step);
            let cfo = r.uniform(0.0, std::f64::consts::TAU);
            let sto = r.uniform(-0.05, 0.05);
            let mut iq = Vec::with_capacity(2 * N_SUBCARRIERS);
            for (i, &(re, im)) in h.iter().enumerate() {
                let k = subcarrier_offset(i);
                if !is_active(k) {
                    iq.extend([0, 0]);
                    continue;
                }
                let (nr, ni) = (r.normal() * sigma_n, r.normal() * sigma_n);
                let rot = cfo + sto * k as f64;
                let (c, s) = (rot.cos(), rot.sin());
                let (xr, xi) = (re + nr, im + ni);
                let q = |v: f64| (v * g).round().clamp(-127.0, 127.0) as i8;
                iq.push(q(xr * c - xi * s));
                iq.push(q(xr * s + xi * c));
            }
            RawCsiFrame {
                node_id: 1,
                n_antennas: 1,
                n_subcarriers: N_SUBCARRIERS as u16,
                freq_mhz: 2412,
                seq: f as u32,
                rssi: 0,
                noise_floor: 0,
                iq,
            }
        })
        .collect()
}

/// Name of a simulated recording: `synthetic_s{seed}_{class}_{index:03}`.
pub fn recording_name(task: Task, class: usize, index: usize, seed: u64) -> String {
    format!("synthetic_s{seed}_{}_{index:03}", task.classes()[class])
}

/// Simulates `per_class` recordings of every class of `task` under `seed`
/// and extracts their features with `cfg` (the real-capture extractor).
pub fn simulate(
    task: Task,
    per_class: usize,
    seed: u64,
    cfg: FeatureConfig,
) -> Result<Dataset, SimError> {
    if per_class == 0 {
        return Err(SimError::NoRecordings);
    }
    let mut recordings = Vec::new();
    for class in 0..task.classes().len() {
        for index in 0..per_class {
            let frames = simulate_frames(task, class, index, seed);
            // Round-trip through the wire format exactly as a capture file is read.
            let bytes = encode_capture(&frames).expect("simulated frames are well-formed");
            let (parsed, _) = parse_capture(&bytes);
            let (x, _) = extract_frames(&parsed, cfg)?;
            recordings.push(Recording {
                class,
                name: recording_name(task, class, index, seed),
                frames: x,
            });
        }
    }
    Ok(Dataset {
        classes: task.classes().iter().map(|s| s.to_string()).collect(),
        feature_names: feature_names(1, cfg),
        recordings,
    })
}

/// The README.txt written beside a simulated dataset (marks it synthetic).
pub fn readme_text(task: Task, per_class: usize, seed: u64, cfg: FeatureConfig) -> String {
    format!(
        "SYNTHETIC DATA — generated by `aether simulate`, not recorded from any person.\n\
         task: {}\nclasses: {}\nrecordings per class: {per_class}\nseed: {seed}\n\
         frames per recording: {} at about {} Hz (±3 % sample-rate offset, timing jitter)\n\
         channel: HT20, 64 subcarriers at 2412 MHz, multipath (static room paths + body reflections),\n\
         quantised to int8 I/Q like a node, then the raw-CSI feature extractor ({} bands).\n\
         Physics and parameters: docs/simulator.md.\n",
        task.name(),
        task.classes().join(", "),
        task.frames(),
        task.rate_hz(),
        cfg.bands
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_seed_dependent() {
        let cfg = FeatureConfig::default();
        let a = simulate(Task::Gesture, 2, 11, cfg).unwrap();
        let b = simulate(Task::Gesture, 2, 11, cfg).unwrap();
        let c = simulate(Task::Gesture, 2, 12, cfg).unwrap();
        assert_eq!(a, b);
        assert_ne!(a.recordings[0].frames, c.recordings[0].frames);
        assert_eq!(a.recordings.len(), 8);
        assert_eq!(a.dim(), 16);
        assert!(a
            .recordings
            .iter()
            .all(|r| r.name.starts_with("synthetic_s11_")));
        assert!(a.validate().is_ok());
        assert_eq!(simulate(Task::Fall, 0, 1, cfg), Err(SimError::NoRecordings));
        assert_eq!(Task::parse("x"), Err(SimError::UnknownTask("x".into())));
        for t in Task::ALL {
            assert_eq!(Task::parse(t.name()), Ok(t));
        }
    }

    #[test]
    fn frames_look_like_a_node() {
        let f = simulate_frames(Task::Anomaly, 0, 0, 5);
        assert_eq!(f.len(), 300);
        for fr in &f {
            assert_eq!(fr.iq.len(), 128);
            // guards and DC are zero, active subcarriers mostly not
            assert_eq!(&fr.iq[0..2], &[0, 0]);
            assert_eq!(&fr.iq[2 * 27..2 * 38], &[0; 22]);
        }
        let max = f
            .iter()
            .flat_map(|x| x.iq.iter())
            .map(|v| v.unsigned_abs())
            .max()
            .unwrap();
        assert!((20..=127).contains(&max), "{max}");
    }

    /// Breathing: in the band or gain feature with the most prominent
    /// spectral peak (peak over mean power, 0.025–5 Hz), that peak lies in
    /// 0.1–0.5 Hz (the channel itself, so no motion terms).
    #[test]
    fn breathing_peak_in_band() {
        let cfg = FeatureConfig {
            bands: 14,
            gain: true,
            motion: 0,
        };
        let rate = Task::Breathing.rate_hz();
        for i in 0..6 {
            let frames = simulate_frames(Task::Breathing, 1, i, 3);
            let (x, _) = extract_frames(&frames, cfg).unwrap();
            let d = cfg.per_antenna();
            let t = x.len() / d;
            let mut best = (0.0, 0.0); // (prominence, frequency)
            for k in 0..d {
                let mean: f64 = (0..t).map(|n| x[n * d + k] as f64).sum::<f64>() / t as f64;
                let spec: Vec<(f64, f64)> = (1..=200)
                    .map(|fi| {
                        let f = fi as f64 * 0.025;
                        let (mut re, mut im) = (0.0, 0.0);
                        for n in 0..t {
                            let v = x[n * d + k] as f64 - mean;
                            let a = std::f64::consts::TAU * f * n as f64 / rate;
                            re += v * a.cos();
                            im += v * a.sin();
                        }
                        (f, re * re + im * im)
                    })
                    .collect();
                let avg = spec.iter().map(|s| s.1).sum::<f64>() / spec.len() as f64;
                let peak = spec
                    .iter()
                    .fold((0.0, 0.0), |a, s| if s.1 > a.1 { *s } else { a });
                if avg > 0.0 && peak.1 / avg > best.0 {
                    best = (peak.1 / avg, peak.0);
                }
            }
            assert!(
                (0.1..=0.5).contains(&best.1),
                "rec {i}: peak at {} Hz",
                best.1
            );
            assert!(best.0 > 10.0, "rec {i}: prominence {}", best.0);
        }
    }

    /// Moving average over `w` frames, `(T − w + 1) × d`.
    fn smooth(x: &[f32], d: usize, w: usize) -> Vec<f64> {
        let t = x.len() / d;
        let mut o = vec![0.0; (t - w + 1) * d];
        for s in 0..=t - w {
            for k in 0..d {
                o[s * d + k] = (0..w).map(|j| x[(s + j) * d + k] as f64).sum::<f64>() / w as f64;
            }
        }
        o
    }

    /// Largest distance of smoothed frames `range` from smoothed frame `from`.
    fn max_dev(s: &[f64], d: usize, range: std::ops::Range<usize>, from: usize) -> f64 {
        range
            .map(|a| {
                (0..d)
                    .map(|k| (s[a * d + k] - s[from * d + k]).powi(2))
                    .sum::<f64>()
                    .sqrt()
            })
            .fold(0.0, f64::max)
    }

    /// Total variation of a smoothed sequence: `Σ_t ‖s[t] − s[t−1]‖`.
    fn variation(s: &[f64], d: usize) -> f64 {
        (1..s.len() / d)
            .map(|a| {
                (0..d)
                    .map(|k| (s[a * d + k] - s[(a - 1) * d + k]).powi(2))
                    .sum::<f64>()
                    .sqrt()
            })
            .sum()
    }

    /// Fall: a large change around the event, then stillness.
    #[test]
    fn fall_changes_then_stills() {
        // Band features only: they are gain invariant, so AGC steps do not count as motion.
        let cfg = FeatureConfig {
            bands: 16,
            gain: false,
            motion: 0,
        };
        let (mut fall_early, mut fall_late, mut nothing_early) = (0.0, 0.0, 0.0);
        for i in 0..6 {
            let (x, _) = extract_frames(&simulate_frames(Task::Fall, 0, i, 9), cfg).unwrap();
            let s = smooth(&x, 16, 10);
            let t = s.len() / 16;
            let early = max_dev(&s, 16, 0..t - 50, 0);
            let late = max_dev(&s, 16, t - 50..t, t - 1);
            assert!(early > late, "rec {i}: early {early} late {late}");
            fall_early += early;
            fall_late += late;
            let (y, _) = extract_frames(&simulate_frames(Task::Fall, 1, i, 9), cfg).unwrap();
            let s = smooth(&y, 16, 10);
            nothing_early += max_dev(&s, 16, 0..t - 50, 0);
        }
        assert!(fall_early > 3.0 * fall_late, "{fall_early} vs {fall_late}");
        assert!(
            fall_early > 2.0 * nothing_early,
            "{fall_early} vs {nothing_early}"
        );
    }

    /// Gestures move the channel more during the gesture than in a still
    /// subject (first 2 s of each; band features only, which AGC steps do not move).
    #[test]
    fn gesture_moves_channel() {
        let cfg = FeatureConfig {
            bands: 16,
            gain: false,
            motion: 0,
        };
        let (mut moving, mut still) = (0.0, 0.0);
        for i in 0..6 {
            for class in 0..4 {
                let (x, _) =
                    extract_frames(&simulate_frames(Task::Gesture, class, i, 4), cfg).unwrap();
                assert!(x.iter().all(|v| v.is_finite()));
                moving += variation(&smooth(&x[..100 * 16], 16, 5), 16) / 4.0;
            }
            // the same subjects standing still ("nothing" of the fall task)
            let (y, _) = extract_frames(&simulate_frames(Task::Fall, 1, i, 4), cfg).unwrap();
            still += variation(&smooth(&y[..100 * 16], 16, 5), 16);
        }
        assert!(moving > 2.0 * still, "gestures {moving} vs still {still}");
    }

    #[test]
    fn reflect_stays_in_range() {
        for i in -100..100 {
            let y = reflect(i as f64 * 0.37, -2.5, 2.5);
            assert!((-2.5..=2.5).contains(&y));
        }
    }
}
