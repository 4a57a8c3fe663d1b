//! The command sequence of the top-level README ("The `aether` command") runs as
//! written, in order, from an empty directory — with small sizes appended so CI stays
//! fast (`simulate --recordings 2`, one epoch of a small head for `train`).

mod common;

use common::*;

/// The `aether …` lines of the first `sh` block after the heading, comments removed.
fn readme_commands() -> Vec<Vec<String>> {
    let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"));
    let section = readme
        .split("## The `aether` command")
        .nth(1)
        .expect("README has the `aether` command section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("an sh block");
    block
        .lines()
        .map(|l| l.split(" #").next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect()
}

/// Options appended to a README command to keep CI fast.
fn small_sizes(verb: &str) -> &'static [&'static str] {
    match verb {
        "simulate" => &["--recordings", "2"],
        "train" => &[
            "--epochs",
            "1",
            "--d-model",
            "16",
            "--layers",
            "1",
            "--quiet",
        ],
        _ => &[],
    }
}

#[test]
fn readme_command_sequence_runs_as_written() {
    let commands = readme_commands();
    let verbs: Vec<&str> = commands.iter().map(|c| c[1].as_str()).collect();
    for v in ["init", "simulate", "train", "eval", "classify", "features"] {
        assert!(verbs.contains(&v), "README sequence lacks {v}: {verbs:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    for c in &commands {
        assert_eq!(c[0], "aether", "{c:?}");
        let mut args: Vec<&str> = c[1..].iter().map(String::as_str).collect();
        args.extend(small_sizes(&c[1]));
        let out = aether_in(dir.path(), &args);
        assert!(
            out.status.success(),
            "README command {c:?} failed: {}",
            stderr(&out)
        );
    }
    for produced in [
        "model.rvne",
        "trained.rvne",
        "data",
        "test",
        "captures",
        "features",
    ] {
        assert!(dir.path().join(produced).exists(), "{produced} missing");
    }
}
