//! Recording from the live fleet (`--record DIR`): labelled segments in the dataset
//! folder layout and continuous raw captures, written by one writer thread so the
//! shards never wait on a disk.
//!
//! ```text
//! DIR/<class>/<node>_<UTC time>.csv        a finished labelled segment: header = the
//!                                          model's feature names, one row per frame (the
//!                                          node's FeatureStream output, as `aether
//!                                          features` writes it) — `aether train --data DIR`
//! DIR/<class>/.<node>_<UTC time>.csv.part  the segment being written
//! DIR/capture_<node>_<UTC hour>.cap        every raw CSI datagram of the node, back to back
//!                                          (`aether replay` / `aether features` read it;
//!                                          `aether train` skips top-level files)
//! ```
//!
//! Durability: rows go through a buffer that is flushed **and** `fdatasync`ed every
//! [`RecordConfig::flush_every`] (1 s by default), so a crash — `kill -9`, power loss —
//! loses at most the frames of the last flush interval plus those still queued for the
//! writer ([`RecordConfig::queue`]). A finished segment is synced, renamed from its
//! `.part` name and its directory synced (temp + fsync + rename). A `.part` file left
//! by a crash is cut back to its last complete row and renamed when a service starts
//! on the same directory.
//!
//! Shards hand frames over a bounded channel and never block: a full queue drops the
//! frame and counts it (`aether_record_dropped_total{reason="queue_full"}`), and the
//! segment reports how many frames it is missing. Disk errors (full, permission,
//! read-only) end the affected file, are counted in `aether_record_errors_total{kind}`
//! and shown by the API; the service keeps running.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use prometheus_client::metrics::counter::Counter;
use serde::Serialize;
use tokio::sync::oneshot;

use crate::error::ServeError;
use crate::metrics::Metrics;
use crate::node::NodeKey;

/// Recording settings.
#[derive(Debug, Clone)]
pub struct RecordConfig {
    /// The dataset folder.
    pub dir: PathBuf,
    /// Frames the shards may have queued for the writer; more are dropped and counted.
    pub queue: usize,
    /// How often open files are flushed and synced (the crash-loss bound).
    pub flush_every: Duration,
    /// Write every raw CSI datagram of every node to `DIR/capture_<node>_<hour>.cap`.
    pub capture: bool,
}

impl RecordConfig {
    /// Settings for `dir` with the defaults (queue 65,536 frames, 1 s flushes, captures on).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            queue: 65_536,
            flush_every: Duration::from_secs(1),
            capture: true,
        }
    }
}

/// Why a write failed, for metrics and the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteErrorKind {
    /// The disk or quota is full.
    NoSpace,
    /// Permission denied.
    Permission,
    /// Read-only file system.
    ReadOnly,
    /// Anything else.
    Other,
}

impl WriteErrorKind {
    /// Classifies an I/O error.
    pub fn of(e: &std::io::Error) -> Self {
        match e.raw_os_error() {
            Some(28) | Some(122) => return Self::NoSpace, // ENOSPC, EDQUOT
            Some(30) => return Self::ReadOnly,            // EROFS
            Some(1) | Some(13) => return Self::Permission, // EPERM, EACCES
            _ => {}
        }
        match e.kind() {
            ErrorKind::PermissionDenied => Self::Permission,
            _ => Self::Other,
        }
    }

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoSpace => "no_space",
            Self::Permission => "permission",
            Self::ReadOnly => "read_only",
            Self::Other => "other",
        }
    }
}

/// A failed write: its kind and message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{message}")]
pub struct WriteError {
    /// The kind.
    pub kind: WriteErrorKind,
    /// What was being written and the OS error.
    pub message: String,
}

impl WriteError {
    fn new(what: &str, path: &Path, e: &std::io::Error) -> Self {
        Self {
            kind: WriteErrorKind::of(e),
            message: format!("{what} {}: {e}", path.display()),
        }
    }
}

/// What a finished (or failed) segment holds.
#[derive(Debug, Clone, Serialize)]
pub struct SegmentReport {
    /// The file, relative to the recording directory (`<class>/<stem>.csv`).
    pub file: String,
    /// Rows written.
    pub frames: u64,
    /// Rows known to be on disk (synced).
    pub synced: u64,
    /// The error that ended it, if any (the rows before it are kept).
    pub error: Option<WriteError>,
}

/// Messages of the shards (never blocking).
#[derive(Debug)]
pub enum Frame {
    /// One feature row of segment `seg`.
    Row {
        /// The segment.
        seg: u64,
        /// The features.
        feats: Box<[f32]>,
    },
    /// The end of segment `seg` (its node expired or the service stops): finished like
    /// a stop request, after every row queued before it.
    End {
        /// The segment.
        seg: u64,
    },
    /// One raw CSI datagram of a node for the continuous capture.
    Capture {
        /// The node.
        node: NodeKey,
        /// The datagram.
        bytes: Box<[u8]>,
    },
}

/// Requests from the API (answered by the writer).
#[derive(Debug)]
enum Request {
    Start {
        seg: u64,
        class: String,
        stem: String,
        header: Vec<String>,
        reply: oneshot::Sender<Result<String, WriteError>>,
    },
    Stop {
        seg: u64,
        reply: oneshot::Sender<Option<SegmentReport>>,
    },
    Sync(oneshot::Sender<()>),
    Shutdown,
}

/// What the API shows about recording.
#[derive(Debug, Default)]
pub struct RecordStatus {
    /// The last error, if any.
    pub last_error: Mutex<Option<WriteError>>,
}

/// The shards' side: a non-blocking sender.
#[derive(Debug, Clone)]
pub struct RecordSink {
    tx: Sender<Frame>,
    dropped: Counter,
    /// Whether raw datagrams are captured.
    pub capture: bool,
}

impl RecordSink {
    /// Queues `f`; false (and counted) if the writer's queue is full.
    pub fn offer(&self, f: Frame) -> bool {
        match self.tx.try_send(f) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.inc();
                false
            }
        }
    }
}

/// The writer thread and its handles.
pub struct Recorder {
    cfg: RecordConfig,
    sink: RecordSink,
    req: Sender<Request>,
    next_seg: AtomicU64,
    /// Status shown by the API.
    pub status: Arc<RecordStatus>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// A UTC time `YYYYMMDDTHHMMSS.mmmZ` (file names: no `:`).
pub fn utc_stamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// The file-name form of a node: `127.0.0.2/5` → `127.0.0.2-n5` (no `_`, so the node
/// is the recording's group for group-wise splits).
pub fn node_stem(key: &NodeKey) -> String {
    let a: String = key
        .addr
        .to_string()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("{a}-n{}", key.node_id)
}

/// Checks a label: a class folder name (`aether_data`'s rule) of at most 64 bytes
/// that cannot be mistaken for a capture file.
pub fn check_label(class: &str) -> Result<(), String> {
    aether_data::dataset::check_class_name(class).map_err(|e| e.to_string())?;
    if class.len() > 64 {
        return Err(format!("class name longer than 64 bytes: {class:?}"));
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Cuts a `.part` segment back to its last complete row; returns the rows kept.
fn trim_to_rows(path: &Path) -> std::io::Result<u64> {
    let mut f = OpenOptions::new().read(true).write(true).open(path)?;
    let mut text = Vec::new();
    f.read_to_end(&mut text)?;
    let end = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if end < text.len() {
        f.set_len(end as u64)?;
        f.seek(SeekFrom::Start(end as u64))?;
    }
    f.sync_all()?;
    let lines = text[..end].iter().filter(|&&b| b == b'\n').count() as u64;
    Ok(lines.saturating_sub(1))
}

/// Renames the `.part` segments a crash left under `dir` to their final names, cut
/// back to their last complete row; empty ones are removed. Returns the files kept.
pub fn recover(dir: &Path) -> Result<Vec<PathBuf>, WriteError> {
    let mut kept = Vec::new();
    let Ok(classes) = std::fs::read_dir(dir) else {
        return Ok(kept);
    };
    for c in classes.flatten() {
        let cdir = c.path();
        if !cdir.is_dir() {
            continue;
        }
        let Ok(files) = std::fs::read_dir(&cdir) else {
            continue;
        };
        for f in files.flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            let Some(stem) = name
                .strip_prefix('.')
                .and_then(|n| n.strip_suffix(".csv.part"))
            else {
                continue;
            };
            let part = f.path();
            let rows = trim_to_rows(&part).map_err(|e| WriteError::new("recovering", &part, &e))?;
            if rows == 0 {
                let _ = std::fs::remove_file(&part);
                continue;
            }
            let done = cdir.join(format!("{stem}.csv"));
            std::fs::rename(&part, &done).map_err(|e| WriteError::new("renaming", &part, &e))?;
            let _ = sync_dir(&cdir);
            kept.push(done);
        }
    }
    Ok(kept)
}

impl Recorder {
    /// Creates `cfg.dir` if needed, proves it writable, recovers segments a crash left,
    /// and starts the writer thread.
    pub fn start(cfg: RecordConfig, metrics: Arc<Metrics>) -> Result<Arc<Self>, ServeError> {
        check_dir(&cfg.dir)?;
        let recovered = recover(&cfg.dir).map_err(|e| ServeError::Record(e.message))?;
        for p in &recovered {
            metrics.record_segment("recovered");
            tracing::warn!(file = %p.display(), "recovered a segment an earlier run left unfinished");
        }
        let (tx, rx) = crossbeam_channel::bounded(cfg.queue.max(1));
        let (req_tx, req_rx) = crossbeam_channel::unbounded();
        let status = Arc::new(RecordStatus::default());
        let writer = Writer {
            dir: cfg.dir.clone(),
            flush_every: cfg.flush_every,
            capture: cfg.capture,
            metrics: Arc::clone(&metrics),
            status: Arc::clone(&status),
            segments: HashMap::new(),
            captures: HashMap::new(),
            failed_dropped: metrics.record_dropped("write_failed"),
        };
        let thread = std::thread::Builder::new()
            .name("aether-record".into())
            .spawn(move || writer.run(rx, req_rx))
            .map_err(|source| ServeError::Io {
                context: "starting the recording thread",
                source,
            })?;
        Ok(Arc::new(Self {
            sink: RecordSink {
                tx,
                dropped: metrics.record_dropped("queue_full"),
                capture: cfg.capture,
            },
            cfg,
            req: req_tx,
            next_seg: AtomicU64::new(1),
            status,
            thread: Mutex::new(Some(thread)),
        }))
    }

    /// The shards' sender.
    pub fn sink(&self) -> RecordSink {
        self.sink.clone()
    }

    /// The recording directory.
    pub fn dir(&self) -> &Path {
        &self.cfg.dir
    }

    /// The settings.
    pub fn config(&self) -> &RecordConfig {
        &self.cfg
    }

    /// Opens a segment of `class` for `node` with CSV `header`; returns its id and file
    /// (relative to the directory). Blocks until the writer created the file.
    pub fn open(
        &self,
        class: &str,
        node: &NodeKey,
        header: Vec<String>,
    ) -> Result<(u64, String), WriteError> {
        let seg = self.next_seg.fetch_add(1, Ordering::Relaxed);
        let stem = format!("{}_{}", node_stem(node), utc_stamp(SystemTime::now()));
        let (reply, rx) = oneshot::channel();
        let gone = || WriteError {
            kind: WriteErrorKind::Other,
            message: "the recording thread stopped".into(),
        };
        self.req
            .send(Request::Start {
                seg,
                class: class.to_string(),
                stem,
                header,
                reply,
            })
            .map_err(|_| gone())?;
        let file = rx.blocking_recv().map_err(|_| gone())??;
        Ok((seg, file))
    }

    /// Finishes segment `seg` (after every row the shards queued for it): sync, rename.
    pub fn close(&self, seg: u64) -> Option<SegmentReport> {
        let (reply, rx) = oneshot::channel();
        self.req.send(Request::Stop { seg, reply }).ok()?;
        rx.blocking_recv().ok().flatten()
    }

    /// Writes, flushes and syncs everything queued so far.
    pub fn sync(&self) {
        let (tx, rx) = oneshot::channel();
        if self.req.send(Request::Sync(tx)).is_ok() {
            let _ = rx.blocking_recv();
        }
    }

    /// Syncs and stops the writer (open segments stay `.part`, recovered next start,
    /// unless the shards closed them).
    pub fn stop(&self) {
        let h = self.thread.lock().map(|mut t| t.take()).unwrap_or(None);
        if let Some(h) = h {
            let _ = self.req.send(Request::Shutdown);
            let _ = h.join();
        }
    }

    /// The API's view of recording.
    pub fn view(&self) -> serde_json::Value {
        let err = self.status.last_error.lock().ok().and_then(|e| e.clone());
        serde_json::json!({
            "enabled": true,
            "dir": self.cfg.dir.display().to_string(),
            "flush_every_ms": self.cfg.flush_every.as_millis() as u64,
            "queue": self.cfg.queue,
            "capture": self.cfg.capture,
            "last_error": err,
        })
    }
}

/// Creates `dir` if needed and proves it writable (a probe file is created, synced and
/// removed).
pub fn check_dir(dir: &Path) -> Result<(), ServeError> {
    let fail =
        |what: &str, e: std::io::Error| ServeError::Record(WriteError::new(what, dir, &e).message);
    std::fs::create_dir_all(dir).map_err(|e| fail("creating", e))?;
    let probe = dir.join(format!(".aether-probe-{}", std::process::id()));
    let r = File::create(&probe).and_then(|mut f| {
        f.write_all(b"probe\n")?;
        f.sync_all()
    });
    let _ = std::fs::remove_file(&probe);
    r.map_err(|e| fail("writing into", e))
}

struct Segment {
    class: String,
    stem: String,
    part: PathBuf,
    out: Option<BufWriter<File>>,
    rows: u64,
    synced: u64,
    /// Bytes handed to the file and bytes known synced (a failed write is cut back to it).
    bytes: u64,
    synced_bytes: u64,
    dirty: bool,
    error: Option<WriteError>,
    header_len: usize,
    line: String,
}

struct Capture {
    hour: u64,
    out: Option<BufWriter<File>>,
    dirty: bool,
}

struct Writer {
    dir: PathBuf,
    flush_every: Duration,
    capture: bool,
    metrics: Arc<Metrics>,
    status: Arc<RecordStatus>,
    segments: HashMap<u64, Segment>,
    captures: HashMap<NodeKey, Capture>,
    failed_dropped: Counter,
}

impl Writer {
    fn run(mut self, rx: Receiver<Frame>, req: Receiver<Request>) {
        let mut last_flush = Instant::now();
        loop {
            crossbeam_channel::select! {
                recv(rx) -> f => match f {
                    Ok(f) => self.frame(f),
                    Err(_) => break,
                },
                recv(req) -> r => match r {
                    Ok(r) => {
                        // Every row queued before the request is written first.
                        while let Ok(f) = rx.try_recv() {
                            self.frame(f);
                        }
                        if self.request(r) {
                            break;
                        }
                    }
                    Err(_) => break,
                },
                default(Duration::from_millis(100)) => {},
            }
            if last_flush.elapsed() >= self.flush_every {
                self.flush_all();
                last_flush = Instant::now();
            }
        }
        while let Ok(f) = rx.try_recv() {
            self.frame(f);
        }
        self.flush_all();
    }

    fn fail(&self, e: &WriteError) {
        self.metrics.record_error(e.kind.as_str());
        tracing::error!(kind = e.kind.as_str(), error = %e.message, "recording write failed");
        if let Ok(mut l) = self.status.last_error.lock() {
            *l = Some(e.clone());
        }
    }

    /// Handles a request; true when the writer must stop.
    fn request(&mut self, r: Request) -> bool {
        match r {
            Request::Start {
                seg,
                class,
                stem,
                header,
                reply,
            } => {
                let r = self.open(seg, &class, &stem, &header);
                if let Err(e) = &r {
                    self.fail(e);
                }
                let _ = reply.send(r);
            }
            Request::Stop { seg, reply } => {
                let r = self.segments.remove(&seg).map(|s| self.finish(s));
                let _ = reply.send(r);
            }
            Request::Sync(done) => {
                self.flush_all();
                let _ = done.send(());
            }
            Request::Shutdown => return true,
        }
        false
    }

    fn open(
        &mut self,
        seg: u64,
        class: &str,
        stem: &str,
        header: &[String],
    ) -> Result<String, WriteError> {
        let cdir = self.dir.join(class);
        std::fs::create_dir_all(&cdir).map_err(|e| WriteError::new("creating", &cdir, &e))?;
        let part = cdir.join(format!(".{stem}.csv.part"));
        let f = File::create(&part).map_err(|e| WriteError::new("creating", &part, &e))?;
        let mut out = BufWriter::with_capacity(64 * 1024, f);
        let mut line = header.join(",");
        line.push('\n');
        let w = out
            .write_all(line.as_bytes())
            .and_then(|_| out.flush())
            .and_then(|_| out.get_ref().sync_data());
        if let Err(e) = w {
            let _ = std::fs::remove_file(&part);
            return Err(WriteError::new("writing", &part, &e));
        }
        let _ = sync_dir(&cdir);
        self.metrics.record_active.inc();
        self.segments.insert(
            seg,
            Segment {
                class: class.to_string(),
                stem: stem.to_string(),
                part,
                out: Some(out),
                rows: 0,
                synced: 0,
                bytes: line.len() as u64,
                synced_bytes: line.len() as u64,
                dirty: false,
                error: None,
                header_len: header.len(),
                line: String::with_capacity(256),
            },
        );
        Ok(format!("{class}/{stem}.csv"))
    }

    fn frame(&mut self, f: Frame) {
        match f {
            Frame::Row { seg, feats } => {
                let Some(s) = self.segments.get_mut(&seg) else {
                    return;
                };
                let Some(out) = s.out.as_mut() else {
                    self.failed_dropped.inc();
                    return;
                };
                debug_assert_eq!(feats.len(), s.header_len);
                s.line.clear();
                for (i, v) in feats.iter().enumerate() {
                    if i > 0 {
                        s.line.push(',');
                    }
                    s.line.push_str(&v.to_string());
                }
                s.line.push('\n');
                match out.write_all(s.line.as_bytes()) {
                    Ok(()) => {
                        s.rows += 1;
                        s.bytes += s.line.len() as u64;
                        s.dirty = true;
                        self.metrics.record_rows.inc();
                    }
                    Err(e) => {
                        let err = WriteError::new("writing", &s.part, &e);
                        self.failed_dropped.inc_by(1 + s.rows - s.synced);
                        Self::cut_back(s);
                        s.error = Some(err.clone());
                        self.fail(&err);
                    }
                }
            }
            Frame::End { seg } => {
                if let Some(s) = self.segments.remove(&seg) {
                    let r = self.finish(s);
                    tracing::info!(file = %r.file, frames = r.frames, "labelled segment ended with its node");
                }
            }
            Frame::Capture { node, bytes } => {
                if !self.capture {
                    return;
                }
                let hour = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs()
                    / 3600;
                let c = self.captures.entry(node).or_insert(Capture {
                    hour: u64::MAX,
                    out: None,
                    dirty: false,
                });
                if c.hour != hour {
                    if let Some(mut o) = c.out.take() {
                        let _ = o.flush().and_then(|_| o.get_ref().sync_data());
                    }
                    c.hour = hour;
                    let stamp = utc_stamp(UNIX_EPOCH + Duration::from_secs(hour * 3600));
                    let path =
                        self.dir
                            .join(format!("capture_{}_{}.cap", node_stem(&node), &stamp[..11]));
                    match OpenOptions::new().create(true).append(true).open(&path) {
                        Ok(f) => c.out = Some(BufWriter::with_capacity(64 * 1024, f)),
                        Err(e) => {
                            let err = WriteError::new("creating", &path, &e);
                            self.failed_dropped.inc();
                            self.fail(&err);
                            return;
                        }
                    }
                }
                let Some(out) = c.out.as_mut() else {
                    self.failed_dropped.inc();
                    return;
                };
                match out.write_all(&bytes) {
                    Ok(()) => {
                        c.dirty = true;
                        self.metrics.record_captured.inc();
                    }
                    Err(e) => {
                        // Stop this hour's file; the next hour tries again.
                        c.out = None;
                        let err = WriteError {
                            kind: WriteErrorKind::of(&e),
                            message: format!("writing the capture of {}: {e}", node.id()),
                        };
                        self.failed_dropped.inc();
                        self.fail(&err);
                    }
                }
            }
        }
    }

    fn flush_segment(s: &mut Segment) -> Result<(), std::io::Error> {
        if let (true, Some(out)) = (s.dirty, s.out.as_mut()) {
            out.flush()?;
            out.get_ref().sync_data()?;
            s.dirty = false;
            s.synced_bytes = s.bytes;
        }
        Ok(())
    }

    /// After a failed write: the file is cut back to what was synced (a partly written
    /// row would make the CSV invalid) and closed; the unsynced rows are lost.
    fn cut_back(s: &mut Segment) {
        if let Some(out) = s.out.take() {
            let (f, _unwritten) = out.into_parts();
            let _ = f.set_len(s.synced_bytes).and_then(|_| f.sync_all());
        }
        s.rows = s.synced;
        s.bytes = s.synced_bytes;
    }

    fn flush_all(&mut self) {
        let mut errors = Vec::new();
        for s in self.segments.values_mut() {
            let before = s.synced;
            match Self::flush_segment(s) {
                Ok(()) => {
                    if s.out.is_some() {
                        s.synced = s.rows;
                    }
                }
                Err(e) => {
                    let err = WriteError::new("flushing", &s.part, &e);
                    // The buffered rows are lost; the file keeps what was synced.
                    self.failed_dropped.inc_by(s.rows - s.synced);
                    Self::cut_back(s);
                    s.error = Some(err.clone());
                    errors.push(err);
                }
            }
            self.metrics.record_rows_synced.inc_by(s.synced - before);
        }
        for c in self.captures.values_mut() {
            if let (true, Some(out)) = (c.dirty, c.out.as_mut()) {
                match out.flush().and_then(|_| out.get_ref().sync_data()) {
                    Ok(()) => c.dirty = false,
                    Err(e) => {
                        c.out = None;
                        errors.push(WriteError {
                            kind: WriteErrorKind::of(&e),
                            message: format!("flushing a capture: {e}"),
                        });
                    }
                }
            }
        }
        for e in errors {
            self.fail(&e);
        }
    }

    /// Syncs and renames a segment to its final name.
    fn finish(&mut self, mut s: Segment) -> SegmentReport {
        self.metrics.record_active.dec();
        let before = s.synced;
        if let Err(e) = Self::flush_segment(&mut s) {
            let err = WriteError::new("flushing", &s.part, &e);
            self.failed_dropped.inc_by(s.rows - s.synced);
            Self::cut_back(&mut s);
            s.error = Some(err);
        } else if s.out.is_some() {
            s.synced = s.rows;
        }
        self.metrics.record_rows_synced.inc_by(s.synced - before);
        let file = format!("{}/{}.csv", s.class, s.stem);
        let cdir = self.dir.join(&s.class);
        let done = cdir.join(format!("{}.csv", s.stem));
        if s.out.is_some() {
            if let Some(out) = s.out.take() {
                if let Err(e) = out.get_ref().sync_all() {
                    s.error = Some(WriteError::new("syncing", &s.part, &e));
                }
            }
        }
        if let Some(e) = &s.error {
            self.fail(e);
        }
        if s.synced == 0 {
            // Nothing but the header: no recording to keep.
            let _ = std::fs::remove_file(&s.part);
            self.metrics.record_segment("failed");
        } else {
            match std::fs::rename(&s.part, &done).and_then(|_| sync_dir(&cdir)) {
                Ok(()) => {}
                Err(e) => {
                    let err = WriteError::new("renaming", &s.part, &e);
                    self.fail(&err);
                    s.error.get_or_insert(err);
                }
            }
            self.metrics.record_segment(if s.error.is_some() {
                "failed"
            } else {
                "finished"
            });
        }
        SegmentReport {
            file,
            frames: s.rows,
            synced: s.synced,
            error: s.error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamps_are_civil_dates() {
        assert_eq!(utc_stamp(UNIX_EPOCH), "19700101T000000.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_709_210_096_789); // 2024-02-29 12:34:56.789
        assert_eq!(utc_stamp(t), "20240229T123456.789Z");
        let t = UNIX_EPOCH + Duration::from_secs(4_102_444_799); // 2099-12-31 23:59:59
        assert_eq!(utc_stamp(t), "20991231T235959.000Z");
    }

    #[test]
    fn node_stems_have_no_underscore() {
        let k = NodeKey::parse("127.0.0.2/5").unwrap();
        assert_eq!(node_stem(&k), "127.0.0.2-n5");
        let k = NodeKey::parse("fe80::1/0").unwrap();
        assert_eq!(node_stem(&k), "fe80--1-n0");
        assert!(check_label("wave").is_ok());
        for bad in ["", ".x", "a/b", "a\nb"] {
            assert!(check_label(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn recovery_keeps_complete_rows_only() {
        let d = tempfile::tempdir().unwrap();
        let c = d.path().join("wave");
        std::fs::create_dir_all(&c).unwrap();
        std::fs::write(c.join(".n1_t.csv.part"), "a,b\n1,2\n3,4\n5,").unwrap();
        std::fs::write(c.join(".n2_t.csv.part"), "a,b\n1").unwrap();
        let kept = recover(d.path()).unwrap();
        assert_eq!(kept, vec![c.join("n1_t.csv")]);
        assert_eq!(
            std::fs::read_to_string(c.join("n1_t.csv")).unwrap(),
            "a,b\n1,2\n3,4\n"
        );
        assert!(!c.join(".n2_t.csv.part").exists());
    }
}
