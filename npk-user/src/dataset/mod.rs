//! Datasets: CSV files (header row, numeric features, integer label last), IDX files (MNIST's
//! images and labels, [`idx`]), splits and feature standardization.

pub mod idx;

use std::{
    cell::{Cell, RefCell},
    collections::VecDeque,
    fs::File,
    io::{self, Read},
    path::{Path, PathBuf},
    rc::Rc,
};

use npk_common::model::MAX_CLASSES;

use crate::quantize::USER_MAX_WIDTH;
use crate::rng::Rng;

/// Longest CSV record (line) read, in bytes: 128 features of 40 characters each fit 25 times
/// over. Bounds the memory of a file that never ends a line (`/dev/zero`).
pub const MAX_RECORD_BYTES: usize = 128 * 1024;
/// Most values (rows x columns, the label included) a file may hold: 1 GiB of f32. Bounds the
/// memory of an endless input (a pipe, a device).
pub const MAX_VALUES: usize = 1 << 28;
/// Features are read by the kernel model as raw `i32` (`npk_common::infer`), `round(x * 2^f)`
/// with at least 0 fractional bits (`quantize::InputEncoding`): |x| must stay below 2^31,
/// as stored (f32).
pub const FEATURE_LIMIT: f64 = 2_147_483_648.0;
/// The open interval test fractions must lie in: 0 leaves no test row, 1 no training row.
pub const TEST_FRACTION_RANGE: &str = "(0, 1)";

/// Why a CSV file cannot be used, or a split cannot be made. File errors name the file, the
/// 1-based line (the header is line 1) and the column.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("cannot open {}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: line {line}: cannot read CSV", path.display())]
    Csv {
        path: PathBuf,
        line: u64,
        #[source]
        source: csv::Error,
    },
    #[error(
        "{}: line {line}: longer than {cap} bytes (the cap on one CSV line)",
        path.display()
    )]
    RecordTooLong {
        path: PathBuf,
        line: u64,
        cap: usize,
    },
    #[error(
        "{}: line {line}: more than {cap} values (rows x columns; the cap on one file)",
        path.display()
    )]
    TooManyValues {
        path: PathBuf,
        line: u64,
        cap: usize,
    },
    #[error("{}: empty file, expected a header row", path.display())]
    Empty { path: PathBuf },
    #[error("{}: line 1: need at least one feature column before the label column", path.display())]
    NoFeatures { path: PathBuf },
    #[error(
        "{}: line 1: one column, but the header holds {count} {name}s: npk reads comma-separated \
         files (convert it, e.g. `tr '{escaped}' ','`)",
        path.display(),
        name = separator.name(),
        escaped = separator.escaped()
    )]
    OtherSeparator {
        path: PathBuf,
        separator: Separator,
        count: usize,
    },
    #[error(
        "{}: line 1: {found} feature columns, at most {USER_MAX_WIDTH} (the widest layer npk quantizes)",
        path.display()
    )]
    TooManyFeatures { path: PathBuf, found: usize },
    #[error("{}: only a header row, no data rows", path.display())]
    HeaderOnly { path: PathBuf },
    #[error("{}: line {line}: {found} fields, but the header has {expected}", path.display())]
    Ragged {
        path: PathBuf,
        line: u64,
        expected: usize,
        found: usize,
    },
    #[error("{}: line {line}, column {column:?}: {value:?} is not a number", path.display())]
    NotNumeric {
        path: PathBuf,
        line: u64,
        column: String,
        value: String,
    },
    #[error("{}: line {line}, column {column:?}: {value:?} is not a finite number", path.display())]
    NotFinite {
        path: PathBuf,
        line: u64,
        column: String,
        value: String,
    },
    #[error(
        "{}: line {line}, column {column:?}: {value:?} is out of range: features must lie \
         strictly between -2^31 and 2^31 (the kernel model reads them as raw i32)",
        path.display()
    )]
    OutOfRange {
        path: PathBuf,
        line: u64,
        column: String,
        value: String,
    },
    #[error("{}: line {line}, column {column:?}: label {value:?} is negative", path.display())]
    LabelNegative {
        path: PathBuf,
        line: u64,
        column: String,
        value: String,
    },
    #[error("{}: line {line}, column {column:?}: label {value:?} is not an integer", path.display())]
    LabelFractional {
        path: PathBuf,
        line: u64,
        column: String,
        value: String,
    },
    #[error(
        "{}: line {line}, column {column:?}: label {value:?} is over {} (the kernel model has at most MAX_CLASSES = {MAX_CLASSES} classes)",
        path.display(),
        MAX_CLASSES - 1
    )]
    LabelTooLarge {
        path: PathBuf,
        line: u64,
        column: String,
        value: String,
    },
    #[error(
        "{}: line {line}, column {column:?}: label {value}, but the model predicts only {classes} \
         classes (0..={})",
        path.display(),
        classes - 1
    )]
    LabelNotInModel {
        path: PathBuf,
        line: u64,
        column: String,
        value: String,
        classes: usize,
    },
    #[error("{}: column {column:?}: {found} distinct class(es), need at least 2", path.display())]
    TooFewClasses {
        path: PathBuf,
        column: String,
        found: usize,
    },
    #[error(transparent)]
    Idx(#[from] idx::IdxError),
    #[error(
        "{}: label {index} is {label}, but the model predicts only {classes} classes (0..={})",
        path.display(),
        classes - 1
    )]
    IdxLabelNotInModel {
        path: PathBuf,
        index: usize,
        label: u32,
        classes: usize,
    },
    #[error("test fraction {0} must be in {TEST_FRACTION_RANGE}")]
    TestFraction(f64),
    #[error("a test fraction of {fraction} over {rows} rows leaves the {side} split empty")]
    EmptySplit {
        side: &'static str,
        fraction: f64,
        rows: usize,
    },
}

/// A labelled table of float features, row-major.
///
/// # Shapes
/// `features`: `len() x num_features`; `labels`: `len()`, each `< num_classes`.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub feature_names: Vec<String>,
    pub features: Vec<f32>,
    pub labels: Vec<u32>,
    pub num_features: usize,
    pub num_classes: usize,
}

impl Dataset {
    /// Keeps the first `n` feature columns (all of them when there are fewer).
    pub fn keep_features(&mut self, n: usize) {
        if n >= self.num_features {
            return;
        }
        self.features = self
            .features
            .chunks_exact(self.num_features)
            .flat_map(|row| &row[..n])
            .copied()
            .collect();
        self.feature_names.truncate(n);
        self.num_features = n;
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.features[i * self.num_features..(i + 1) * self.num_features]
    }

    /// Reads `path` as an IDX image file with its labels beside it when its name says so
    /// ([`idx::is_idx_images`]), else as a CSV file ([`Self::load_csv`]).
    pub fn load(path: &Path) -> Result<Self, DatasetError> {
        if idx::is_idx_images(path) {
            Ok(idx::load(path)?)
        } else {
            Self::load_csv(path)
        }
    }

    /// [`Self::load`] for scoring a model of `classes` classes (see
    /// [`Self::load_csv_for_model`]).
    pub fn load_for_model(path: &Path, classes: usize) -> Result<Self, DatasetError> {
        if !idx::is_idx_images(path) {
            return Self::load_csv_for_model(path, classes);
        }
        let data = idx::load(path)?;
        if let Some((index, &label)) = data
            .labels
            .iter()
            .enumerate()
            .find(|&(_, &l)| l as usize >= classes)
        {
            return Err(DatasetError::IdxLabelNotInModel {
                path: idx::labels_path(path).unwrap_or_else(|| path.to_owned()),
                index,
                label,
                classes,
            });
        }
        Ok(data)
    }

    /// Reads a CSV file (`-`: standard input): a header row naming the columns, numeric feature columns and an integer
    /// label `0..K` in the last column. `num_classes` is the largest label + 1.
    pub fn load_csv(path: &Path) -> Result<Self, DatasetError> {
        if crate::input::is_stdin(path) {
            return Self::from_reader(std::io::stdin().lock(), Path::new(crate::input::STDIN_NAME));
        }
        let file = File::open(path).map_err(|source| DatasetError::Open {
            path: path.to_owned(),
            source,
        })?;
        Self::from_reader(file, path)
    }

    /// [`Self::load_csv`] on any reader; `path` only names the source in errors.
    ///
    /// Memory stays bounded whatever the input: a record (line) longer than
    /// [`MAX_RECORD_BYTES`] or a file of more than [`MAX_VALUES`] values is refused.
    pub fn from_reader(reader: impl Read, path: &Path) -> Result<Self, DatasetError> {
        Self::read(reader, path, None, MAX_RECORD_BYTES, MAX_VALUES)
    }

    /// [`Self::load_csv`] for scoring a model of `classes` classes: one class is enough (a
    /// capture of one kind of traffic, as `npk features --label N` writes), and a label
    /// `>= classes` is refused with its line.
    pub fn load_csv_for_model(path: &Path, classes: usize) -> Result<Self, DatasetError> {
        if crate::input::is_stdin(path) {
            let name = Path::new(crate::input::STDIN_NAME);
            return Self::from_reader_for_model(std::io::stdin().lock(), name, classes);
        }
        let file = File::open(path).map_err(|source| DatasetError::Open {
            path: path.to_owned(),
            source,
        })?;
        Self::from_reader_for_model(file, path, classes)
    }

    /// [`Self::load_csv_for_model`] on any reader; `path` only names the source in errors.
    pub fn from_reader_for_model(
        reader: impl Read,
        path: &Path,
        classes: usize,
    ) -> Result<Self, DatasetError> {
        Self::read(reader, path, Some(classes), MAX_RECORD_BYTES, MAX_VALUES)
    }

    /// `model_classes`: `None` to train (at least two classes), `Some(K)` to score a model of
    /// `K` classes (labels below `K`, any number of them present).
    fn read(
        reader: impl Read,
        path: &Path,
        model_classes: Option<usize>,
        max_record_bytes: usize,
        max_values: usize,
    ) -> Result<Self, DatasetError> {
        let p = || path.to_owned();
        let reader = RecordCap::new(reader, max_record_bytes);
        let record_end = Rc::clone(&reader.record_end);
        let lines = Rc::clone(&reader.lines);
        // The csv crate's own line numbers skip blank lines and lag on CRLF files.
        let line_at = |byte: u64| lines.borrow_mut().line_of_content_at(byte);
        let mut csv = csv::ReaderBuilder::new()
            .has_headers(true)
            // Ragged rows are reported by us, with the line number and field counts.
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(reader);
        // The line a record that fails to read starts on: the one after the last record read.
        let csv_error = |line: u64, source: csv::Error| match source.kind() {
            csv::ErrorKind::Io(e) if e.get_ref().is_some_and(|e| e.is::<RecordTooLongError>()) => {
                DatasetError::RecordTooLong {
                    path: p(),
                    line,
                    cap: max_record_bytes,
                }
            }
            _ => DatasetError::Csv {
                path: p(),
                line: source.position().map_or(line, |pos| line_at(pos.byte())),
                source,
            },
        };
        let header = csv.headers().map_err(|e| csv_error(1, e))?.clone();
        if header.is_empty() || header.iter().all(str::is_empty) {
            return Err(DatasetError::Empty { path: p() });
        }
        let num_features = header.len() - 1;
        if num_features == 0 {
            return Err(match Separator::guess(&header[0]) {
                Some((separator, count)) => DatasetError::OtherSeparator {
                    path: p(),
                    separator,
                    count,
                },
                None => DatasetError::NoFeatures { path: p() },
            });
        }
        if num_features > USER_MAX_WIDTH {
            return Err(DatasetError::TooManyFeatures {
                path: p(),
                found: num_features,
            });
        }
        record_end.set(csv.position().byte());
        let label_column = header[num_features].to_owned();

        let mut features = Vec::new();
        let mut labels = Vec::new();
        let mut record = csv::StringRecord::new();
        loop {
            match csv.read_record(&mut record) {
                Ok(true) => {}
                Ok(false) => break,
                Err(source) => return Err(csv_error(line_at(record_end.get()), source)),
            }
            let line = line_at(record.position().map_or(record_end.get(), |pos| pos.byte()));
            record_end.set(csv.position().byte());
            if record.len() != header.len() {
                return Err(DatasetError::Ragged {
                    path: p(),
                    line,
                    expected: header.len(),
                    found: record.len(),
                });
            }
            if features.len() + labels.len() + record.len() > max_values {
                return Err(DatasetError::TooManyValues {
                    path: p(),
                    line,
                    cap: max_values,
                });
            }
            let number = |column: &str, cell: &str| {
                parse_finite(cell).map_err(|problem| {
                    let (path, column, value) = (p(), column.to_owned(), cell.to_owned());
                    match problem {
                        BadNumber::NotANumber => DatasetError::NotNumeric {
                            path,
                            line,
                            column,
                            value,
                        },
                        BadNumber::NotFinite => DatasetError::NotFinite {
                            path,
                            line,
                            column,
                            value,
                        },
                    }
                })
            };
            for (column, cell) in header.iter().zip(record.iter()).take(num_features) {
                let x = number(column, cell)? as f32;
                if f64::from(x).abs() >= FEATURE_LIMIT {
                    return Err(DatasetError::OutOfRange {
                        path: p(),
                        line,
                        column: column.to_owned(),
                        value: cell.to_owned(),
                    });
                }
                features.push(x);
            }
            let cell = &record[num_features];
            let label = parse_label(number(&label_column, cell)?)
                .map_err(|make| make(p(), line, label_column.clone(), cell.to_owned()))?;
            if let Some(classes) = model_classes
                && label as usize >= classes
            {
                return Err(DatasetError::LabelNotInModel {
                    path: p(),
                    line,
                    column: label_column,
                    value: cell.to_owned(),
                    classes,
                });
            }
            labels.push(label);
        }
        if labels.is_empty() {
            return Err(DatasetError::HeaderOnly { path: p() });
        }
        let mut present = [false; MAX_CLASSES];
        for &l in &labels {
            present[l as usize] = true;
        }
        let distinct = present.iter().filter(|&&b| b).count();
        if model_classes.is_none() && distinct < 2 {
            return Err(DatasetError::TooFewClasses {
                path: p(),
                column: label_column,
                found: distinct,
            });
        }
        let num_classes = labels.iter().max().map_or(0, |&m| m as usize + 1);
        Ok(Self {
            feature_names: header
                .iter()
                .take(num_features)
                .map(str::to_owned)
                .collect(),
            features,
            labels,
            num_features,
            num_classes,
        })
    }

    /// Stratified split into `(train, test)`: within each class, a seeded shuffle puts
    /// `round(count * test_fraction)` rows into the test split, but always leaves at least one row
    /// of every class to train on. Rows keep their file order inside each split.
    pub fn split(&self, test_fraction: f64, seed: u64) -> Result<(Dataset, Dataset), DatasetError> {
        check_test_fraction(test_fraction)?;
        let mut rng = Rng::new(seed);
        let mut train = Vec::with_capacity(self.len());
        let mut test = Vec::new();
        for class in 0..self.num_classes as u32 {
            let mut rows: Vec<usize> = (0..self.len())
                .filter(|&i| self.labels[i] == class)
                .collect();
            if rows.is_empty() {
                continue;
            }
            rng.shuffle(&mut rows);
            let n_test = ((rows.len() as f64 * test_fraction).round() as usize).min(rows.len() - 1);
            test.extend_from_slice(&rows[..n_test]);
            train.extend_from_slice(&rows[n_test..]);
        }
        for (side, rows) in [("train", &train), ("test", &test)] {
            if rows.is_empty() {
                return Err(DatasetError::EmptySplit {
                    side,
                    fraction: test_fraction,
                    rows: self.len(),
                });
            }
        }
        train.sort_unstable();
        test.sort_unstable();
        Ok((self.subset(&train), self.subset(&test)))
    }

    fn subset(&self, rows: &[usize]) -> Dataset {
        Dataset {
            feature_names: self.feature_names.clone(),
            features: rows.iter().flat_map(|&i| self.row(i)).copied().collect(),
            labels: rows.iter().map(|&i| self.labels[i]).collect(),
            num_features: self.num_features,
            num_classes: self.num_classes,
        }
    }
}

/// `fraction` if it lies in [`TEST_FRACTION_RANGE`], the split's only check on it.
pub fn check_test_fraction(fraction: f64) -> Result<f64, DatasetError> {
    if fraction > 0.0 && fraction < 1.0 {
        Ok(fraction)
    } else {
        Err(DatasetError::TestFraction(fraction))
    }
}

/// Why a cell is not a usable number.
enum BadNumber {
    NotANumber,
    /// NaN or infinite.
    NotFinite,
}

fn parse_finite(cell: &str) -> Result<f64, BadNumber> {
    let v: f64 = cell.parse().map_err(|_| BadNumber::NotANumber)?;
    if v.is_finite() {
        Ok(v)
    } else {
        Err(BadNumber::NotFinite)
    }
}

/// A field separator other than the comma, recognised in a one-column header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Separator {
    Semicolon,
    Tab,
    Pipe,
}

impl Separator {
    const ALL: [Self; 3] = [Self::Semicolon, Self::Tab, Self::Pipe];

    fn char(self) -> char {
        match self {
            Self::Semicolon => ';',
            Self::Tab => '\t',
            Self::Pipe => '|',
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Semicolon => "semicolon",
            Self::Tab => "tab",
            Self::Pipe => "pipe",
        }
    }

    /// As `tr` takes it.
    fn escaped(self) -> String {
        self.char().escape_default().to_string()
    }

    /// The separator occurring most often in `header`, with its count.
    fn guess(header: &str) -> Option<(Self, usize)> {
        Self::ALL
            .into_iter()
            .map(|s| (s, header.matches(s.char()).count()))
            .filter(|&(_, n)| n > 0)
            .max_by_key(|&(_, n)| n)
    }
}

/// The marker inside the I/O error [`RecordCap`] returns.
#[derive(Debug, thiserror::Error)]
#[error("CSV record too long")]
struct RecordTooLongError;

/// A reader that fails once it has been read `cap` bytes past the end of the last complete
/// record (`record_end`, a byte offset the loader advances after every record), and keeps
/// the bytes not yet placed on a line for [`LineCounter`].
struct RecordCap<R> {
    inner: R,
    cap: u64,
    read: u64,
    record_end: Rc<Cell<u64>>,
    lines: Rc<RefCell<LineCounter>>,
}

impl<R> RecordCap<R> {
    fn new(inner: R, cap: usize) -> Self {
        Self {
            inner,
            cap: cap as u64,
            read: 0,
            record_end: Rc::new(Cell::new(0)),
            lines: Rc::new(RefCell::new(LineCounter::default())),
        }
    }
}

/// Line numbers from the bytes themselves: `\n`, `\r\n` and a lone `\r` each end a line, as
/// they do for the csv crate. Holds only the bytes read ahead of the last record asked about,
/// which [`RecordCap`] bounds.
#[derive(Default)]
struct LineCounter {
    /// Bytes from offset `counted_to` on, as read.
    ahead: VecDeque<u8>,
    counted_to: u64,
    /// Line terminators before `counted_to`.
    terminators: u64,
    last_was_cr: bool,
}

impl LineCounter {
    fn take(&mut self) -> Option<u8> {
        let byte = self.ahead.pop_front()?;
        self.counted_to += 1;
        if byte == b'\r' || (byte == b'\n' && !self.last_was_cr) {
            self.terminators += 1;
        }
        self.last_was_cr = byte == b'\r';
        Some(byte)
    }

    /// The 1-based line of the first byte at or after `byte` that is not a line terminator:
    /// where a record starting at `byte` (after blank lines the csv crate skips) really begins.
    /// Offsets before one already asked about answer as that one.
    fn line_of_content_at(&mut self, byte: u64) -> u64 {
        while self.counted_to < byte && self.take().is_some() {}
        while matches!(self.ahead.front(), Some(b'\r' | b'\n')) {
            self.take();
        }
        self.terminators + 1
    }
}

impl<R: Read> Read for RecordCap<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let allowed = (self.record_end.get() + self.cap).saturating_sub(self.read);
        if allowed == 0 {
            return Err(io::Error::other(RecordTooLongError));
        }
        let n = buf.len().min(allowed.try_into().unwrap_or(usize::MAX));
        let got = self.inner.read(&mut buf[..n])?;
        self.read += got as u64;
        self.lines.borrow_mut().ahead.extend(&buf[..got]);
        Ok(got)
    }
}

type LabelError = fn(PathBuf, u64, String, String) -> DatasetError;

/// Labels are integers in `0..MAX_CLASSES`; `2.0` is accepted as `2`.
fn parse_label(v: f64) -> Result<u32, LabelError> {
    if v < 0.0 {
        Err(|path, line, column, value| DatasetError::LabelNegative {
            path,
            line,
            column,
            value,
        })
    } else if v.fract() != 0.0 {
        Err(|path, line, column, value| DatasetError::LabelFractional {
            path,
            line,
            column,
            value,
        })
    } else if v > (MAX_CLASSES - 1) as f64 {
        Err(|path, line, column, value| DatasetError::LabelTooLarge {
            path,
            line,
            column,
            value,
        })
    } else {
        Ok(v as u32)
    }
}

/// Per-feature mean and standard deviation, fitted on the training split only.
#[derive(Clone, Debug, PartialEq)]
pub struct Standardizer {
    pub mean: Vec<f32>,
    /// Never zero: constant features get 1.
    pub std: Vec<f32>,
}

impl Standardizer {
    /// Population mean and standard deviation per feature, accumulated in f64. A feature whose
    /// values are all equal gets std 1, so it standardizes to 0 instead of dividing by zero.
    pub fn fit(data: &Dataset) -> Self {
        let d = data.num_features;
        let n = data.len().max(1) as f64;
        let mut mean = vec![0f64; d];
        let mut min = vec![f32::INFINITY; d];
        let mut max = vec![f32::NEG_INFINITY; d];
        for i in 0..data.len() {
            for (j, &x) in data.row(i).iter().enumerate() {
                mean[j] += f64::from(x);
                min[j] = min[j].min(x);
                max[j] = max[j].max(x);
            }
        }
        mean.iter_mut().for_each(|m| *m /= n);
        let mut var = vec![0f64; d];
        for i in 0..data.len() {
            for (j, &x) in data.row(i).iter().enumerate() {
                var[j] += (f64::from(x) - mean[j]).powi(2);
            }
        }
        let std = (0..d)
            .map(|j| {
                if min[j] < max[j] {
                    (var[j] / n).sqrt() as f32
                } else {
                    1.0
                }
            })
            .collect();
        Self {
            mean: mean.into_iter().map(|m| m as f32).collect(),
            std,
        }
    }

    /// `out[j] = (row[j] - mean[j]) / std[j]`.
    pub fn apply_row(&self, row: &[f32], out: &mut [f32]) {
        for (((o, &x), &m), &s) in out.iter_mut().zip(row).zip(&self.mean).zip(&self.std) {
            *o = (x - m) / s;
        }
    }

    /// A standardized copy of `data`.
    pub fn apply(&self, data: &Dataset) -> Dataset {
        let mut out = data.clone();
        for (dst, src) in out
            .features
            .chunks_exact_mut(data.num_features)
            .zip(data.features.chunks_exact(data.num_features))
        {
            self.apply_row(src, dst);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn load(text: &str) -> Result<Dataset, DatasetError> {
        Dataset::from_reader(text.as_bytes(), Path::new("t.csv"))
    }

    #[track_caller]
    fn load_err(text: &str) -> String {
        load(text).expect_err("should be rejected").to_string()
    }

    #[test]
    fn parses_features_labels_and_names() {
        let d = load("a, b ,label\n1,2.5,0\n-3,4e1,1\n\n5,6,2.0\n").unwrap();
        assert_eq!(d.feature_names, ["a", "b"]);
        assert_eq!(d.features, [1.0, 2.5, -3.0, 40.0, 5.0, 6.0]);
        assert_eq!(d.labels, [0, 1, 2]);
        assert_eq!((d.num_features, d.num_classes, d.len()), (2, 3, 3));
        assert_eq!(d.row(1), [-3.0, 40.0]);
    }

    #[test]
    fn num_classes_counts_absent_middle_labels() {
        let d = load("x,y\n1,0\n2,3\n").unwrap();
        assert_eq!(d.num_classes, 4);
    }

    #[test]
    fn loads_the_shipped_datasets() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data");
        let iris = Dataset::load_csv(&root.join("iris.csv")).unwrap();
        assert_eq!(
            (iris.len(), iris.num_features, iris.num_classes),
            (150, 4, 3)
        );
        let digits = Dataset::load_csv(&root.join("digits.csv")).unwrap();
        assert_eq!(
            (digits.len(), digits.num_features, digits.num_classes),
            (1797, 64, 10)
        );
    }

    #[test]
    fn missing_file_names_the_path() {
        let e = Dataset::load_csv(Path::new("/nonexistent/x.csv")).unwrap_err();
        assert_eq!(e.to_string(), "cannot open /nonexistent/x.csv");
    }

    #[test]
    fn error_lines_count_blank_lines_and_crlf_terminators() {
        assert_eq!(
            load_err("a,b,label\n1,2,0\n\n\n1,zz,1\n"),
            "t.csv: line 5, column \"b\": \"zz\" is not a number"
        );
        assert_eq!(
            load_err("a,b,label\r\n1,2,0\r\n1,zz,1\r\n"),
            "t.csv: line 3, column \"b\": \"zz\" is not a number"
        );
        assert_eq!(
            load_err("a,b,label\r\n\r\n1,2,0\r\n\r\n1,2\r\n"),
            "t.csv: line 5: 2 fields, but the header has 3"
        );
        assert_eq!(
            load_err("\na,b,label\n1,2,0\n1,zz,1\n"),
            "t.csv: line 4, column \"b\": \"zz\" is not a number"
        );
    }

    #[test]
    fn rejects_each_bad_cell_with_file_line_and_column() {
        assert_eq!(
            load_err("a,b,label\n1,2,0\n1,zz,1\n"),
            "t.csv: line 3, column \"b\": \"zz\" is not a number"
        );
        assert_eq!(
            load_err("a,b,label\n1,NaN,0\n"),
            "t.csv: line 2, column \"b\": \"NaN\" is not a finite number"
        );
        assert_eq!(
            load_err("a,b,label\n1,2,0\ninf,2,1\n"),
            "t.csv: line 3, column \"a\": \"inf\" is not a finite number"
        );
        assert_eq!(
            load_err("a,b,label\n1e39,2,0\n"),
            "t.csv: line 2, column \"a\": \"1e39\" is out of range: features must lie strictly between -2^31 and 2^31 (the kernel model reads them as raw i32)"
        );
        assert_eq!(
            load_err("a,b,label\n1,2,0\n1,2\n"),
            "t.csv: line 3: 2 fields, but the header has 3"
        );
        assert_eq!(
            load_err("a,b,label\n1,2,0,4\n"),
            "t.csv: line 2: 4 fields, but the header has 3"
        );
        assert_eq!(
            load_err("a,b,label\n1,2,\n"),
            "t.csv: line 2, column \"label\": \"\" is not a number"
        );
        let e =
            Dataset::from_reader(&b"a,label\n1,0\n\xff,1\n"[..], Path::new("t.csv")).unwrap_err();
        assert!(matches!(e, DatasetError::Csv { line: 3, .. }), "{e:?}");
        assert_eq!(e.to_string(), "t.csv: line 3: cannot read CSV");
    }

    #[test]
    fn rejects_bad_labels() {
        assert_eq!(
            load_err("a,cls\n1,0\n1,-1\n"),
            "t.csv: line 3, column \"cls\": label \"-1\" is negative"
        );
        assert_eq!(
            load_err("a,cls\n1,0\n1,1.5\n"),
            "t.csv: line 3, column \"cls\": label \"1.5\" is not an integer"
        );
        assert_eq!(
            load_err("a,cls\n1,0\n1,16\n"),
            "t.csv: line 3, column \"cls\": label \"16\" is over 15 (the kernel model has at most MAX_CLASSES = 16 classes)"
        );
        assert!(load("a,cls\n1,0\n1,15\n").is_ok());
        assert_eq!(
            load_err("a,cls\n1,1\n2,1\n"),
            "t.csv: column \"cls\": 1 distinct class(es), need at least 2"
        );
    }

    #[test]
    fn a_model_is_scored_on_one_class_and_refuses_labels_it_lacks() {
        let for_model = |text: &str, classes| {
            Dataset::from_reader_for_model(text.as_bytes(), Path::new("t.csv"), classes)
        };
        let d = for_model("a,cls\n1,1\n2,1\n", 3).unwrap();
        assert_eq!((d.labels.as_slice(), d.num_classes), (&[1, 1][..], 2));
        assert_eq!(
            for_model("a,cls\n1,1\n2,3\n", 3).unwrap_err().to_string(),
            "t.csv: line 3, column \"cls\": label 3, but the model predicts only 3 classes (0..=2)"
        );
    }

    #[test]
    fn rejects_bad_shapes() {
        assert_eq!(load_err(""), "t.csv: empty file, expected a header row");
        assert_eq!(
            load_err("a,b,label\n"),
            "t.csv: only a header row, no data rows"
        );
        assert_eq!(
            load_err("label\n1\n"),
            "t.csv: line 1: need at least one feature column before the label column"
        );
        let header: Vec<String> = (0..=USER_MAX_WIDTH).map(|i| format!("f{i}")).collect();
        let text = format!("{},label\n", header.join(","));
        assert_eq!(
            load_err(&text),
            "t.csv: line 1: 4097 feature columns, at most 4096 (the widest layer npk quantizes)"
        );
        // Wider than the kernel's 128 inputs: read, to train and evaluate in userspace.
        let header: Vec<String> = (0..USER_MAX_WIDTH).map(|i| format!("f{i}")).collect();
        let row = vec!["0"; USER_MAX_WIDTH].join(",");
        let text = format!("{},label\n{row},0\n{row},1\n", header.join(","));
        assert_eq!(load(&text).unwrap().num_features, USER_MAX_WIDTH);
    }

    #[test]
    fn names_the_separator_of_a_semicolon_or_tab_file() {
        assert_eq!(
            load_err("a;b;label\n1;2;0\n"),
            "t.csv: line 1: one column, but the header holds 2 semicolons: npk reads \
             comma-separated files (convert it, e.g. `tr ';' ','`)"
        );
        assert_eq!(
            load_err("a\tb\tc\tlabel\n1\t2\t3\t0\n"),
            "t.csv: line 1: one column, but the header holds 3 tabs: npk reads \
             comma-separated files (convert it, e.g. `tr '\\t' ','`)"
        );
    }

    #[test]
    fn refuses_features_beyond_the_raw_i32_range_at_load() {
        assert_eq!(
            load_err("a,b,label\n1,2,0\n3,1e30,1\n"),
            "t.csv: line 3, column \"b\": \"1e30\" is out of range: features must lie strictly \
             between -2^31 and 2^31 (the kernel model reads them as raw i32)"
        );
        // 2147483647 is 2^31 once stored as an f32.
        assert!(load("a,label\n2147483647,0\n0,1\n").is_err());
        let d = load("a,label\n2147483520,0\n-2147483520,1\n").unwrap();
        assert_eq!(d.features, [2147483520.0, -2147483520.0]);
    }

    #[test]
    fn shows_control_bytes_in_values_escaped() {
        assert_eq!(
            load_err("a,label\n5.1\0,0\n"),
            "t.csv: line 2, column \"a\": \"5.1\\0\" is not a number"
        );
    }

    #[test]
    fn endless_input_stops_at_the_record_cap() {
        let e = Dataset::from_reader(io::repeat(0), Path::new("zero")).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("zero: line 1: longer than {MAX_RECORD_BYTES} bytes (the cap on one CSV line)")
        );
        let long_row = format!("a,label\n1,0\n{},1\n", "0".repeat(100));
        let e =
            Dataset::read(long_row.as_bytes(), Path::new("t"), None, 64, MAX_VALUES).unwrap_err();
        assert!(
            matches!(e, DatasetError::RecordTooLong { line: 3, .. }),
            "{e:?}"
        );
        assert!(Dataset::read(long_row.as_bytes(), Path::new("t"), None, 128, MAX_VALUES).is_ok());
        // Rows of valid numbers without end stop at the value cap.
        let endless = "x,label\n".as_bytes().chain(EndlessRows(0));
        let e = Dataset::read(endless, Path::new("t"), None, 64, 1000).unwrap_err();
        assert_eq!(
            e.to_string(),
            "t: line 502: more than 1000 values (rows x columns; the cap on one file)"
        );
    }

    /// `1,0\n1,1\n` over and over; the field is the position in that pattern.
    struct EndlessRows(usize);

    impl Read for EndlessRows {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            for b in buf.iter_mut() {
                *b = b"1,0\n1,1\n"[self.0 % 8];
                self.0 += 1;
            }
            Ok(buf.len())
        }
    }

    fn blobs(per_class: &[usize]) -> Dataset {
        let mut text = String::from("x,label\n");
        for (class, &n) in per_class.iter().enumerate() {
            for i in 0..n {
                text += &format!("{},{class}\n", i * 10 + class);
            }
        }
        load(&text).unwrap()
    }

    #[test]
    fn split_is_stratified_disjoint_and_seeded() {
        let d = blobs(&[50, 30, 20]);
        let (train, test) = d.split(0.2, 1).unwrap();
        let count = |s: &Dataset, c: u32| s.labels.iter().filter(|&&l| l == c).count();
        assert_eq!(
            [count(&test, 0), count(&test, 1), count(&test, 2)],
            [10, 6, 4]
        );
        assert_eq!(
            [count(&train, 0), count(&train, 1), count(&train, 2)],
            [40, 24, 16]
        );
        // Every row lands in exactly one split (x values are unique).
        let mut all: Vec<f32> = train
            .features
            .iter()
            .chain(&test.features)
            .copied()
            .collect();
        all.sort_by(f32::total_cmp);
        let mut orig = d.features.clone();
        orig.sort_by(f32::total_cmp);
        assert_eq!(all, orig);
        assert_eq!(d.split(0.2, 1).unwrap(), (train.clone(), test.clone()));
        assert_ne!(d.split(0.2, 2).unwrap().1, test);
        assert_eq!(test.num_classes, 3);
    }

    #[test]
    fn split_keeps_a_training_row_of_every_class() {
        let d = blobs(&[1, 1, 10]);
        let (train, test) = d.split(0.6, 0).unwrap();
        assert_eq!(train.labels.iter().filter(|&&l| l < 2).count(), 2);
        assert_eq!(test.len(), 6);
    }

    #[test]
    fn split_rejects_bad_fractions_and_empty_sides() {
        let d = blobs(&[5, 5]);
        assert_eq!(
            d.split(1.0, 0).unwrap_err().to_string(),
            "test fraction 1 must be in (0, 1)"
        );
        assert!(d.split(-0.1, 0).is_err());
        assert!(d.split(f64::NAN, 0).is_err());
        assert_eq!(
            d.split(0.0, 0).unwrap_err().to_string(),
            "test fraction 0 must be in (0, 1)"
        );
        assert!(d.split(0.05, 0).is_err());
    }

    #[test]
    fn standardizer_centres_scales_and_handles_constant_features() {
        let d = load("a,b,label\n1,7,0\n3,7,1\n5,7,0\n").unwrap();
        let s = Standardizer::fit(&d);
        assert_eq!(s.mean, [3.0, 7.0]);
        assert_eq!(s.std, [(8.0f32 / 3.0).sqrt(), 1.0]);
        let z = s.apply(&d);
        assert_eq!(z.labels, d.labels);
        let col_a: Vec<f32> = (0..3).map(|i| z.row(i)[0]).collect();
        assert!((col_a.iter().sum::<f32>()).abs() < 1e-6);
        assert!((col_a.iter().map(|x| x * x).sum::<f32>() / 3.0 - 1.0).abs() < 1e-6);
        assert!((0..3).all(|i| z.row(i)[1] == 0.0));
    }
}
