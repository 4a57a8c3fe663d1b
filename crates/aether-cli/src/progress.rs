//! The training progress of the command line: a bar on a terminal, plain lines off one.
//!
//! The pipeline reports through [`aether_pipeline::Progress`]; this one draws the
//! optimiser steps as an indicatif bar on stderr and prints the summary and epoch lines
//! above it (indicatif draws nothing off a terminal, so the lines go to stderr as they
//! are there).

use aether_pipeline::{Progress, Silent};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress bar on stderr, redrawn for every training.
#[derive(Default)]
pub struct Bar {
    bar: Option<ProgressBar>,
}

impl Progress for Bar {
    fn line(&mut self, text: &str) {
        match &self.bar {
            Some(pb) if !pb.is_hidden() => pb.println(text),
            _ => eprintln!("{text}"),
        }
    }

    fn start(&mut self, steps: u64) {
        let pb = ProgressBar::with_draw_target(Some(steps), ProgressDrawTarget::stderr());
        pb.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} steps  {msg}  ETA {eta}")
                .expect("static template")
                .progress_chars("=> "),
        );
        self.bar = Some(pb);
    }

    fn step(&mut self, epoch: usize, mean_loss: f64, val_accuracy: f64) {
        if let Some(pb) = &self.bar {
            pb.set_prefix(format!("epoch {epoch:>3}"));
            pb.set_message(format!("loss {mean_loss:.4}  val acc {val_accuracy:.3}"));
            pb.inc(1);
        }
    }

    fn finish(&mut self) {
        if let Some(pb) = self.bar.take() {
            pb.finish_and_clear();
        }
    }
}

/// The progress of a training: a [`Bar`], or nothing when `quiet`.
pub fn training(quiet: bool) -> Box<dyn Progress> {
    if quiet {
        Box::new(Silent)
    } else {
        Box::new(Bar::default())
    }
}
