//! Classification metrics from a confusion matrix: accuracy, and per class precision, recall,
//! F1 and support. Shared by `npk eval`, `npk train` and the demo.

use serde::Serialize;

/// `count(truth, predicted)`: how many rows of class `truth` were predicted as `predicted`, over
/// `classes` classes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Confusion {
    classes: usize,
    /// Row-major, `classes x classes`: row = true class, column = predicted class.
    counts: Vec<u64>,
}

/// One class's row of a metrics table (the `per_class` entries of `npk eval --json`).
///
/// A ratio whose denominator is zero is `None` (`null` in JSON): precision when nothing was
/// predicted as the class, recall when no row has it, F1 when either is undefined.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ClassMetrics {
    pub class: usize,
    /// Rows whose true class this is.
    pub support: u64,
    /// Rows predicted as this class.
    pub predicted: u64,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    pub f1: Option<f64>,
}

impl Confusion {
    /// An empty matrix over `classes` classes.
    pub fn new(classes: usize) -> Self {
        Self {
            classes,
            counts: vec![0; classes * classes],
        }
    }

    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Counts one row of class `truth` predicted as `predicted`.
    ///
    /// # Panics
    /// If either class is `>= classes()`: callers check labels against the model first.
    pub fn add(&mut self, truth: usize, predicted: usize) {
        assert!(
            truth < self.classes && predicted < self.classes,
            "Confusion::add({truth}, {predicted}) on {} classes",
            self.classes
        );
        self.counts[truth * self.classes + predicted] += 1;
    }

    pub fn count(&self, truth: usize, predicted: usize) -> u64 {
        self.counts[truth * self.classes + predicted]
    }

    /// The matrix row by row: `rows()[truth][predicted]`.
    pub fn rows(&self) -> Vec<Vec<u64>> {
        self.counts
            .chunks(self.classes.max(1))
            .map(<[u64]>::to_vec)
            .collect()
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Rows predicted as their true class.
    pub fn correct(&self) -> u64 {
        (0..self.classes).map(|c| self.count(c, c)).sum()
    }

    /// Correct / total; 0 for an empty matrix.
    pub fn accuracy(&self) -> f64 {
        ratio(self.correct(), self.total()).unwrap_or(0.0)
    }

    /// Rows whose true class is `class`.
    pub fn support(&self, class: usize) -> u64 {
        (0..self.classes).map(|p| self.count(class, p)).sum()
    }

    /// Rows predicted as `class`.
    pub fn predicted(&self, class: usize) -> u64 {
        (0..self.classes).map(|t| self.count(t, class)).sum()
    }

    /// Of the rows predicted as `class`, the fraction that are; `None` when none was.
    pub fn precision(&self, class: usize) -> Option<f64> {
        ratio(self.count(class, class), self.predicted(class))
    }

    /// Of the rows of `class`, the fraction predicted as it; `None` when there are none.
    pub fn recall(&self, class: usize) -> Option<f64> {
        ratio(self.count(class, class), self.support(class))
    }

    /// Harmonic mean of precision and recall (0 when both are 0); `None` when either is.
    pub fn f1(&self, class: usize) -> Option<f64> {
        let (p, r) = (self.precision(class)?, self.recall(class)?);
        Some(if p + r > 0.0 {
            2.0 * p * r / (p + r)
        } else {
            0.0
        })
    }

    /// Every class's metrics, class 0 first.
    pub fn per_class(&self) -> Vec<ClassMetrics> {
        (0..self.classes)
            .map(|class| ClassMetrics {
                class,
                support: self.support(class),
                predicted: self.predicted(class),
                precision: self.precision(class),
                recall: self.recall(class),
                f1: self.f1(class),
            })
            .collect()
    }

    /// A text table of the per-class metrics, then the matrix; `names` label the classes
    /// (their numbers when `None`). Undefined ratios print as `-`.
    pub fn table(&self, names: Option<&[&str]>) -> String {
        let name = |c: usize| match names.and_then(|n| n.get(c)) {
            Some(n) => (*n).to_owned(),
            None => c.to_string(),
        };
        let width = (0..self.classes)
            .map(|c| name(c).len())
            .chain([5])
            .max()
            .unwrap_or(5);
        let fmt = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.4}"));
        let mut s = format!(
            "{:>width$} {:>9} {:>9} {:>9} {:>9}\n",
            "class", "precision", "recall", "f1", "support"
        );
        for m in self.per_class() {
            s += &format!(
                "{:>width$} {:>9} {:>9} {:>9} {:>9}\n",
                name(m.class),
                fmt(m.precision),
                fmt(m.recall),
                fmt(m.f1),
                m.support
            );
        }
        let cell = self
            .counts
            .iter()
            .map(|n| n.to_string().len())
            .chain((0..self.classes).map(|c| name(c).len()))
            .max()
            .unwrap_or(1);
        s += &format!("{:>width$} predicted ->\n", "true");
        s += &format!("{:>width$}", "");
        for c in 0..self.classes {
            s += &format!(" {:>cell$}", name(c));
        }
        for (t, row) in self.rows().iter().enumerate() {
            s += &format!("\n{:>width$}", name(t));
            for n in row {
                s += &format!(" {n:>cell$}");
            }
        }
        s
    }
}

fn ratio(num: u64, den: u64) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 3 classes: class 0 has 4 rows (3 right, 1 called 1), class 1 has 3 (2 right, 1 called
    /// 2), class 2 has none.
    fn sample() -> Confusion {
        let mut c = Confusion::new(3);
        for (t, p) in [(0, 0), (0, 0), (0, 0), (0, 1), (1, 1), (1, 1), (1, 2)] {
            c.add(t, p);
        }
        c
    }

    #[test]
    fn counts_accuracy_and_per_class_ratios() {
        let c = sample();
        assert_eq!((c.total(), c.correct()), (7, 5));
        assert_eq!(c.accuracy(), 5.0 / 7.0);
        assert_eq!(c.rows(), [vec![3, 1, 0], vec![0, 2, 1], vec![0, 0, 0]]);
        assert_eq!([c.support(0), c.support(1), c.support(2)], [4, 3, 0]);
        assert_eq!([c.predicted(0), c.predicted(1), c.predicted(2)], [3, 3, 1]);
        assert_eq!(c.precision(0), Some(1.0));
        assert_eq!(c.recall(0), Some(0.75));
        assert_eq!(c.f1(0), Some(2.0 * 0.75 / 1.75));
        assert_eq!(c.precision(1), Some(2.0 / 3.0));
        assert_eq!(c.recall(1), Some(2.0 / 3.0));
        // Class 2: predicted once, never right, no rows of its own.
        assert_eq!(c.precision(2), Some(0.0));
        assert_eq!(c.recall(2), None);
        assert_eq!(c.f1(2), None);
    }

    #[test]
    fn one_class_data_leaves_the_other_classes_undefined() {
        let mut c = Confusion::new(2);
        c.add(1, 1);
        c.add(1, 0);
        let m = c.per_class();
        assert_eq!(m[0].precision, Some(0.0));
        assert_eq!((m[0].recall, m[0].f1), (None, None));
        assert_eq!(
            (m[1].precision, m[1].recall, m[1].f1),
            (Some(1.0), Some(0.5), Some(2.0 / 3.0))
        );
        assert_eq!(Confusion::new(2).accuracy(), 0.0);
    }

    #[test]
    fn table_shows_metrics_and_matrix() {
        let t = sample().table(Some(&["benign", "syn"]));
        let lines = [
            " class precision    recall        f1   support",
            "benign    1.0000    0.7500    0.8571         4",
            "   syn    0.6667    0.6667    0.6667         3",
            "     2    0.0000         -         -         0",
            "  true predicted ->",
            "       benign    syn      2",
            "benign      3      1      0",
            "   syn      0      2      1",
            "     2      0      0      0",
        ];
        assert_eq!(t, lines.join("\n"));
    }
}
