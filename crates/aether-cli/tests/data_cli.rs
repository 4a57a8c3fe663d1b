//! End-to-end tests of `aether simulate` and `aether features` through the binary.

use std::path::Path;
use std::process::{Command, Output};

use aether_data::dataset::read_dataset_dir;
use aether_data::sim::{simulate_frames, Task};
use aether_data::wire::encode_capture;

fn aether(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aether"))
        .args(args)
        .output()
        .expect("run aether")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails(out: &Output, needle: &str) {
    assert!(!out.status.success(), "expected failure");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(needle), "stderr {err:?} lacks {needle:?}");
}

fn read_tree(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v = Vec::new();
    for c in std::fs::read_dir(root).unwrap() {
        let c = c.unwrap().path();
        if c.is_dir() {
            for f in std::fs::read_dir(&c).unwrap() {
                let f = f.unwrap().path();
                v.push((
                    f.strip_prefix(root).unwrap().display().to_string(),
                    std::fs::read(&f).unwrap(),
                ));
            }
        } else {
            v.push((
                c.strip_prefix(root).unwrap().display().to_string(),
                std::fs::read(&c).unwrap(),
            ));
        }
    }
    v.sort();
    v
}

#[test]
fn simulate_writes_a_labelled_synthetic_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("g");
    let o = out.to_str().unwrap();
    let s = ok(&aether(&[
        "simulate",
        "--task",
        "gesture",
        "--out",
        o,
        "--recordings",
        "3",
        "--seed",
        "5",
    ]));
    assert!(s.contains("12 recordings"), "{s}");
    assert!(s.contains("synthetic"));
    let readme = std::fs::read_to_string(out.join("README.txt")).unwrap();
    assert!(readme.starts_with("SYNTHETIC DATA"));
    assert!(readme.contains("seed: 5"));
    let (ds, rep) = read_dataset_dir(&out).unwrap();
    assert_eq!(ds.classes, ["circle", "push", "swipe", "wave"]);
    assert_eq!(ds.recordings.len(), 12);
    assert_eq!(ds.dim(), 16);
    assert!(ds
        .recordings
        .iter()
        .all(|r| r.name.starts_with("synthetic_s5_")));
    assert!(ds.recordings.iter().all(|r| r.frames.len() == 300 * 16));
    // README.txt is the dataset's description, recognised and not a skipped entry
    assert!(rep.skipped.is_empty(), "{rep}");
    assert!(rep.readme.is_some());
    // no temporary files left behind
    assert!(read_tree(&out).iter().all(|(p, _)| !p.contains(".tmp-")));

    // same seed → byte-identical files; other seed → different
    let again = dir.path().join("g2");
    ok(&aether(&[
        "simulate",
        "--task",
        "gesture",
        "--out",
        again.to_str().unwrap(),
        "--recordings",
        "3",
        "--seed",
        "5",
    ]));
    assert_eq!(read_tree(&out), read_tree(&again));
    let other = dir.path().join("g3");
    ok(&aether(&[
        "simulate",
        "--task",
        "gesture",
        "--out",
        other.to_str().unwrap(),
        "--recordings",
        "3",
        "--seed",
        "6",
    ]));
    let (a, b) = (read_tree(&out), read_tree(&other));
    assert_ne!(a[1].1, b[1].1);
}

#[test]
fn simulate_every_task_and_options() {
    let dir = tempfile::tempdir().unwrap();
    for (task, classes, frames) in [("fall", 3, 200), ("breathing", 4, 500), ("anomaly", 2, 300)] {
        let out = dir.path().join(task);
        ok(&aether(&[
            "simulate",
            "--task",
            task,
            "--out",
            out.to_str().unwrap(),
            "--recordings",
            "1",
            "--bands",
            "7",
            "--no-gain",
            "--no-motion",
        ]));
        let (ds, _) = read_dataset_dir(&out).unwrap();
        assert_eq!(ds.classes.len(), classes);
        assert_eq!(ds.dim(), 7);
        assert_eq!(ds.len_of(0), frames);
    }
}

#[test]
fn simulate_rejects_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x");
    let o = out.to_str().unwrap();
    fails(
        &aether(&["simulate", "--task", "dance", "--out", o]),
        "unknown task",
    );
    fails(
        &aether(&[
            "simulate",
            "--task",
            "fall",
            "--out",
            o,
            "--recordings",
            "0",
        ]),
        "must be a whole number from 1",
    );
    fails(
        &aether(&[
            "simulate",
            "--task",
            "fall",
            "--out",
            o,
            "--recordings",
            "1",
            "--bands",
            "60",
        ]),
        "active subcarriers",
    );
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "mine").unwrap();
    fails(
        &aether(&[
            "simulate",
            "--task",
            "fall",
            "--out",
            o,
            "--recordings",
            "1",
        ]),
        "not empty",
    );
    assert_eq!(
        std::fs::read_to_string(out.join("keep.txt")).unwrap(),
        "mine"
    );
}

fn capture(task: Task, class: usize, index: usize) -> Vec<u8> {
    encode_capture(&simulate_frames(task, class, index, 1)).unwrap()
}

#[test]
fn features_converts_a_capture_tree_and_counts_skips() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("captures");
    for (ci, class) in ["swipe", "wave"].iter().enumerate() {
        std::fs::create_dir_all(input.join(class)).unwrap();
        for i in 0..2 {
            let mut b = capture(Task::Gesture, 2 + ci, i);
            if ci == 0 && i == 0 {
                // garbage in front, a frame cut short in the middle, a truncated tail
                let mut g = b"noise!".to_vec();
                let frame = 20 + 128;
                g.extend(&b[..10 * frame]);
                g.extend(&b[10 * frame..11 * frame - 7]);
                g.extend(&b[11 * frame..b.len() - 3]);
                b = g;
            }
            std::fs::write(input.join(class).join(format!("rec{i}.bin")), b).unwrap();
        }
    }
    std::fs::write(input.join("README.md"), "about").unwrap();
    std::fs::write(input.join("wave").join("broken.bin"), b"no frames here").unwrap();
    let out = dir.path().join("ds");
    let s = ok(&aether(&[
        "features",
        "--input",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]));
    assert!(s.contains("4 recordings written"), "{s}");
    assert!(s.contains("skipped 2 (0 bad header, 2 truncated)"), "{s}");
    assert!(s.contains("20 garbage bytes"), "{s}"); // 6 in front + 14 in broken.bin
    assert!(s.contains("README.md"), "{s}");
    assert!(s.contains("broken.bin: no frames"), "{s}");
    let (ds, _) = read_dataset_dir(&out).unwrap();
    assert_eq!(ds.classes, ["swipe", "wave"]);
    assert_eq!(ds.len_of(0), 298);
    assert_eq!(ds.len_of(1), 300);
    assert_eq!(ds.feature_names.last().unwrap(), "a0_m4");

    // the features equal the simulator's own extraction of the same frames
    let sim = aether_data::sim::simulate(
        Task::Gesture,
        2,
        1,
        aether_data::features::FeatureConfig::default(),
    )
    .unwrap();
    let wave0 = sim
        .recordings
        .iter()
        .find(|r| r.name.ends_with("wave_000"))
        .unwrap();
    assert_eq!(ds.recordings[2].frames, wave0.frames);
}

#[test]
fn features_single_capture_and_amplitude_csvs() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("one.bin");
    std::fs::write(&file, capture(Task::Fall, 0, 0)).unwrap();
    let out = dir.path().join("one");
    let s = ok(&aether(&[
        "features",
        "--input",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--class",
        "fall",
    ]));
    assert!(s.contains("1 recording written"), "{s}");
    let text = std::fs::read_to_string(out.join("fall").join("one.csv")).unwrap();
    assert_eq!(text.lines().count(), 201);

    // amplitude CSVs in a class tree
    let input = dir.path().join("amps");
    for class in ["still", "moving"] {
        std::fs::create_dir_all(input.join(class)).unwrap();
        let mut csv = (0..20)
            .map(|k| format!("sc{k}"))
            .collect::<Vec<_>>()
            .join(",");
        csv.push('\n');
        for t in 0..30 {
            let row: Vec<String> = (0..20)
                .map(|k| format!("{}", 10.0 + ((t * k) as f32 * 0.1).sin()))
                .collect();
            csv.push_str(&row.join(","));
            csv.push('\n');
        }
        std::fs::write(input.join(class).join("r.csv"), csv).unwrap();
    }
    std::fs::write(input.join("moving").join("bad.csv"), "sc0,sc1\n1,x\n").unwrap();
    let out = dir.path().join("amps_out");
    let s = ok(&aether(&[
        "features",
        "--input",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--bands",
        "4",
        "--motion-lags",
        "2",
    ]));
    assert!(s.contains("2 recordings written"), "{s}");
    assert!(s.contains("bad.csv"), "{s}");
    assert!(s.contains("not a number"), "{s}");
    let (ds, _) = read_dataset_dir(&out).unwrap();
    assert_eq!(ds.dim(), 7); // 4 bands + log-gain + 2 motion terms
    assert_eq!(ds.len_of(0), 30);
}

#[test]
fn features_rejects_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o");
    let o = out.to_str().unwrap();
    fails(
        &aether(&[
            "features",
            "--input",
            dir.path().join("nope").to_str().unwrap(),
            "--out",
            o,
        ]),
        "no such file",
    );
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    fails(
        &aether(&["features", "--input", empty.to_str().unwrap(), "--out", o]),
        "no class folders",
    );
    let junk = dir.path().join("junk");
    std::fs::create_dir_all(junk.join("a")).unwrap();
    std::fs::write(junk.join("a").join("x.bin"), [0u8; 100]).unwrap();
    fails(
        &aether(&["features", "--input", junk.to_str().unwrap(), "--out", o]),
        "no recordings could be extracted",
    );
    assert!(!out.exists());
}
