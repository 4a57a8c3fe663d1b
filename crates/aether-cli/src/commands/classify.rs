//! `aether classify`: run a `.rvne` model over a CSV of frames.
//!
//! Input: a CSV whose first row names the feature columns and whose every further row
//! is one frame (`F` numbers), or `-` for stdin. Modes: the whole input as one
//! sequence (default); `--window N [--stride S]`: the last `N` frames every `S` frames
//! (a rolling window, firmware style); `--stream`: the logits of the stream so far after
//! every frame (exact streaming through per-layer KV caches). Output: a table with
//! class names and probabilities, or `--json` (one object; one per line per frame or
//! window). Errors name the file, row and column.

use std::io::{Read, Write};
use std::path::PathBuf;

use aether_head::math::softmax;
use aether_head::{Backend, EvictionPolicy, RollingWindow, Stream, TemporalHead};
use aether_rvne::BlobView;
use anyhow::{bail, Context, Result};
use serde_json::json;

/// Arguments of `aether classify`.
#[derive(clap::Args)]
pub struct Args {
    /// The model (.rvne v1 or v2).
    #[arg(long)]
    pub model: PathBuf,
    /// CSV of frames with a header row, or `-` for stdin.
    #[arg(long)]
    pub input: String,
    /// Print the logits of the stream so far after every frame.
    #[arg(long, conflicts_with = "window")]
    pub stream: bool,
    /// Classify the last N frames (a rolling window) instead of the whole input.
    #[arg(long, value_name = "N")]
    pub window: Option<usize>,
    /// With --window: classify every S frames (default N: non-overlapping windows).
    #[arg(long, value_name = "S", requires = "window")]
    pub stride: Option<usize>,
    /// Override the attention backend stored in the model.
    #[arg(long, value_parser = ["sparse", "dense"])]
    pub backend: Option<String>,
    /// Machine-readable output: JSON (one object per line with --stream / --window).
    #[arg(long)]
    pub json: bool,
}

/// Frames parsed from a CSV: row-major values, the header names and each frame's line.
pub struct Frames {
    /// `n · F` values.
    pub values: Vec<f32>,
    /// Column names from the header row.
    pub header: Vec<String>,
}

/// Parses CSV text (`name` is used in error messages) with exactly `width` columns.
pub fn parse_csv(text: &str, name: &str, width: usize) -> Result<Frames> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r')))
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((hline, h)) = lines.next() else {
        bail!("{name}: empty input: expected a header row naming {width} feature columns");
    };
    let header: Vec<String> = h
        .split(',')
        .map(|c| c.trim().trim_matches('"').to_string())
        .collect();
    if header.len() != width {
        bail!(
            "{name}: row {hline}: the header has {} columns, the model takes {width} features",
            header.len()
        );
    }
    if let Some((_, first)) = header.first().map(|c| (0, c)) {
        if first.parse::<f64>().is_ok() {
            bail!("{name}: row {hline}: expected a header row naming the features, found numbers");
        }
    }
    let mut values = Vec::new();
    for (row, line) in lines {
        let cells: Vec<&str> = line.split(',').collect();
        if cells.len() != width {
            bail!(
                "{name}: row {row}: {} columns, expected {width}",
                cells.len()
            );
        }
        for (col, cell) in cells.iter().enumerate() {
            let cell = cell.trim();
            let v: f32 = cell.parse().map_err(|_| {
                anyhow::anyhow!(
                    "{name}: row {row}, column {} ({}): not a number: {cell:?}",
                    col + 1,
                    header[col]
                )
            })?;
            if !v.is_finite() {
                bail!(
                    "{name}: row {row}, column {} ({}): value must be finite, got {cell:?}",
                    col + 1,
                    header[col]
                );
            }
            values.push(v);
        }
    }
    if values.is_empty() {
        bail!("{name}: no frames after the header row");
    }
    Ok(Frames { values, header })
}

fn argmax(x: &[f32]) -> usize {
    x.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
            if v > bv {
                (i, v)
            } else {
                (bi, bv)
            }
        })
        .0
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
            let w = self.names.iter().map(|n| n.len()).max().unwrap_or(5).max(5);
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
                writeln!(self.out, "({n} frames)")?;
            }
        } else {
            let w = self.names.iter().map(|n| n.len()).max().unwrap_or(5).max(8);
            if !self.header_done {
                let keys: Vec<String> = extra.iter().map(|(k, _)| format!("{k:>7}")).collect();
                write!(self.out, "{}  {:<w$}", keys.join(" "), "class")?;
                for n in self.names {
                    write!(
                        self.out,
                        "  {:>w$}",
                        format!("p({n})"),
                        w = n.len().max(6) + 3
                    )?;
                }
                writeln!(self.out)?;
                self.header_done = true;
            }
            let keys: Vec<String> = extra.iter().map(|(_, v)| format!("{v:>7}")).collect();
            write!(self.out, "{}  {:<w$}", keys.join(" "), self.names[c])?;
            for (n, pi) in self.names.iter().zip(&p) {
                write!(self.out, "  {:>w$.4}", pi, w = n.len().max(6) + 3)?;
            }
            writeln!(self.out)?;
        }
        Ok(())
    }
}

/// Runs `aether classify`.
pub fn run(args: Args) -> Result<()> {
    let model_name = args.model.display().to_string();
    let bytes = std::fs::read(&args.model).with_context(|| format!("reading {model_name}"))?;
    let view =
        BlobView::parse(&bytes).with_context(|| format!("{model_name}: not a valid .rvne file"))?;
    let mut head = TemporalHead::from_view(&view)
        .with_context(|| format!("{model_name}: cannot build the model"))?;
    match args.backend.as_deref() {
        Some("dense") => head.set_backend(Backend::Dense),
        Some("sparse") => head.set_backend(Backend::Sparse),
        _ => {}
    }
    let cfg = head.config().clone();
    let names: Vec<String> = (0..cfg.classes)
        .map(|i| {
            view.class_name(i)
                .map_or_else(|| format!("class{i}"), str::to_string)
        })
        .collect();

    let (text, input_name) = if args.input == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading stdin")?;
        (s, "<stdin>".to_string())
    } else {
        let s = std::fs::read_to_string(&args.input)
            .with_context(|| format!("reading {}", args.input))?;
        (s, args.input.clone())
    };
    let frames = parse_csv(&text, &input_name, cfg.features)?;
    if view.has_feature_names() {
        for (i, h) in frames.header.iter().enumerate() {
            let want = view.feature_name(i).unwrap_or("");
            if h != want {
                bail!(
                    "{input_name}: row 1, column {}: header {h:?} but the model's feature {} is {want:?}",
                    i + 1,
                    i + 1
                );
            }
        }
    }
    let f = cfg.features;
    let n = frames.values.len() / f;
    let mut pr = Printer {
        names: &names,
        json: args.json,
        out: std::io::stdout().lock(),
        header_done: false,
    };
    if args.stream {
        let mut s = Stream::new(&head, n, EvictionPolicy::Error).context("building the stream")?;
        for (i, fr) in frames.values.chunks(f).enumerate() {
            let logits = s
                .push(&head, fr)
                .with_context(|| format!("{input_name}: frame {i}"))?
                .to_vec();
            pr.result(&logits, &[("frame", i)])?;
        }
    } else if let Some(w) = args.window {
        if w == 0 {
            bail!("--window must be positive");
        }
        let stride = args.stride.unwrap_or(w);
        if stride == 0 {
            bail!("--stride must be positive");
        }
        if n < w {
            bail!("{input_name}: {n} frames, fewer than --window {w}");
        }
        let mut rw = RollingWindow::new(&head, w).context("building the rolling window")?;
        let mut logits = vec![0.0f32; cfg.classes];
        for (i, fr) in frames.values.chunks(f).enumerate() {
            rw.push(fr)?;
            if i + 1 >= w && (i + 1 - w) % stride == 0 {
                rw.classify(&head, &mut logits)
                    .with_context(|| format!("{input_name}: window ending at frame {i}"))?;
                pr.result(&logits, &[("start", i + 1 - w), ("end", i)])?;
            }
        }
    } else {
        let logits = head
            .forward(&frames.values)
            .with_context(|| format!("{input_name}: classifying {n} frames"))?;
        pr.result(&logits, &[("frames", n)])?;
    }
    pr.out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_errors_name_row_and_column() {
        let e = parse_csv("a,b\n1,2\n3,x\n", "f.csv", 2)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("f.csv") && e.contains("row 3") && e.contains("column 2"),
            "{e}"
        );
        let e = parse_csv("a,b\n1,2,3\n", "f.csv", 2)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("row 2") && e.contains("3 columns"), "{e}");
        let e = parse_csv("a,b,c\n1,2,3\n", "f.csv", 2)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("header has 3 columns"), "{e}");
        let e = parse_csv("a,b\n1,NaN\n", "f.csv", 2)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("finite") && e.contains("column 2 (b)"), "{e}");
        assert!(parse_csv("", "f.csv", 2).is_err());
        assert!(parse_csv("a,b\n", "f.csv", 2).is_err());
        assert!(parse_csv("1,2\n3,4\n", "f.csv", 2).is_err());
        let ok = parse_csv("\"a\", b\r\n1, 2\r\n\r\n3,4\n", "f.csv", 2).unwrap();
        assert_eq!(ok.values, vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(ok.header, vec!["a", "b"]);
    }
}
