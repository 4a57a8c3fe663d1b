//! Tests of the dataset readers, writer, windows and splits.

use super::*;
use crate::npy::NpyData;
use crate::rng::SplitMix64;
use crate::wire::RAW_CSI_MAGIC;
use proptest::prelude::*;

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn small() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "a/r1.csv", "x,y\n1,2\n3,4\n");
    write(d.path(), "a/r2.csv", "x,y\r\n5,6\r\n\r\n");
    write(d.path(), "b/D1_r.csv", "\"x\",\"y\"\n7,8e-1\n");
    d
}

#[test]
fn reads_folder_and_reports_skips() {
    let d = small();
    write(d.path(), "README.txt", "synthetic");
    write(d.path(), "NOTES.md", "x");
    write(d.path(), "b/notes.txt", "x");
    write(d.path(), "b/empty.csv", "x,y\n");
    write(d.path(), "b/.hidden.csv", "x,y\n1,2\n");
    std::fs::create_dir_all(d.path().join("b/sub")).unwrap();
    let (ds, rep) = read_dataset_dir(d.path()).unwrap();
    assert_eq!(ds.classes, ["a", "b"]);
    assert_eq!(ds.feature_names, ["x", "y"]);
    assert_eq!(ds.recordings.len(), 3);
    assert_eq!(ds.recordings[0].frames, vec![1.0, 2.0, 3.0, 4.0]);
    assert_eq!(ds.recordings[2].name, "D1_r");
    assert_eq!(ds.recordings[2].frames, vec![7.0, 0.8]);
    let reasons: Vec<SkipReason> = rep.skipped.iter().map(|s| s.1).collect();
    assert_eq!(
        reasons,
        [
            SkipReason::TopLevelFile,
            SkipReason::Hidden,
            SkipReason::NoFrames,
            SkipReason::NotCsv,
            SkipReason::NestedDirectory
        ]
    );
    assert!(rep.to_string().contains("5 entries skipped"));
    assert!(rep.readme.as_deref().unwrap().ends_with("README.txt"));
    assert!(!rep.to_string().contains("README.txt"));
}

#[test]
fn csv_reader_reads_line_by_line_with_line_numbers() {
    let mut r = CsvReader::new("live");
    let mut out = Vec::new();
    assert!(!r.feed("\u{feff}a,\"b\"\r\n", &mut out).unwrap());
    assert_eq!(r.header().unwrap(), ["a", "b"]);
    assert!(!r.feed("\n", &mut out).unwrap());
    assert!(r.feed(" 1, 2\r\n", &mut out).unwrap());
    assert!(r.feed("3,4", &mut out).unwrap());
    assert_eq!(out, [1.0, 2.0, 3.0, 4.0]);
    assert_eq!(r.line(), 4);
    let e = r.feed("5,x\n", &mut out).unwrap_err();
    assert_eq!(out.len(), 4, "a refused row leaves the output as it was");
    assert!(
        matches!(&e, DataError::NonNumeric { row: 5, col: 2, column, .. } if column == "b"),
        "{e}"
    );
    let e = r.feed("5\n", &mut out).unwrap_err();
    assert!(
        matches!(e, DataError::RaggedRow { row: 6, got: 1, .. }),
        "{e}"
    );
    assert!(CsvReader::new("f").finish().is_err());
    // the byte-order mark is only skipped at the very start of the input
    let e = parse_csv("a\n\u{feff}1\n", "f").unwrap_err();
    assert!(matches!(e, DataError::NonNumeric { row: 2, .. }), "{e}");
    let (h, v) = parse_csv("\u{feff}a0_b00,x\n1,2\n", "f").unwrap();
    assert_eq!((h, v), (vec!["a0_b00".into(), "x".into()], vec![1.0, 2.0]));
}

#[test]
fn raw_captures_and_half_npy_pairs_are_named() {
    let magic = RAW_CSI_MAGIC.to_le_bytes();
    let d = tempfile::tempdir().unwrap();
    for c in ["a", "b"] {
        std::fs::create_dir_all(d.path().join(c)).unwrap();
        std::fs::write(d.path().join(c).join("cap.bin"), magic).unwrap();
    }
    let e = read_dataset_dir(d.path()).unwrap_err();
    assert!(
        matches!(&e, DataError::OnlyRawCaptures { class, example } if class == "a" && example.ends_with("cap.bin")),
        "{e}"
    );
    assert!(e.to_string().contains("aether features"), "{e}");
    write(d.path(), "a/r.csv", "x\n1\n");
    write(d.path(), "b/r.csv", "x\n2\n");
    std::fs::write(d.path().join("b").join("cap.csv"), magic).unwrap();
    let (ds, rep) = read_dataset_dir(d.path()).unwrap();
    assert_eq!(ds.recordings.len(), 2);
    let reasons: Vec<SkipReason> = rep.skipped.iter().map(|s| s.1).collect();
    assert_eq!(reasons, [SkipReason::RawCapture; 3]);
    let e = read_dataset_dir(&d.path().join("a").join("cap.bin")).unwrap_err();
    assert!(matches!(e, DataError::RawCapture { .. }), "{e}");
    std::fs::write(d.path().join("b").join("z.csv"), [0xffu8, 0xfe, b'\n']).unwrap();
    let e = read_dataset_dir(d.path()).unwrap_err();
    assert!(matches!(e, DataError::NotUtf8 { .. }), "{e}");

    let n = tempfile::tempdir().unwrap();
    std::fs::write(n.path().join("X.npy"), b"").unwrap();
    let e = load_dataset(n.path()).unwrap_err();
    assert!(
        matches!(
            e,
            DataError::NpyMissing {
                missing: "y.npy",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("y.npy is missing"), "{e}");
    std::fs::rename(n.path().join("X.npy"), n.path().join("y.npy")).unwrap();
    let e = load_dataset(n.path()).unwrap_err();
    assert!(matches!(
        e,
        DataError::NpyMissing {
            missing: "X.npy",
            ..
        }
    ));
}

fn err_of(files: &[(&str, &str)]) -> DataError {
    let d = tempfile::tempdir().unwrap();
    for (p, t) in files {
        write(d.path(), p, t);
    }
    read_dataset_dir(d.path()).unwrap_err()
}

#[test]
fn error_paths_name_file_row_column() {
    let ok = ("z/ok.csv", "x,y\n1,2\n");
    let e = err_of(&[("a/r.csv", "x,y\n1,2\n3\n"), ok]);
    assert!(
        matches!(
            e,
            DataError::RaggedRow {
                row: 3,
                expected: 2,
                got: 1,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("r.csv: row 3 has 1 cells"));
    let e = err_of(&[("a/r.csv", "x,y\n1,abc\n"), ok]);
    assert!(
        matches!(&e, DataError::NonNumeric { row: 2, col: 2, column, cell, .. } if column == "y" && cell == "abc"),
        "{e}"
    );
    let e = err_of(&[("a/r.csv", "x,y\n1,2\nNaN,1\n"), ok]);
    assert!(
        matches!(&e, DataError::NonFinite { row: 3, col: 1, .. }),
        "{e}"
    );
    let e = err_of(&[("a/r.csv", "x,y\n1,inf\n"), ok]);
    assert!(matches!(&e, DataError::NonFinite { row: 2, col: 2, .. }));
    let e = err_of(&[("a/r.csv", "x,y\n1,1e39\n"), ok]);
    assert!(matches!(&e, DataError::NonFinite { .. }));
    let e = err_of(&[("a/r.csv", "x,z\n1,2\n"), ok]);
    assert!(
        matches!(&e, DataError::HeaderMismatch { detail, .. } if detail.contains("column 2")),
        "{e}"
    );
    let e = err_of(&[("a/r.csv", "x\n1\n"), ok]);
    assert!(
        matches!(&e, DataError::HeaderMismatch { detail, .. } if detail.contains("columns instead of"))
    );
    let e = err_of(&[("a/r.csv", ""), ok]);
    assert!(matches!(e, DataError::EmptyFile { .. }));
    let e = err_of(&[("a/r.csv", "1,2\n3,4\n"), ok]);
    assert!(matches!(e, DataError::MissingHeader { .. }));
    let e = err_of(&[("a/r.csv", "x,,y\n1,2,3\n"), ok]);
    assert!(matches!(e, DataError::EmptyColumnName { col: 2, .. }));
    let e = err_of(&[("a/r.csv", "x,x\n1,2\n"), ok]);
    assert!(matches!(e, DataError::DuplicateColumn { .. }));
    let e = err_of(&[("a/r.csv", "x,y\n"), ok]);
    assert_eq!(e, DataError::EmptyClass { class: "a".into() });
    let e = err_of(&[("a/r.txt", "x,y\n1,2\n"), ok]);
    assert_eq!(e, DataError::EmptyClass { class: "a".into() });
    let e = err_of(&[ok]);
    assert!(matches!(e, DataError::TooFewClasses { found: 1, .. }));
    let e = err_of(&[("README.txt", "x")]);
    assert!(matches!(e, DataError::NoClasses(_)));
    let d = tempfile::tempdir().unwrap();
    assert!(matches!(
        read_dataset_dir(&d.path().join("missing")),
        Err(DataError::Io { .. })
    ));
    write(d.path(), "f", "x");
    assert!(matches!(
        read_dataset_dir(&d.path().join("f")),
        Err(DataError::NotADirectory(_))
    ));
}

fn ds(counts: &[usize], t: usize) -> Dataset {
    let mut recordings = Vec::new();
    for (c, &n) in counts.iter().enumerate() {
        for i in 0..n {
            recordings.push(Recording {
                class: c,
                name: format!("G{}_c{c}_r{i}", i % 2),
                frames: (0..t * 2).map(|v| v as f32).collect(),
            });
        }
    }
    Dataset {
        classes: (0..counts.len()).map(|c| format!("c{c}")).collect(),
        feature_names: vec!["u".into(), "v".into()],
        recordings,
    }
}

#[test]
fn npy_input() {
    use crate::npy::encode_npy;
    let x = encode_npy(
        &[3, 2, 2],
        &NpyData::Float((0..12).map(|v| v as f64).collect()),
    );
    let y = encode_npy(&[3], &NpyData::Int(vec![0, 1, 1]));
    let d = dataset_from_npy(&x, &y, None).unwrap();
    assert_eq!(d.classes, ["class0", "class1"]);
    assert_eq!(d.recordings[2].frames, vec![8.0, 9.0, 10.0, 11.0]);
    assert_eq!(d.recordings[1].name, "sample00001");
    let d = dataset_from_npy(&x, &y, Some("still\nmove\n")).unwrap();
    assert_eq!(d.classes, ["still", "move"]);
    assert!(matches!(
        dataset_from_npy(&x, &y, Some("one\n")),
        Err(DataError::LabelOutOfRange {
            index: 1,
            label: 1,
            n_classes: 1
        })
    ));
    let y3 = encode_npy(&[3], &NpyData::Int(vec![0, 2, 2]));
    assert_eq!(
        dataset_from_npy(&x, &y3, None).unwrap_err(),
        DataError::EmptyClass {
            class: "class1".into()
        }
    );
    let yneg = encode_npy(&[3], &NpyData::Int(vec![0, -1, 1]));
    assert!(matches!(
        dataset_from_npy(&x, &yneg, None),
        Err(DataError::LabelOutOfRange { .. })
    ));
    let y2 = encode_npy(&[2], &NpyData::Int(vec![0, 1]));
    assert!(matches!(
        dataset_from_npy(&x, &y2, None),
        Err(DataError::NpyShape { .. })
    ));
    let x2 = encode_npy(&[3, 4], &NpyData::Float(vec![0.0; 12]));
    assert!(matches!(
        dataset_from_npy(&x2, &y, None),
        Err(DataError::NpyShape { .. })
    ));
    let xi = encode_npy(&[3, 2, 2], &NpyData::Int(vec![0; 12]));
    assert!(matches!(
        dataset_from_npy(&xi, &y, None),
        Err(DataError::NpyShape { .. })
    ));
    let xn = encode_npy(&[3, 2, 2], &NpyData::Float(vec![f64::NAN; 12]));
    assert!(matches!(
        dataset_from_npy(&xn, &y, None),
        Err(DataError::NpyShape { .. })
    ));
    assert!(matches!(
        dataset_from_npy(b"nope", &y, None),
        Err(DataError::Npy { .. })
    ));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("X.npy"), &x).unwrap();
    std::fs::write(dir.path().join("y.npy"), &y).unwrap();
    std::fs::write(dir.path().join("classes.txt"), "p\nq\n").unwrap();
    let (d, _) = load_dataset(dir.path()).unwrap();
    assert_eq!(d.classes, ["p", "q"]);
}

#[test]
fn windows_policy() {
    let mut d = ds(&[1, 1], 10);
    d.recordings[1].frames.truncate(6); // 3 frames
    let cfg = WindowConfig {
        len: 4,
        stride: 4,
        short: ShortPolicy::Whole,
    };
    let (w, skipped) = d.windows(cfg).unwrap();
    assert!(skipped.is_empty());
    let starts: Vec<(usize, usize, usize)> =
        w.iter().map(|w| (w.recording, w.start, w.len)).collect();
    assert_eq!(starts, [(0, 0, 4), (0, 4, 4), (0, 6, 4), (1, 0, 3)]);
    let (w, skipped) = d
        .windows(WindowConfig {
            short: ShortPolicy::Skip,
            ..cfg
        })
        .unwrap();
    assert_eq!((w.len(), skipped), (3, vec![1]));
    let (w, _) = d
        .windows(WindowConfig {
            short: ShortPolicy::Pad,
            ..cfg
        })
        .unwrap();
    let mut buf = Vec::new();
    d.window_data(&w[3], &mut buf);
    assert_eq!(buf, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 4.0, 5.0]);
    assert!(matches!(
        d.windows(WindowConfig { len: 0, ..cfg }),
        Err(DataError::BadWindow { .. })
    ));
}

#[test]
fn splits() {
    let d = ds(&[10, 3, 2, 1], 2);
    let s = d.split(0.2, 0.2, 7).unwrap();
    let mut all: Vec<usize> = s
        .train
        .iter()
        .chain(&s.val)
        .chain(&s.test)
        .copied()
        .collect();
    all.sort_unstable();
    assert_eq!(all, (0..16).collect::<Vec<_>>());
    let count = |v: &[usize], c: usize| v.iter().filter(|&&i| d.recordings[i].class == c).count();
    assert_eq!(
        (count(&s.train, 0), count(&s.val, 0), count(&s.test, 0)),
        (6, 2, 2)
    );
    assert_eq!(
        (count(&s.train, 1), count(&s.val, 1), count(&s.test, 1)),
        (1, 1, 1)
    );
    assert_eq!(
        (count(&s.train, 2), count(&s.val, 2), count(&s.test, 2)),
        (1, 0, 1)
    );
    assert_eq!(
        (count(&s.train, 3), count(&s.val, 3), count(&s.test, 3)),
        (1, 0, 0)
    );
    assert_eq!(s, d.split(0.2, 0.2, 7).unwrap());
    assert_ne!(s, d.split(0.2, 0.2, 8).unwrap());
    assert!(d.split(0.5, 0.5, 1).is_err());
    assert!(d.split(-0.1, 0.2, 1).is_err());
    assert!(d.split(f64::NAN, 0.2, 1).is_err());

    let folds = d.kfold(5, 3).unwrap();
    let mut tested: Vec<usize> = folds.iter().flat_map(|f| f.test.clone()).collect();
    tested.sort_unstable();
    assert_eq!(tested, (0..16).collect::<Vec<_>>());
    for f in &folds {
        assert!(f.test.len() == 3 || f.test.len() == 4);
        assert_eq!(f.train.len() + f.test.len(), 16);
        assert!(f.train.iter().all(|i| !f.test.contains(i)));
    }
    assert_eq!(
        d.kfold(1, 0).unwrap_err(),
        DataError::BadFolds {
            k: 1,
            recordings: 16
        }
    );
    assert!(d.kfold(17, 0).is_err());

    let g = d.groups();
    assert_eq!(g.keys().collect::<Vec<_>>(), ["G0", "G1"]);
    let s = d.split_by_groups(&["G0"], &["G1"]).unwrap();
    assert!(s
        .train
        .iter()
        .all(|&i| d.recordings[i].name.starts_with("G0_")));
    assert!(s
        .test
        .iter()
        .all(|&i| d.recordings[i].name.starts_with("G1_")));
    assert_eq!(s.train.len() + s.test.len(), 16);
    assert_eq!(
        d.split_by_groups(&["G0"], &["D9"]).unwrap_err(),
        DataError::UnknownGroup("D9".into())
    );
    assert_eq!(group_key("D1_e06_tx"), "D1");
    assert_eq!(group_key("plain"), "plain");
}

#[test]
fn writer_validates_names() {
    let mut d = ds(&[1, 1], 2);
    d.classes[0] = "../evil".into();
    assert!(matches!(
        d.to_files(),
        Err(DataError::InvalidName { what: "class", .. })
    ));
    let mut d = ds(&[1, 1], 2);
    d.recordings[0].name = ".x".into();
    assert!(matches!(
        d.to_files(),
        Err(DataError::InvalidName {
            what: "recording",
            ..
        })
    ));
    let mut d = ds(&[1, 1], 2);
    d.feature_names[0] = "a,b".into();
    assert!(matches!(
        d.to_files(),
        Err(DataError::InvalidName {
            what: "feature",
            ..
        })
    ));
    let mut d = ds(&[1, 1], 2);
    d.recordings[0].frames.pop();
    assert!(matches!(d.to_files(), Err(DataError::Inconsistent(_))));
    let mut d = ds(&[2, 1], 2);
    d.recordings[1].name = d.recordings[0].name.clone();
    assert!(matches!(d.to_files(), Err(DataError::Inconsistent(_))));
    let mut d = ds(&[1, 1], 2);
    d.recordings[1].class = 0;
    assert!(matches!(d.to_files(), Err(DataError::EmptyClass { .. })));
    let mut one = ds(&[2], 2);
    assert_eq!(one.to_files().unwrap().len(), 2);
    assert!(matches!(one.validate(), Err(DataError::Inconsistent(_))));
    one.classes.clear();
    assert!(matches!(one.to_files(), Err(DataError::Inconsistent(_))));
}

proptest! {
    #[test]
    fn csv_round_trip(n_classes in 2usize..4, per in 1usize..4, t in 1usize..6,
                      d in 1usize..5, seed in any::<u64>()) {
        let mut r = SplitMix64::new(seed);
        let mut recordings = Vec::new();
        for c in 0..n_classes {
            for i in 0..per {
                let frames = (0..t * d).map(|_| {
                    let x = (r.normal() * 10f64.powi(r.below(12) as i32 - 6)) as f32;
                    if r.below(10) == 0 { 0.0 } else { x }
                }).collect();
                recordings.push(Recording { class: c, name: format!("rec{i}"), frames });
            }
        }
        let ds = Dataset {
            classes: (0..n_classes).map(|c| format!("class {c}")).collect(),
            feature_names: (0..d).map(|k| format!("f{k}")).collect(),
            recordings,
        };
        let dir = tempfile::tempdir().unwrap();
        for f in ds.to_files().unwrap() {
            write(dir.path(), &format!("{}/{}", f.class, f.file_name), &f.contents);
        }
        let (back, rep) = read_dataset_dir(dir.path()).unwrap();
        prop_assert!(rep.skipped.is_empty());
        prop_assert_eq!(back, ds);
    }

    #[test]
    fn parse_csv_never_panics(s in "[0-9a-z,.\\-\\n\" ]{0,80}") {
        let _ = parse_csv(&s, "f.csv");
    }

    #[test]
    fn windows_cover_every_frame(t in 1usize..40, len in 1usize..12, stride in 1usize..12) {
        let d = ds(&[1, 1], t);
        let (w, _) = d.windows(WindowConfig { len, stride, short: ShortPolicy::Whole }).unwrap();
        let mut covered = vec![false; t];
        for x in w.iter().filter(|w| w.recording == 0) {
            prop_assert!(x.start + x.frames <= t);
            prop_assert_eq!(x.frames, len.min(t));
            for c in &mut covered[x.start..x.start + x.frames] { *c = true; }
        }
        if stride <= len {
            prop_assert!(covered.iter().all(|&c| c));
        }
        prop_assert!(covered[0] && covered[t - 1]);
    }

    #[test]
    fn split_is_a_partition(counts in proptest::collection::vec(1usize..9, 2..5),
                            val in 0.0f64..0.4, test in 0.0f64..0.4, seed in any::<u64>()) {
        let d = ds(&counts, 1);
        let s = d.split(val, test, seed).unwrap();
        let mut all: Vec<usize> = s.train.iter().chain(&s.val).chain(&s.test).copied().collect();
        all.sort_unstable();
        prop_assert_eq!(all, (0..d.recordings.len()).collect::<Vec<_>>());
        for c in 0..counts.len() {
            prop_assert!(s.train.iter().any(|&i| d.recordings[i].class == c));
        }
    }
}
