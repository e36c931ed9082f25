//! The demo's two pictures as plain SVG text: a confusion matrix and a training curve.

use std::fmt::Write;

/// Escapes text for SVG content and attribute values.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const FONT: &str = "font-family=\"sans-serif\"";

/// `matrix[t][p]`: packets of true class `t` predicted as `p`. Cells are shaded by the share of
/// their row (what fraction of class `t` went where) and show the count and that share.
pub fn confusion(names: &[&str], matrix: &[Vec<u64>], title: &str) -> String {
    let n = names.len();
    let (cell, left, top) = (96.0, 130.0, 90.0);
    let width = left + cell * n as f64 + 20.0;
    let height = top + cell * n as f64 + 30.0;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" {FONT}>\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"24\" font-size=\"16\" text-anchor=\"middle\">{}</text>\n\
         <text x=\"{}\" y=\"48\" font-size=\"12\" text-anchor=\"middle\">predicted class</text>\n\
         <text x=\"16\" y=\"{}\" font-size=\"12\" text-anchor=\"middle\" \
         transform=\"rotate(-90 16 {})\">true class</text>\n",
        width / 2.0,
        esc(title),
        left + cell * n as f64 / 2.0,
        top + cell * n as f64 / 2.0,
        top + cell * n as f64 / 2.0,
    );
    for (i, name) in names.iter().enumerate() {
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"middle\">{}</text>\n\
             <text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"end\">{}</text>",
            left + cell * (i as f64 + 0.5),
            top - 8.0,
            esc(name),
            left - 8.0,
            top + cell * (i as f64 + 0.5) + 4.0,
            esc(name),
        );
    }
    for (t, row) in matrix.iter().enumerate().take(n) {
        let total: u64 = row.iter().sum();
        for (p, &count) in row.iter().enumerate().take(n) {
            let share = if total > 0 {
                count as f64 / total as f64
            } else {
                0.0
            };
            // White to blue; the diagonal is what the model got right.
            let shade = |full: f64| (255.0 - share * (255.0 - full)).round() as u8;
            let (x, y) = (left + cell * p as f64, top + cell * t as f64);
            let ink = if share > 0.5 { "white" } else { "black" };
            let _ = writeln!(
                s,
                "<rect x=\"{x}\" y=\"{y}\" width=\"{cell}\" height=\"{cell}\" \
                 fill=\"rgb({},{},{})\" stroke=\"#888\"/>\n\
                 <text x=\"{}\" y=\"{}\" font-size=\"14\" text-anchor=\"middle\" fill=\"{ink}\">{count}</text>\n\
                 <text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\" fill=\"{ink}\">{:.1}%</text>",
                shade(33.0),
                shade(90.0),
                shade(160.0),
                x + cell / 2.0,
                y + cell / 2.0 - 2.0,
                x + cell / 2.0,
                y + cell / 2.0 + 16.0,
                share * 100.0
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

/// One value per epoch, drawn as a line chart.
pub struct Series<'a> {
    pub name: &'a str,
    pub values: &'a [f64],
    /// The y axis; `None`: from the least value to the largest.
    pub range: Option<(f64, f64)>,
}

/// One line chart per series, stacked.
pub fn curves(title: &str, series: &[Series]) -> String {
    let (width, panel, left, top, gap) = (640.0, 200.0, 70.0, 60.0, 50.0);
    let plot_w = width - left - 30.0;
    let height = top + series.len() as f64 * (panel + gap);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" {FONT}>\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"24\" font-size=\"16\" text-anchor=\"middle\">{}</text>\n",
        width / 2.0,
        esc(title)
    );
    for (
        k,
        Series {
            name,
            values,
            range,
        },
    ) in series.iter().enumerate()
    {
        let y0 = top + k as f64 * (panel + gap);
        let (lo, hi) = range.unwrap_or_else(|| {
            let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            match (lo.is_finite(), hi > lo) {
                (true, true) => (lo, hi),
                // A constant series sits in the middle.
                (true, false) => (lo - 1.0, lo + 1.0),
                // No values.
                _ => (0.0, 1.0),
            }
        });
        let x = |i: usize| left + plot_w * i as f64 / (values.len().max(2) - 1) as f64;
        let y = |v: f64| y0 + panel - panel * ((v - lo) / (hi - lo)).clamp(0.0, 1.0);
        let _ = writeln!(
            s,
            "<rect x=\"{left}\" y=\"{y0}\" width=\"{plot_w}\" height=\"{panel}\" fill=\"none\" stroke=\"#888\"/>\n\
             <text x=\"{left}\" y=\"{}\" font-size=\"12\">{}</text>\n\
             <text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">{}</text>\n\
             <text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">{}</text>\n\
             <text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">epoch 1 .. {}</text>",
            y0 - 6.0,
            esc(name),
            left - 6.0,
            y0 + 10.0,
            fmt_axis(hi),
            left - 6.0,
            y0 + panel,
            fmt_axis(lo),
            left + plot_w / 2.0,
            y0 + panel + 16.0,
            values.len()
        );
        let points: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(i, &v)| format!("{:.1},{:.1}", x(i), y(v)))
            .collect();
        let _ = writeln!(
            s,
            "<polyline fill=\"none\" stroke=\"rgb(33,90,160)\" stroke-width=\"2\" points=\"{}\"/>",
            points.join(" ")
        );
    }
    s.push_str("</svg>\n");
    s
}

fn fmt_axis(v: f64) -> String {
    if v.abs() >= 100.0 || v == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confusion_cells_show_counts_and_row_shares() {
        let svg = confusion(&["a", "b<c"], &[vec![3, 1], vec![0, 0]], "t & t");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains(">3</text>") && svg.contains(">75.0%</text>"));
        assert!(svg.contains(">25.0%</text>"));
        assert!(svg.contains("b&lt;c") && svg.contains("t &amp; t"));
        // An empty row is all 0%, never NaN.
        assert!(!svg.contains("NaN"));
        assert_eq!(svg.matches("<rect").count(), 1 + 4);
    }

    #[test]
    fn curves_plot_every_epoch_inside_their_panel() {
        let loss = [1.0, 0.5, 0.25];
        let acc = [0.5, 0.9, 1.0];
        let svg = curves(
            "training",
            &[
                Series {
                    name: "loss",
                    values: &loss,
                    range: None,
                },
                Series {
                    name: "accuracy",
                    values: &acc,
                    range: Some((0.0, 1.0)),
                },
            ],
        );
        assert_eq!(svg.matches("<polyline").count(), 2);
        let first = svg.split("points=\"").nth(1).unwrap();
        let points: Vec<&str> = first.split('"').next().unwrap().split(' ').collect();
        // From 1 at the top to 0.25 at the bottom of the first panel (y 60 to 260).
        assert_eq!(points, ["70.0,60.0", "340.0,193.3", "610.0,260.0"]);
        assert!(!svg.contains("NaN"));
        for values in [&[][..], &[2.0, 2.0]] {
            let svg = curves(
                "flat",
                &[Series {
                    name: "x",
                    values,
                    range: None,
                }],
            );
            assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        }
    }
}
