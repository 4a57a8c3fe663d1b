//! SVG plots of a training run: the loss and accuracy curves, and a confusion matrix.

use aether_head::train::{ClassificationReport, EpochStats};
use anyhow::Result;

fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing plot: {e:?}")
}

/// SVG of the loss (train, validation) and accuracy curves over epochs.
pub fn curves_svg(h: &[EpochStats]) -> Result<String> {
    use plotters::prelude::*;
    let mut s = String::new();
    {
        let root = SVGBackend::with_string(&mut s, (900, 360)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let (l, r) = root.split_horizontally(450);
        let n = h.len().max(2) as f64;
        let max_loss = h
            .iter()
            .flat_map(|s| [Some(s.train_loss), s.val_loss])
            .flatten()
            .filter(|v| v.is_finite())
            .fold(0.1f64, f64::max);
        let series = |f: &dyn Fn(&EpochStats) -> Option<f64>| -> Vec<(f64, f64)> {
            h.iter()
                .filter_map(|s| f(s).map(|v| ((s.epoch + 1) as f64, v)))
                .collect()
        };
        for (area, title, ymax, tr, va) in [
            (
                &l,
                "loss",
                max_loss * 1.05,
                series(&|s| Some(s.train_loss)),
                series(&|s| s.val_loss),
            ),
            (
                &r,
                "accuracy (window)",
                1.0,
                series(&|s| Some(s.train_accuracy)),
                series(&|s| s.val_accuracy),
            ),
        ] {
            let mut ch = ChartBuilder::on(area)
                .caption(title, ("sans-serif", 18))
                .margin(10)
                .x_label_area_size(30)
                .y_label_area_size(45)
                .build_cartesian_2d(1f64..n, 0f64..ymax)
                .map_err(plot_err)?;
            ch.configure_mesh()
                .x_desc("epoch")
                .draw()
                .map_err(plot_err)?;
            ch.draw_series(LineSeries::new(tr, &BLUE))
                .map_err(plot_err)?
                .label("train")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], BLUE));
            if !va.is_empty() {
                ch.draw_series(LineSeries::new(va, &RED))
                    .map_err(plot_err)?
                    .label("validation")
                    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], RED));
            }
            ch.configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(plot_err)?;
        }
        root.present().map_err(plot_err)?;
    }
    Ok(s)
}

/// SVG of a confusion matrix (rows truth, columns predicted) with counts.
pub fn confusion_svg(r: &ClassificationReport, classes: &[String], title: &str) -> Result<String> {
    use plotters::prelude::*;
    let c = classes.len();
    let rows = r.confusion.rows();
    let max = rows.iter().flatten().copied().max().unwrap_or(1).max(1) as f64;
    let cell = 60i32;
    let left = 130i32;
    let top = 50i32;
    let size = (
        (left + cell * c as i32 + 20) as u32,
        (top + cell * c as i32 + 90) as u32,
    );
    let mut s = String::new();
    {
        let root = SVGBackend::with_string(&mut s, size).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let font = ("sans-serif", 14).into_font();
        root.draw(&Text::new(
            format!("{title}: accuracy {:.3}", r.accuracy),
            (10, 15),
            font.clone(),
        ))
        .map_err(plot_err)?;
        for (t, row) in rows.iter().enumerate() {
            let y = top + cell * t as i32;
            root.draw(&Text::new(
                classes[t].clone(),
                (5, y + cell / 2 - 7),
                font.clone(),
            ))
            .map_err(plot_err)?;
            for (p, &v) in row.iter().enumerate() {
                let x = left + cell * p as i32;
                let shade = (255.0 * (1.0 - 0.8 * v as f64 / max)) as u8;
                root.draw(&Rectangle::new(
                    [(x, y), (x + cell, y + cell)],
                    RGBColor(shade, shade, 255).filled(),
                ))
                .map_err(plot_err)?;
                root.draw(&Rectangle::new(
                    [(x, y), (x + cell, y + cell)],
                    BLACK.stroke_width(1),
                ))
                .map_err(plot_err)?;
                root.draw(&Text::new(
                    v.to_string(),
                    (x + cell / 2 - 8, y + cell / 2 - 7),
                    font.clone(),
                ))
                .map_err(plot_err)?;
            }
        }
        let yb = top + cell * c as i32 + 8;
        for (p, name) in classes.iter().enumerate() {
            let x = left + cell * p as i32 + 4;
            root.draw(&Text::new(
                name.chars().take(8).collect::<String>(),
                (x, yb),
                font.clone(),
            ))
            .map_err(plot_err)?;
        }
        root.draw(&Text::new(
            "rows: truth, columns: predicted",
            (10, yb + 30),
            font,
        ))
        .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svgs_render() {
        let r = aether_head::train::classification_report(&[0, 1, 1], &[0, 1, 0], 2).unwrap();
        let s = confusion_svg(&r, &["a".into(), "b".into()], "t").unwrap();
        assert!(s.starts_with("<svg") || s.contains("<svg"));
        let h = vec![EpochStats {
            epoch: 0,
            train_loss: 1.0,
            train_accuracy: 0.5,
            val_loss: Some(0.9),
            val_accuracy: Some(0.6),
            val_macro_f1: Some(0.6),
            learning_rate: 1e-3,
            grad_norm: 1.0,
            windows_per_sec: 10.0,
            seconds: 1.0,
            improved: true,
        }];
        assert!(curves_svg(&h).unwrap().contains("<svg"));
    }
}
