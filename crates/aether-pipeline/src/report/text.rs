//! Plain-text reports: the classification table, training-progress lines, counts.

use aether_head::train::{ClassificationReport, EpochStats};

/// `n` and a noun, pluralised unless `n` is 1 (`1 epoch`, `3 epochs`, `2 classes`,
/// `5 entries`).
pub fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        return format!("1 {noun}");
    }
    if noun.ends_with('s') {
        format!("{n} {noun}es")
    } else if let Some(stem) = noun.strip_suffix("ry") {
        format!("{n} {stem}ries")
    } else {
        format!("{n} {noun}s")
    }
}

/// A plain-text table of a report (per-class precision / recall / F1, confusion), every
/// column aligned whatever the class names and counts (widths count characters).
pub fn report_text(r: &ClassificationReport, classes: &[String]) -> String {
    let chars = |s: &str| s.chars().count();
    let w = classes.iter().map(|c| chars(c)).max().unwrap_or(5).max(7);
    let mut s = format!(
        "{:<w$}  {:>9}  {:>6}  {:>6}  {:>7}\n",
        "class", "precision", "recall", "f1", "support"
    );
    for (i, n) in classes.iter().enumerate() {
        s += &format!(
            "{n:<w$}  {:>9.3}  {:>6.3}  {:>6.3}  {:>7}\n",
            r.precision[i], r.recall[i], r.f1[i], r.support[i]
        );
    }
    let rows = r.confusion.rows();
    let labels: Vec<String> = classes
        .iter()
        .enumerate()
        .map(|(i, n)| format!("{i} {n}"))
        .collect();
    let lw = labels.iter().map(|l| chars(l)).max().unwrap_or(0).max(w);
    let cw = rows
        .iter()
        .flatten()
        .map(|v| v.to_string().len())
        .chain([6, format!("p{}", classes.len().saturating_sub(1)).len()])
        .max()
        .unwrap_or(6);
    s += &format!(
        "confusion (rows = truth, columns = predicted):\n{:<lw$}",
        ""
    );
    for i in 0..classes.len() {
        s += &format!(" {:>cw$}", format!("p{i}"));
    }
    s.push('\n');
    for (label, row) in labels.iter().zip(rows.iter()) {
        s += &format!("{label:<lw$}");
        for v in row {
            s += &format!(" {v:>cw$}");
        }
        s.push('\n');
    }
    s
}

/// The line printed after each epoch of training (losses, accuracies, rate).
pub fn epoch_line(s: &EpochStats) -> String {
    let val = match (s.val_loss, s.val_accuracy) {
        (Some(l), Some(a)) => format!("  val loss {l:.4} acc {a:.3}"),
        _ => String::new(),
    };
    format!(
        "epoch {:>3}: loss {:.4} acc {:.3}{val}  lr {:.2e}  {:.0} windows/s{}",
        s.epoch + 1,
        s.train_loss,
        s.train_accuracy,
        s.learning_rate,
        s.windows_per_sec,
        if s.improved { "  *" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plural_adds_s_unless_one() {
        assert_eq!(plural(1, "epoch"), "1 epoch");
        assert_eq!(plural(0, "frame"), "0 frames");
        assert_eq!(plural(2, "recording"), "2 recordings");
        assert_eq!(plural(4, "class"), "4 classes");
        assert_eq!(plural(5, "entry"), "5 entries");
    }

    #[test]
    fn report_text_columns_align_for_long_names_and_counts() {
        let truth: Vec<usize> = (0..1200).map(|i| i % 2).collect();
        let pred: Vec<usize> = (0..1200).map(|i| (i / 7) % 2).collect();
        let r = aether_head::train::classification_report(&pred, &truth, 2).unwrap();
        let names = ["a_rather_long_class".to_string(), "é".to_string()];
        let t = report_text(&r, &names);
        let conf: Vec<&str> = t
            .lines()
            .skip_while(|l| !l.starts_with("confusion"))
            .skip(1)
            .collect();
        assert_eq!(conf.len(), 3, "{t}");
        let width = conf[0].chars().count();
        assert!(conf.iter().all(|l| l.chars().count() == width), "{t}");
        assert!(conf[1].starts_with("0 a_rather_long_class"), "{t}");
    }
}
