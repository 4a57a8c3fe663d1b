//! Cross-domain evaluation and the CSI formats people record, through the binary:
//! `train --kfold-groups / --test-groups / --seeds / --group-field`, `eval --by-group`,
//! and `features` on Intel 5300 `.dat` logs and esp-csi serial logs (with and without
//! `--amplitudes`), on files the test writes itself.

mod common;

use std::path::Path;

use aether_data::readers::intel5300::{encode_bfee, Bfee};
use aether_data::sim::Task;
use common::*;
use serde_json::Value;

const TINY: [&str; 9] = [
    "--epochs",
    "1",
    "--d-model",
    "16",
    "--layers",
    "1",
    "--quiet",
    "--no-plots",
    "--threads",
];

fn tiny() -> Vec<&'static str> {
    let mut v = TINY.to_vec();
    v.push("1");
    v
}

/// A simulated dataset (3 fall classes × 6 recordings) whose recordings are renamed
/// `<group>_<chip>_<i>` so they fall into three groups of 6 by field 0 (`G1`, `G2`,
/// `G3`) and two of 9 by field 1 (`cA`, `cB`).
fn grouped(dir: &Path) -> std::path::PathBuf {
    let d = dataset(dir, "g", Task::Fall, 6, 4);
    for class in std::fs::read_dir(&d).unwrap() {
        let class = class.unwrap().path();
        if !class.is_dir() {
            continue;
        }
        let mut files: Vec<_> = std::fs::read_dir(&class)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for (i, f) in files.iter().enumerate() {
            let name = format!(
                "G{}_c{}_{i}.csv",
                1 + i % 3,
                if i % 2 == 0 { "A" } else { "B" }
            );
            std::fs::rename(f, class.join(name)).unwrap();
        }
    }
    d
}

fn report(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn leave_one_group_out_with_seeds() {
    let dir = tempfile::tempdir().unwrap();
    let d = grouped(dir.path());
    let out = dir.path().join("logo.json");
    let mut args = vec![
        "train",
        "--data",
        s(&d),
        "--out",
        s(&out),
        "--kfold-groups",
        "--seeds",
        "2",
    ];
    args.extend(tiny());
    let text = ok(&aether(&args));
    assert!(
        text.contains("leave one group out (3 groups), 2 seeds"),
        "{text}"
    );
    let r = report(&out);
    assert_eq!(r["protocol"], "kfold-groups");
    assert_eq!(r["seeds"], serde_json::json!([0, 1]));
    let tests = r["tests"].as_array().unwrap();
    let labels: Vec<&str> = tests.iter().map(|t| t["label"].as_str().unwrap()).collect();
    assert_eq!(labels, ["G1", "G2", "G3"]);
    let total: u64 = tests
        .iter()
        .map(|t| t["recordings"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 18, "every recording is tested exactly once per seed");
    for t in tests {
        let acc = &t["accuracy"];
        assert_eq!(acc["per_seed"].as_array().unwrap().len(), 2);
        let v: Vec<f64> = acc["per_seed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        let m = (v[0] + v[1]) / 2.0;
        assert!((acc["mean"].as_f64().unwrap() - m).abs() < 1e-12);
        let sd = ((v[0] - m).powi(2) + (v[1] - m).powi(2)).sqrt();
        assert!((acc["sd"].as_f64().unwrap() - sd).abs() < 1e-12);
        let conf: u64 = t["confusion"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r.as_array().unwrap())
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(conf, 2 * t["recordings"].as_u64().unwrap());
    }
    // 3 groups × 2 seeds trainings; none trains on its own test group.
    let runs = r["per_run"].as_array().unwrap();
    assert_eq!(runs.len(), 6);
    for run in runs {
        assert_eq!(
            run["train_recordings"].as_u64().unwrap() + run["val_recordings"].as_u64().unwrap(),
            12
        );
    }

    // The chip field: two groups.
    let out2 = dir.path().join("chips.json");
    let mut args = vec![
        "train",
        "--data",
        s(&d),
        "--out",
        s(&out2),
        "--kfold-groups",
        "--group-field",
        "1",
    ];
    args.extend(tiny());
    ok(&aether(&args));
    let labels: Vec<String> = report(&out2)["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["label"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(labels, ["cA", "cB"]);

    // Train on G1, test G2 and G3 separately.
    let out3 = dir.path().join("tg.json");
    let mut args = vec![
        "train",
        "--data",
        s(&d),
        "--out",
        s(&out3),
        "--groups",
        "G1",
        "--test-groups",
        "G2,G3",
        "--seeds",
        "3",
    ];
    args.extend(tiny());
    ok(&aether(&args));
    let r = report(&out3);
    assert_eq!(r["protocol"], "test-groups");
    assert_eq!(r["per_run"].as_array().unwrap().len(), 3);
    let tests = r["tests"].as_array().unwrap();
    assert_eq!(tests.len(), 2);
    assert_eq!(tests[0]["recordings"], 6);
    for run in r["per_run"].as_array().unwrap() {
        assert_eq!(
            run["train_recordings"].as_u64().unwrap() + run["val_recordings"].as_u64().unwrap(),
            6
        );
    }

    // Refusals: one group only; a field past the names; --seeds without an evaluation.
    let mut args = vec![
        "train",
        "--data",
        s(&d),
        "--out",
        s(&out),
        "--kfold-groups",
        "--groups",
        "G1",
    ];
    args.extend(tiny());
    fails(&aether(&args), &["at least two groups"]);
    let mut args = vec![
        "train",
        "--data",
        s(&d),
        "--out",
        s(&out),
        "--kfold-groups",
        "--group-field",
        "5",
    ];
    args.extend(tiny());
    fails(&aether(&args), &["no `_`-separated field 5"]);
    let m = dir.path().join("m.rvne");
    let mut args = vec!["train", "--data", s(&d), "--out", s(&m), "--seeds", "3"];
    args.extend(tiny());
    let usage = aether(&args);
    assert_eq!(usage.status.code(), Some(2), "a usage error");
    assert!(stderr(&usage).contains("--seeds"));
    let mut args = vec![
        "train",
        "--data",
        s(&d),
        "--out",
        s(&out),
        "--test-groups",
        "G9",
    ];
    args.extend(tiny());
    fails(&aether(&args), &["G9"]);
}

#[test]
fn eval_reports_every_group() {
    let dir = tempfile::tempdir().unwrap();
    let d = grouped(dir.path());
    let m = dir.path().join("m.rvne");
    let mut args = vec!["train", "--data", s(&d), "--out", s(&m)];
    args.extend(tiny());
    ok(&aether(&args));
    let j: Value = serde_json::from_str(&ok(&aether(&[
        "eval",
        "--model",
        s(&m),
        "--data",
        s(&d),
        "--by-group",
        "--json",
    ])))
    .unwrap();
    let groups = j["by_group"].as_array().unwrap();
    assert_eq!(groups.len(), 3);
    let mut correct = 0.0;
    for g in groups {
        let n = g["recordings"].as_f64().unwrap();
        correct += g["accuracy"].as_f64().unwrap() * n;
        assert!(g["confusion"].is_array() && g["macro_f1"].is_number());
    }
    assert!((correct / 18.0 - j["accuracy"].as_f64().unwrap()).abs() < 1e-9);
    let text = ok(&aether(&[
        "eval",
        "--model",
        s(&m),
        "--data",
        s(&d),
        "--by-group",
        "--group-field",
        "1",
    ]));
    assert!(
        text.contains("by group (field 1)")
            && text.contains("group cA:")
            && text.contains("group cB:"),
        "{text}"
    );
}

fn bfee(n_rx: u8, n_tx: u8, k: u32) -> Bfee {
    Bfee {
        index: 0,
        offset: 0,
        timestamp_low: 1000 * k,
        bfee_count: k as u16,
        n_rx,
        n_tx,
        rssi_a: 30,
        rssi_b: 28,
        rssi_c: 0,
        noise: -92,
        agc: 40,
        antenna_sel: 0b00_10_01,
        fake_rate_n_flags: 0x109,
        csi: (0..30 * u32::from(n_rx) * u32::from(n_tx))
            .map(|i| {
                let v = ((i * 7 + k * 3) % 41) as i8 - 20;
                [v, ((i + 2 * k) % 17) as i8 - 8]
            })
            .collect(),
    }
}

#[test]
fn features_read_intel5300_and_esp_csi_logs() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    for class in ["wave", "rest"] {
        std::fs::create_dir_all(input.join(class)).unwrap();
        let mut dat = Vec::new();
        let mut want = Vec::new();
        for k in 0..40u32 {
            // Mostly 2×2, a few 1×1 and 2×1 records (left out of the 2×2 amplitudes).
            let (nr, nt) = match k % 10 {
                3 => (1, 1),
                7 => (2, 1),
                _ => (2, 2),
            };
            let b = bfee(nr, nt, k + if class == "wave" { 0 } else { 100 });
            if (nr, nt) == (2, 2) {
                want.push(b.clone());
            }
            dat.extend(encode_bfee(&b));
        }
        dat.extend([0, 9, 0xC1, 1, 2, 3, 4, 5, 6, 7, 8]); // another record code, skipped
        std::fs::write(input.join(class).join(format!("{class}_1.dat")), &dat).unwrap();
        // The amplitudes written must be |csi| of the 2×2 records, (rx, tx, sc) order.
        if class == "wave" {
            let amp = dir.path().join("amp");
            let text = ok(&aether(&[
                "features",
                "--input",
                s(&input.join(class).join("wave_1.dat")),
                "--out",
                s(&amp),
                "--amplitudes",
            ]));
            assert!(text.contains("120 raw |I+jQ| values per record"), "{text}");
            let csv = std::fs::read_to_string(amp.join("wave").join("wave_1.csv")).unwrap();
            let mut lines = csv.lines();
            let header: Vec<&str> = lines.next().unwrap().split(',').collect();
            assert_eq!(header.len(), 120);
            assert_eq!(
                (header[0], header[30], header[119]),
                ("rx0_tx0_sc0", "rx0_tx1_sc0", "rx1_tx1_sc29")
            );
            let rows: Vec<Vec<f32>> = lines
                .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
                .collect();
            assert_eq!(rows.len(), want.len());
            for (row, b) in rows.iter().zip(&want) {
                for (c, name) in header.iter().enumerate() {
                    let (rx, tx, sc) = (c / 60, (c / 30) % 2, c % 30);
                    let [re, im] = b.csi_at(rx, tx, sc).unwrap();
                    let m = ((re as f32).powi(2) + (im as f32).powi(2)).sqrt();
                    assert_eq!(row[c], m, "{name}");
                }
            }
        }
    }
    let feats = dir.path().join("feats");
    let text = ok(&aether(&[
        "features",
        "--input",
        s(&input),
        "--out",
        s(&feats),
    ]));
    assert!(text.contains("32 features per frame"), "{text}");
    assert!(text.contains("2 records skipped"), "{text}");
    let csv = std::fs::read_to_string(feats.join("wave").join("wave_1.csv")).unwrap();
    assert!(csv.starts_with("a0_b00,"));
    assert!(csv.lines().next().unwrap().contains("a1_m4"));
    // records with Nrx = 2 (36 of 40), transmit stream 0
    assert_eq!(csv.lines().count(), 1 + 36);

    // esp-csi: a boot banner, CSI_DATA lines of 64 subcarriers, a malformed line.
    let esp = dir.path().join("esp");
    std::fs::create_dir_all(esp.join("walk")).unwrap();
    let mut log = String::from("I (312) wifi: boot\n");
    for k in 0..30 {
        let vals: Vec<String> = (0..128)
            .map(|i| ((i * 5 + k) % 31 - 15).to_string())
            .collect();
        // id, mac, rssi, rate, sig_mode, mcs, bandwidth, smoothing, not_sounding,
        // aggregation, stbc, fec_coding, sgi, noise_floor, ampdu_cnt, channel,
        // secondary_channel, local_timestamp, ant, sig_len, rx_state, len, first_word
        log += &format!(
            "CSI_DATA,{k},aa:bb:cc:dd:ee:ff,-50,11,1,0,0,0,0,0,0,0,0,-90,0,6,0,{},0,100,0,128,0,\"[{}]\"\n",
            k * 1000,
            vals.join(",")
        );
    }
    log += "CSI_DATA,broken\n";
    std::fs::write(esp.join("walk").join("walk_1.txt"), log).unwrap();
    let ef = dir.path().join("espf");
    let text = ok(&aether(&["features", "--input", s(&esp), "--out", s(&ef)]));
    assert!(text.contains("16 features per frame"), "{text}");
    let csv = std::fs::read_to_string(ef.join("walk").join("walk_1.csv")).unwrap();
    assert_eq!(csv.lines().count(), 31);
}

/// A little-endian, microsecond, Ethernet pcap of nexmon_csi packets (`None`: a DNS
/// packet to port 53), each CSI value `(re, im)` given; written from docs/readers.md.
fn nexmon_pcap(packets: &[Option<Vec<(i16, i16)>>]) -> Vec<u8> {
    let mut b = Vec::new();
    for v in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 65535, 1] {
        b.extend(v.to_le_bytes());
    }
    for (i, p) in packets.iter().enumerate() {
        let (port, payload) = match p {
            Some(csi) => {
                let mut pl = Vec::new();
                pl.extend(0x1111u16.to_le_bytes());
                pl.extend([(-45i8) as u8, 0x08, 2, 0x11, 0x22, 0x33, 0x44, 0x55]);
                pl.extend((i as u16).to_le_bytes());
                pl.extend([0, 0, 0x06, 0x10, 0x65, 0x00]);
                for (re, im) in csi {
                    pl.extend(re.to_le_bytes());
                    pl.extend(im.to_le_bytes());
                }
                (5500u16, pl)
            }
            None => (53, b"query".to_vec()),
        };
        let mut f = vec![0xffu8; 6];
        f.extend([2, 0, 0, 0, 0, 1, 0x08, 0x00, 0x45, 0]);
        f.extend(((28 + payload.len()) as u16).to_be_bytes());
        f.extend([0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        f.extend(5500u16.to_be_bytes());
        f.extend(port.to_be_bytes());
        f.extend(((8 + payload.len()) as u16).to_be_bytes());
        f.extend([0, 0]);
        f.extend(&payload);
        for v in [1_700_000_000 + i as u32, 0, f.len() as u32, f.len() as u32] {
            b.extend(v.to_le_bytes());
        }
        b.extend(f);
    }
    b
}

#[test]
fn features_read_nexmon_pcap_captures() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in").join("sit");
    std::fs::create_dir_all(&input).unwrap();
    let csi = |k: i16| -> Vec<(i16, i16)> {
        (0..64)
            .map(|i| ((i * 5 + k) % 31 - 15, (i + 2 * k) % 17 - 8))
            .collect()
    };
    let mut packets: Vec<Option<Vec<(i16, i16)>>> = (0..30).map(|k| Some(csi(k))).collect();
    packets.insert(4, None);
    packets.push(Some(vec![(1, 1); 10])); // not 64/128/256/512 subcarriers: skipped
    std::fs::write(input.join("sit_1.pcap"), nexmon_pcap(&packets)).unwrap();
    let amp = dir.path().join("amp");
    let text = ok(&aether(&[
        "features",
        "--input",
        s(&dir.path().join("in")),
        "--out",
        s(&amp),
        "--amplitudes",
    ]));
    assert!(text.contains("64 raw |I+jQ| values per record"), "{text}");
    assert!(text.contains("2 records skipped"), "{text}");
    let csv = std::fs::read_to_string(amp.join("sit").join("sit_1.csv")).unwrap();
    let mut lines = csv.lines();
    assert!(lines
        .next()
        .unwrap()
        .starts_with("rx0_tx0_sc0,rx0_tx0_sc1,"));
    let rows: Vec<Vec<f32>> = lines
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), 30);
    for (k, row) in rows.iter().enumerate() {
        for (sc, &(re, im)) in csi(k as i16).iter().enumerate() {
            let m = (f32::from(re).powi(2) + f32::from(im).powi(2)).sqrt();
            assert_eq!(row[sc], m, "packet {k} subcarrier {sc}");
        }
    }
    let feats = dir.path().join("feats");
    let text = ok(&aether(&[
        "features",
        "--input",
        s(&dir.path().join("in")),
        "--out",
        s(&feats),
    ]));
    assert!(text.contains("16 features per frame"), "{text}");
    let csv = std::fs::read_to_string(feats.join("sit").join("sit_1.csv")).unwrap();
    assert_eq!(csv.lines().count(), 31);
}

#[test]
fn baseline_runs_the_same_group_protocols() {
    let dir = tempfile::tempdir().unwrap();
    let d = grouped(dir.path());
    let j: Value = serde_json::from_str(&ok(&aether(&[
        "baseline",
        "--data",
        s(&d),
        "--kfold-groups",
        "--seeds",
        "2",
        "--trees",
        "20",
        "--json",
    ])))
    .unwrap();
    assert_eq!(j["protocol"], "kfold-groups");
    let labels: Vec<&str> = j["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["G1", "G2", "G3"]);
    for t in j["tests"].as_array().unwrap() {
        assert_eq!(t["accuracy"]["per_seed"].as_array().unwrap().len(), 2);
        let conf: u64 = t["confusion"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r.as_array().unwrap())
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(conf, 12, "6 recordings × 2 seeds");
    }
    let text = ok(&aether(&[
        "baseline",
        "--data",
        s(&d),
        "--groups",
        "G1",
        "--test-groups",
        "G2,G3",
        "--trees",
        "20",
    ]));
    assert!(
        text.contains("G2: accuracy") && text.contains("G3: accuracy"),
        "{text}"
    );
}

/// A copy of `d` holding only the recordings of group `g`.
fn only_group(d: &Path, g: &str, to: &Path) {
    for class in std::fs::read_dir(d).unwrap() {
        let class = class.unwrap().path();
        if !class.is_dir() {
            continue;
        }
        let dst = to.join(class.file_name().unwrap());
        std::fs::create_dir_all(&dst).unwrap();
        for f in std::fs::read_dir(&class).unwrap() {
            let f = f.unwrap().path();
            if f.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!("{g}_"))
            {
                std::fs::copy(&f, dst.join(f.file_name().unwrap())).unwrap();
            }
        }
    }
}

#[test]
fn adapt_writes_a_model_and_evaluates_shots() {
    let dir = tempfile::tempdir().unwrap();
    let d = grouped(dir.path());
    let m = dir.path().join("m.rvne");
    let mut args = vec!["train", "--data", s(&d), "--out", s(&m), "--groups", "G1"];
    args.extend(tiny());
    ok(&aether(&args));
    let g2 = dir.path().join("g2");
    only_group(&d, "G2", &g2);
    for mode in ["norm", "head", "full"] {
        let out = dir.path().join(format!("m2_{mode}.rvne"));
        let text = ok(&aether(&[
            "adapt",
            "--model",
            s(&m),
            "--data",
            s(&g2),
            "--out",
            s(&out),
            "--mode",
            mode,
            "--epochs",
            "2",
        ]));
        assert!(text.contains(&format!("({mode} mode)")), "{text}");
        let j: Value = serde_json::from_str(&ok(&aether(&["inspect", s(&out), "--json"]))).unwrap();
        let meta = j.to_string();
        assert!(meta.contains("adapt.mode") && meta.contains(mode), "{meta}");
        // The adapted model runs through eval like any other.
        ok(&aether(&["eval", "--model", s(&out), "--data", s(&g2)]));
        if mode != "norm" {
            assert_ne!(std::fs::read(&out).unwrap(), std::fs::read(&m).unwrap());
        }
    }
    let rep = dir.path().join("shots.json");
    let text = ok(&aether(&[
        "adapt",
        "--model",
        s(&m),
        "--data",
        s(&g2),
        "--shots",
        "1",
        "--seeds",
        "2",
        "--epochs",
        "2",
        "--report",
        s(&rep),
    ]));
    assert!(
        text.contains("1-shot head adaptation over 2 seeds"),
        "{text}"
    );
    let r = report(&rep);
    assert_eq!(
        r["tested_recordings"], 3,
        "2 per class, 1 adapts, 1 is tested"
    );
    assert_eq!(
        r["adapted"]["accuracy"]["per_seed"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        r["unadapted"]["accuracy"]["per_seed"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    fails(
        &aether(&["adapt", "--model", s(&m), "--data", s(&g2), "--shots", "2"]),
        &["leaves none to test"],
    );
    let other = dataset(dir.path(), "other", Task::Gesture, 2, 1);
    fails(
        &aether(&[
            "adapt",
            "--model",
            s(&m),
            "--data",
            s(&other),
            "--out",
            s(&dir.path().join("x.rvne")),
        ]),
        &["differ from the model"],
    );
}
