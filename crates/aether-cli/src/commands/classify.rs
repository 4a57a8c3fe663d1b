//! `aether classify`: run a `.rvne` model over a CSV of frames.
//!
//! Input: a CSV whose first row names the feature columns and whose every further row
//! is one frame (`F` numbers), or `-` for stdin, read by the one CSV reader of every
//! verb (`aether_data::dataset::CsvReader`: byte-order mark, quotes, blank lines).
//! Modes: the whole input as one sequence (default); `--window N [--stride S]`: the
//! last `N` frames every `S` frames (a rolling window, firmware style); `--stream`: the
//! logits after every frame of a live stream through per-layer KV caches, run with the
//! stream settings `aether serve` uses (`--horizon`, `--capacity`, `--eviction`,
//! `--kv`; same defaults), so the two give the same numbers on the same frames. Output:
//! a table with class names and probabilities, or `--json` (one object; one per line
//! per frame or window; a stream's lines also carry its `context` in frames).
//!
//! The input is read line by line: with `--stream` and `--window` each result is
//! printed and flushed as soon as its frame arrives, so a live pipe can be classified.
//! JSON `frame`, `start` and `end` count frames from 0; errors name the file, the row
//! (1-based line number) and the column (1-based, with its name). A raw CSI capture is
//! refused with a pointer to `aether features`. An int8 model (`aether quantize`) runs
//! on the integer head in every mode (`--stream`: its live stream, which needs a
//! horizon ≥ 2; `--backend` does not apply); its logits are `q · 2^−shift` exactly.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use aether_data::dataset::{is_raw_capture, CsvReader, DataError};
use aether_head::math::{argmax, softmax};
use aether_head::{LiveStream, RollingWindow};
use aether_pipeline::{Attention, LoadedModel};
use aether_quant::{QLiveStream, QWorkspace};
use aether_rvne::BlobView;
use anyhow::{bail, Context, Result};
use serde_json::json;

use super::plural;
use crate::args::StreamArgs;
use crate::values;

/// Arguments of `aether classify`.
#[derive(clap::Args)]
pub struct Args {
    /// The model (.rvne v1 or v2).
    #[arg(long)]
    pub model: PathBuf,
    /// CSV of frames with a header row, or `-` for stdin.
    #[arg(long)]
    pub input: String,
    /// Print the logits of the stream so far after every frame, as each frame arrives.
    #[arg(long, conflicts_with = "window")]
    pub stream: bool,
    /// Classify the last N frames (a rolling window) instead of the whole input, 1..=8192.
    #[arg(long, value_name = "N", value_parser = values::count(1, values::MAX_WINDOW))]
    pub window: Option<usize>,
    /// With --window: classify every S frames, 1..=1000000 (default N: non-overlapping windows).
    #[arg(long, value_name = "S", requires = "window", value_parser = values::count(1, values::MAX_STRIDE))]
    pub stride: Option<usize>,
    /// Override the attention backend stored in the model.
    #[arg(long, value_enum)]
    pub backend: Option<Attention>,
    /// Machine-readable output: JSON (one object per line with --stream / --window).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub stream_settings: StreamArgs,
}

struct Printer<'n> {
    names: &'n [String],
    json: bool,
    out: std::io::StdoutLock<'static>,
    header_done: bool,
}

impl Printer<'_> {
    /// One result; `key` is e.g. `("frame", 3)` or `None` for a whole-input result.
    fn result(&mut self, logits: &[f32], extra: &[(&str, usize)]) -> Result<()> {
        let mut p = vec![0.0f32; logits.len()];
        softmax(logits, &mut p);
        let c = argmax(logits);
        if self.json {
            let mut obj = serde_json::Map::new();
            for (k, v) in extra {
                obj.insert((*k).into(), json!(v));
            }
            obj.insert("logits".into(), json!(logits));
            obj.insert("probabilities".into(), json!(p));
            obj.insert("class".into(), json!(self.names[c]));
            obj.insert("class_index".into(), json!(c));
            writeln!(self.out, "{}", serde_json::Value::Object(obj))?;
        } else if extra.is_empty() || extra.iter().all(|(k, _)| *k == "frames") {
            let w = self
                .names
                .iter()
                .map(|n| n.chars().count())
                .max()
                .unwrap_or(5)
                .max(5);
            writeln!(
                self.out,
                "{:<w$}  {:>11}  {:>10}",
                "class", "probability", "logit"
            )?;
            for (i, n) in self.names.iter().enumerate() {
                let mark = if i == c { "  <" } else { "" };
                writeln!(
                    self.out,
                    "{n:<w$}  {:>11.4}  {:>10.4}{mark}",
                    p[i], logits[i]
                )?;
            }
            if let Some((_, n)) = extra.first() {
                writeln!(self.out, "({})", plural(*n, "frame"))?;
            }
        } else {
            let w = self
                .names
                .iter()
                .map(|n| n.chars().count())
                .max()
                .unwrap_or(5)
                .max(8);
            if !self.header_done {
                let keys: Vec<String> = extra.iter().map(|(k, _)| format!("{k:>7}")).collect();
                write!(self.out, "{}  {:<w$}", keys.join(" "), "class")?;
                for n in self.names {
                    write!(
                        self.out,
                        "  {:>w$}",
                        format!("p({n})"),
                        w = n.chars().count().max(6) + 3
                    )?;
                }
                writeln!(self.out)?;
                self.header_done = true;
            }
            let keys: Vec<String> = extra.iter().map(|(_, v)| format!("{v:>7}")).collect();
            write!(self.out, "{}  {:<w$}", keys.join(" "), self.names[c])?;
            for (n, pi) in self.names.iter().zip(&p) {
                write!(self.out, "  {:>w$.4}", pi, w = n.chars().count().max(6) + 3)?;
            }
            writeln!(self.out)?;
        }
        self.out.flush()?;
        Ok(())
    }
}

/// What to do with each frame as it arrives.
enum Mode {
    /// Keep every frame; classify them all at the end.
    Whole(Vec<f32>),
    /// Push into a live stream and print after every frame.
    Stream(Box<LiveStream>),
    /// The same with the integer head (int8 model); the f32 logits row.
    Stream8(Box<QLiveStream>, Vec<f32>),
    /// The last `len` frames through the integer head every `stride` frames.
    Window8 {
        frames: Vec<f32>,
        ws: Box<QWorkspace>,
        q: Vec<i32>,
        len: usize,
        stride: usize,
        logits: Vec<f32>,
    },
    /// Push into a rolling window; print every `stride` frames once it is full.
    Window {
        rw: Box<RollingWindow>,
        len: usize,
        stride: usize,
        logits: Vec<f32>,
    },
}

/// Runs `aether classify`.
pub fn run(args: Args) -> Result<()> {
    let model = LoadedModel::read(&args.model)?;
    let view = model.view()?;
    if model.int8 {
        return run_int8(&args, &model, &view);
    }
    let mut head = model.head()?;
    if let Some(b) = args.backend {
        head.set_backend(b.into());
    }
    let cfg = head.config().clone();
    let names = &model.classes;
    let (input, input_name) = open_input(&args.input)?;
    let f = cfg.features;
    let mut mode = if args.stream {
        let settings = args.stream_settings.settings(&view)?;
        Mode::Stream(Box::new(
            LiveStream::new(&head, settings).context("building the stream")?,
        ))
    } else if let Some(w) = args.window {
        Mode::Window {
            rw: Box::new(RollingWindow::new(&head, w).context("building the rolling window")?),
            len: w,
            stride: args.stride.unwrap_or(w),
            logits: vec![0.0f32; cfg.classes],
        }
    } else {
        Mode::Whole(Vec::new())
    };
    let mut pr = Printer {
        names,
        json: args.json,
        out: std::io::stdout().lock(),
        header_done: false,
    };
    let mut reader = Frames::new(input, input_name.clone(), &view, f);
    while let Some((n, row, frame)) = reader.next()? {
        let at = || format!("{input_name}: row {row}");
        match &mut mode {
            Mode::Whole(values) => values.extend_from_slice(frame),
            Mode::Stream(stream) => {
                let logits = stream.push(&head, frame).with_context(at)?.to_vec();
                pr.result(&logits, &[("frame", n), ("context", stream.context())])?;
            }
            Mode::Window {
                rw,
                len,
                stride,
                logits,
            } => {
                rw.push(frame).with_context(at)?;
                if n + 1 >= *len && (n + 1 - *len).is_multiple_of(*stride) {
                    rw.classify(&head, logits).with_context(at)?;
                    pr.result(logits, &[("start", n + 1 - *len), ("end", n)])?;
                }
            }
            Mode::Stream8(..) | Mode::Window8 { .. } => bail!("int8 modes on a float model"),
        }
    }
    let n = reader.finish()?;
    match mode {
        Mode::Whole(values) => {
            let logits = head
                .forward(&values)
                .with_context(|| format!("{input_name}: classifying {}", plural(n, "frame")))?;
            pr.result(&logits, &[("frames", n)])?;
        }
        Mode::Window { len, .. } if n < len => {
            bail!(
                "{input_name}: {}, fewer than --window {len}",
                plural(n, "frame")
            )
        }
        _ => {}
    }
    pr.out.flush()?;
    Ok(())
}

/// Input of `classify`: the reader and its display name.
fn open_input(input: &str) -> Result<(Box<dyn BufRead>, String)> {
    Ok(if input == "-" {
        (Box::new(std::io::stdin().lock()), "<stdin>".into())
    } else {
        let f = std::fs::File::open(input).with_context(|| format!("reading {input}"))?;
        (Box::new(std::io::BufReader::new(f)), input.to_string())
    })
}

/// `classify` with an int8 model: the same modes through the integer head.
fn run_int8(args: &Args, model: &LoadedModel, view: &BlobView<'_>) -> Result<()> {
    if args.backend.is_some() {
        bail!("--backend cannot override the attention of an int8 model");
    }
    let head = model.int8_head()?;
    let (f, c) = (head.features(), head.classes());
    let names = &model.classes;
    let (input, input_name) = open_input(&args.input)?;
    let mut mode = if args.stream {
        let settings = args.stream_settings.settings(view)?;
        Mode::Stream8(
            Box::new(QLiveStream::new(&head, settings.horizon).context("building the stream")?),
            vec![0.0; c],
        )
    } else if let Some(w) = args.window {
        Mode::Window8 {
            frames: Vec::with_capacity(w * f),
            ws: Box::new(QWorkspace::new(&head, w).context("building the window")?),
            q: vec![0; c],
            len: w,
            stride: args.stride.unwrap_or(w),
            logits: vec![0.0; c],
        }
    } else {
        Mode::Whole(Vec::new())
    };
    let mut pr = Printer {
        names,
        json: args.json,
        out: std::io::stdout().lock(),
        header_done: false,
    };
    let mut reader = Frames::new(input, input_name.clone(), view, f);
    while let Some((n, row, frame)) = reader.next()? {
        let at = || format!("{input_name}: row {row}");
        match &mut mode {
            Mode::Whole(values) => values.extend_from_slice(frame),
            Mode::Stream8(stream, logits) => {
                let q = stream.push(&head, frame).with_context(at)?;
                head.logits_to_f32(q, logits);
                pr.result(logits, &[("frame", n), ("context", stream.context())])?;
            }
            Mode::Window8 {
                frames,
                ws,
                q,
                len,
                stride,
                logits,
            } => {
                head.check_frames(frame).with_context(at)?;
                if frames.len() == *len * f {
                    frames.drain(..f);
                }
                frames.extend_from_slice(frame);
                if n + 1 >= *len && (n + 1 - *len).is_multiple_of(*stride) {
                    head.forward_into(frames, ws, q).with_context(at)?;
                    head.logits_to_f32(q, logits);
                    pr.result(logits, &[("start", n + 1 - *len), ("end", n)])?;
                }
            }
            Mode::Stream(_) | Mode::Window { .. } => bail!("float modes on an int8 model"),
        }
    }
    let n = reader.finish()?;
    match mode {
        Mode::Whole(values) => {
            let q = head
                .forward(&values)
                .with_context(|| format!("{input_name}: classifying {}", plural(n, "frame")))?;
            let mut logits = vec![0.0f32; c];
            head.logits_to_f32(&q, &mut logits);
            pr.result(&logits, &[("frames", n)])?;
        }
        Mode::Window8 { len, .. } if n < len => {
            bail!(
                "{input_name}: {}, fewer than --window {len}",
                plural(n, "frame")
            )
        }
        _ => {}
    }
    pr.out.flush()?;
    Ok(())
}

/// `classify`'s input frames, read one line at a time as they arrive (a live pipe is
/// classified frame by frame), the header checked against the model when it appears.
struct Frames<'v, 'b> {
    input: Box<dyn BufRead>,
    name: String,
    csv: CsvReader,
    buf: Vec<u8>,
    frame: Vec<f32>,
    view: &'v BlobView<'b>,
    width: usize,
    count: usize,
}

impl<'v, 'b> Frames<'v, 'b> {
    fn new(input: Box<dyn BufRead>, name: String, view: &'v BlobView<'b>, width: usize) -> Self {
        Self {
            input,
            csv: CsvReader::new(&name),
            name,
            buf: Vec::new(),
            frame: Vec::with_capacity(width),
            view,
            width,
            count: 0,
        }
    }

    /// The next frame as (index, 1-based row, values); `None` at the end of the input.
    fn next(&mut self) -> Result<Option<(usize, usize, &[f32])>> {
        loop {
            self.buf.clear();
            let name = &self.name;
            if self
                .input
                .read_until(b'\n', &mut self.buf)
                .with_context(|| format!("reading {name}"))?
                == 0
            {
                return Ok(None);
            }
            if self.csv.line() == 0 && is_raw_capture(&self.buf) {
                bail!(DataError::RawCapture { path: name.clone() });
            }
            let Ok(line) = std::str::from_utf8(&self.buf) else {
                bail!("{name}: row {}: not UTF-8 text", self.csv.line() + 1);
            };
            self.frame.clear();
            let had_header = self.csv.header().is_some();
            if self.csv.feed(line, &mut self.frame)? {
                self.count += 1;
                return Ok(Some((self.count - 1, self.csv.line(), &self.frame)));
            }
            if !had_header && self.csv.header().is_some() {
                check_header(&self.csv, self.view, self.width)?;
            }
        }
    }

    /// Ends the input: the CSV's own end checks, and at least one frame. Returns the
    /// number of frames.
    fn finish(self) -> Result<usize> {
        self.csv.finish()?;
        if self.count == 0 {
            bail!("{}: no frames after the header row", self.name);
        }
        Ok(self.count)
    }
}

/// Checks a CSV header against the model: `width` columns, named as the model's
/// features when the file names them.
fn check_header(csv: &CsvReader, view: &BlobView<'_>, width: usize) -> Result<()> {
    let (name, row) = (csv.file(), csv.line());
    let header = csv.header().unwrap_or_default();
    if header.len() != width {
        bail!(
            "{name}: row {row}: the header has {} columns, the model takes {width} features",
            header.len()
        );
    }
    if view.has_feature_names() {
        for (i, h) in header.iter().enumerate() {
            let want = view.feature_name(i).unwrap_or("");
            if h != want {
                bail!(
                    "{name}: row {row}, column {}: header {h:?} but the model's feature {} is {want:?}",
                    i + 1,
                    i + 1
                );
            }
        }
    }
    Ok(())
}
