//! IDX files, MNIST's format: an image file `*-images-idx3-ubyte` (magic `0x00000803`: unsigned
//! bytes, three dimensions: count, rows, columns, big-endian u32 each, then the pixels) and its
//! labels beside it, `*-labels-idx1-ubyte` (magic `0x00000801`, a count, one byte per label).
//! Both gzip-compressed (`.gz`, as Debian's `dataset-fashion-mnist` installs them) or both not.
//!
//! Bounded whatever the files hold: at most [`MAX_IDX_BYTES`] are read (decompressed), and the
//! header's count and dimensions are checked against the bytes read before anything is
//! allocated for them.

use std::{
    fs::File,
    io::{self, Read},
    path::{Path, PathBuf},
};

use npk_common::model::MAX_CLASSES;

use super::Dataset;
use crate::quantize::USER_MAX_WIDTH;

/// Most bytes read from one IDX file, decompressed: [`super::MAX_VALUES`], so that the features
/// take at most what the largest CSV file may (1 GiB of f32). MNIST's training images are 47 MB.
pub const MAX_IDX_BYTES: usize = super::MAX_VALUES;
const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;
const IMAGES_SUFFIX: &str = "-images-idx3-ubyte";
const LABELS_SUFFIX: &str = "-labels-idx1-ubyte";
const GZIP_SUFFIX: &str = ".gz";

/// Why an IDX image or label file cannot be used; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum IdxError {
    #[error(
        "{}: not an IDX image file name: expected one ending in {IMAGES_SUFFIX} or \
         {IMAGES_SUFFIX}{GZIP_SUFFIX}, with its labels beside it",
        path.display()
    )]
    NotImages { path: PathBuf },
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{}: more than {cap} bytes (decompressed): larger than any IDX file npk reads",
        path.display()
    )]
    TooLarge { path: PathBuf, cap: usize },
    #[error("{}: {found} bytes: shorter than the {header}-byte header", path.display())]
    ShortHeader {
        path: PathBuf,
        header: usize,
        found: usize,
    },
    #[error(
        "{}: magic {found:#010x}, expected {expected:#010x} (IDX {what}: unsigned bytes, {dims} \
         dimension(s))",
        path.display()
    )]
    Magic {
        path: PathBuf,
        found: u32,
        expected: u32,
        what: &'static str,
        dims: usize,
    },
    #[error("{}: {dimension} is 0", path.display())]
    ZeroDimension {
        path: PathBuf,
        dimension: &'static str,
    },
    #[error(
        "{}: images of {rows} x {columns} = {pixels} pixels: at most {USER_MAX_WIDTH} features \
         (the widest layer npk quantizes)",
        path.display(),
        pixels = *rows as u64 * *columns as u64
    )]
    TooManyPixels {
        path: PathBuf,
        rows: u32,
        columns: u32,
    },
    #[error(
        "{}: the header announces {expected} bytes of data, the file holds {found}",
        path.display()
    )]
    Length {
        path: PathBuf,
        expected: u64,
        found: usize,
    },
    #[error(
        "{} holds {images} images but {} holds {labels} labels",
        images_path.display(),
        labels_path.display()
    )]
    CountMismatch {
        images_path: PathBuf,
        images: u32,
        labels_path: PathBuf,
        labels: u32,
    },
    #[error(
        "{}: label {index} is {label}: at most {} (the kernel model's MAX_CLASSES = {MAX_CLASSES})",
        path.display(),
        MAX_CLASSES - 1
    )]
    Label {
        path: PathBuf,
        index: usize,
        label: u8,
    },
}

/// Whether `path` names an IDX image file (by its name, as `--data` tells IDX from CSV).
pub fn is_idx_images(path: &Path) -> bool {
    labels_path(path).is_some()
}

/// The label file beside the image file `images`: the name's `-images-idx3-ubyte` becomes
/// `-labels-idx1-ubyte`, a `.gz` staying a `.gz`.
pub fn labels_path(images: &Path) -> Option<PathBuf> {
    let name = images.file_name()?.to_str()?;
    let (stem, gz) = match name.strip_suffix(GZIP_SUFFIX) {
        Some(stem) => (stem, GZIP_SUFFIX),
        None => (name, ""),
    };
    let prefix = stem.strip_suffix(IMAGES_SUFFIX)?;
    Some(images.with_file_name(format!("{prefix}{LABELS_SUFFIX}{gz}")))
}

/// Reads the image file `images` and the labels beside it into a dataset: one row per image,
/// its pixels (0..=255) in row-major order as features named `px{row}_{column}`.
pub fn load(images: &Path) -> Result<Dataset, IdxError> {
    let labels = labels_path(images).ok_or_else(|| IdxError::NotImages {
        path: images.to_owned(),
    })?;
    let image_bytes = read_capped(images, MAX_IDX_BYTES)?;
    let label_bytes = read_capped(&labels, MAX_IDX_BYTES)?;
    from_bytes(images, &image_bytes, &labels, &label_bytes)
}

/// [`load`] on the files' (decompressed) bytes; the paths only name them in errors.
pub fn from_bytes(
    images_path: &Path,
    image_bytes: &[u8],
    labels_path: &Path,
    label_bytes: &[u8],
) -> Result<Dataset, IdxError> {
    let image_header = header(images_path, image_bytes, IMAGES_MAGIC, "images", 3)?;
    let [count, rows, columns] = image_header[..] else {
        unreachable!("header returns the 3 dimensions it was asked for")
    };
    let label_header = header(labels_path, label_bytes, LABELS_MAGIC, "labels", 1)?;
    let labels_count = label_header[0];
    for (dimension, value) in [
        ("the image count", count),
        ("rows", rows),
        ("columns", columns),
    ] {
        if value == 0 {
            return Err(IdxError::ZeroDimension {
                path: images_path.to_owned(),
                dimension,
            });
        }
    }
    let pixels = rows as u64 * columns as u64;
    if pixels > USER_MAX_WIDTH as u64 {
        return Err(IdxError::TooManyPixels {
            path: images_path.to_owned(),
            rows,
            columns,
        });
    }
    let image_data = data(images_path, image_bytes, 3, count as u64 * pixels)?;
    let label_data = data(labels_path, label_bytes, 1, labels_count as u64)?;
    if labels_count != count {
        return Err(IdxError::CountMismatch {
            images_path: images_path.to_owned(),
            images: count,
            labels_path: labels_path.to_owned(),
            labels: labels_count,
        });
    }
    if let Some((index, &label)) = label_data
        .iter()
        .enumerate()
        .find(|&(_, &l)| usize::from(l) >= MAX_CLASSES)
    {
        return Err(IdxError::Label {
            path: labels_path.to_owned(),
            index,
            label,
        });
    }
    let columns_usize = columns as usize;
    Ok(Dataset {
        feature_names: (0..pixels as usize)
            .map(|p| format!("px{}_{}", p / columns_usize, p % columns_usize))
            .collect(),
        features: image_data.iter().map(|&p| f32::from(p)).collect(),
        labels: label_data.iter().map(|&l| u32::from(l)).collect(),
        num_features: pixels as usize,
        num_classes: label_data.iter().max().map_or(0, |&m| usize::from(m) + 1),
    })
}

/// The `dims` big-endian dimensions after a checked magic.
fn header(
    path: &Path,
    bytes: &[u8],
    magic: u32,
    what: &'static str,
    dims: usize,
) -> Result<Vec<u32>, IdxError> {
    let len = 4 * (1 + dims);
    let Some(head) = bytes.get(..len) else {
        return Err(IdxError::ShortHeader {
            path: path.to_owned(),
            header: len,
            found: bytes.len(),
        });
    };
    let words: Vec<u32> = head
        .chunks_exact(4)
        .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
        .collect();
    if words[0] != magic {
        return Err(IdxError::Magic {
            path: path.to_owned(),
            found: words[0],
            expected: magic,
            what,
            dims,
        });
    }
    Ok(words[1..].to_vec())
}

/// The data after a header of `dims` dimensions, exactly `expected` bytes of it.
fn data<'a>(
    path: &Path,
    bytes: &'a [u8],
    dims: usize,
    expected: u64,
) -> Result<&'a [u8], IdxError> {
    let data = &bytes[4 * (1 + dims)..];
    if data.len() as u64 != expected {
        return Err(IdxError::Length {
            path: path.to_owned(),
            expected,
            found: data.len(),
        });
    }
    Ok(data)
}

/// The bytes of `path`, decompressed when its name ends in `.gz`; at most `cap` of them.
fn read_capped(path: &Path, cap: usize) -> Result<Vec<u8>, IdxError> {
    let err = |source| IdxError::Read {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(err)?;
    let reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut bytes = Vec::new();
    reader
        .take(cap as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(err)?;
    if bytes.len() > cap {
        return Err(IdxError::TooLarge {
            path: path.to_owned(),
            cap,
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use proptest::prelude::*;

    use super::*;

    fn images(count: u32, rows: u32, columns: u32, pixels: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        for w in [IMAGES_MAGIC, count, rows, columns] {
            b.extend_from_slice(&w.to_be_bytes());
        }
        b.extend_from_slice(pixels);
        b
    }

    fn labels(values: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        for w in [LABELS_MAGIC, values.len() as u32] {
            b.extend_from_slice(&w.to_be_bytes());
        }
        b.extend_from_slice(values);
        b
    }

    fn parse(image_bytes: &[u8], label_bytes: &[u8]) -> Result<Dataset, IdxError> {
        from_bytes(
            Path::new("i-images-idx3-ubyte"),
            image_bytes,
            Path::new("i-labels-idx1-ubyte"),
            label_bytes,
        )
    }

    #[test]
    fn labels_are_found_beside_the_images() {
        for (images, labels) in [
            (
                "/d/train-images-idx3-ubyte.gz",
                Some("/d/train-labels-idx1-ubyte.gz"),
            ),
            ("t10k-images-idx3-ubyte", Some("t10k-labels-idx1-ubyte")),
            ("train-labels-idx1-ubyte", None),
            ("data.csv", None),
        ] {
            assert_eq!(
                labels_path(Path::new(images)),
                labels.map(PathBuf::from),
                "{images}"
            );
        }
    }

    #[test]
    fn two_images_become_two_rows() {
        let d = parse(
            &images(2, 2, 3, &[0, 1, 2, 3, 4, 5, 255, 7, 8, 9, 10, 11]),
            &labels(&[3, 9]),
        )
        .unwrap();
        assert_eq!((d.len(), d.num_features, d.num_classes), (2, 6, 10));
        assert_eq!(d.row(1), [255.0, 7.0, 8.0, 9.0, 10.0, 11.0]);
        assert_eq!(d.labels, [3, 9]);
        assert_eq!(d.feature_names[..4], ["px0_0", "px0_1", "px0_2", "px1_0"]);
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let err = |i: &[u8], l: &[u8]| parse(i, l).unwrap_err().to_string();
        let good = images(2, 1, 2, &[1, 2, 3, 4]);
        assert_eq!(
            err(&good, &labels(&[1])),
            "i-images-idx3-ubyte holds 2 images but i-labels-idx1-ubyte holds 1 labels"
        );
        let mut magic = good.clone();
        magic[3] = 0x01;
        assert_eq!(
            err(&magic, &labels(&[1, 2])),
            "i-images-idx3-ubyte: magic 0x00000801, expected 0x00000803 (IDX images: unsigned \
             bytes, 3 dimension(s))"
        );
        assert_eq!(
            err(&images(2, 0, 2, &[]), &labels(&[1, 2])),
            "i-images-idx3-ubyte: rows is 0"
        );
        assert_eq!(
            err(&images(0, 1, 2, &[]), &labels(&[])),
            "i-images-idx3-ubyte: the image count is 0"
        );
        assert_eq!(
            err(&good[..good.len() - 1], &labels(&[1, 2])),
            "i-images-idx3-ubyte: the header announces 4 bytes of data, the file holds 3"
        );
        assert_eq!(
            err(&images(u32::MAX, 64, 64, &[]), &labels(&[])),
            "i-images-idx3-ubyte: the header announces 17592186040320 bytes of data, the file holds 0"
        );
        assert_eq!(
            err(&images(1, 65, 64, &[]), &labels(&[0])),
            "i-images-idx3-ubyte: images of 65 x 64 = 4160 pixels: at most 4096 features (the \
             widest layer npk quantizes)"
        );
        assert_eq!(
            err(&good, &labels(&[1, 16])),
            "i-labels-idx1-ubyte: label 1 is 16: at most 15 (the kernel model's MAX_CLASSES = 16)"
        );
        assert_eq!(
            err(&good[..10], &labels(&[1, 2])),
            "i-images-idx3-ubyte: 10 bytes: shorter than the 16-byte header"
        );
    }

    #[test]
    fn gzip_files_load_and_a_missing_label_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let write_gz = |name: &str, bytes: &[u8]| {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(bytes).unwrap();
            std::fs::write(dir.path().join(name), gz.finish().unwrap()).unwrap();
        };
        write_gz("a-images-idx3-ubyte.gz", &images(1, 1, 2, &[5, 6]));
        let path = dir.path().join("a-images-idx3-ubyte.gz");
        let missing = load(&path).unwrap_err().to_string();
        assert_eq!(
            missing,
            format!(
                "cannot read {}",
                dir.path().join("a-labels-idx1-ubyte.gz").display()
            )
        );
        write_gz("a-labels-idx1-ubyte.gz", &labels(&[4]));
        let d = load(&path).unwrap();
        assert_eq!((d.row(0), d.labels.as_slice()), (&[5.0, 6.0][..], &[4][..]));
        assert!(matches!(
            load(&dir.path().join("a.csv")),
            Err(IdxError::NotImages { .. })
        ));
    }

    #[test]
    fn a_file_past_the_cap_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        std::fs::write(&path, [0u8; 101]).unwrap();
        assert!(matches!(
            read_capped(&path, 100),
            Err(IdxError::TooLarge { cap: 100, .. })
        ));
        assert_eq!(read_capped(&path, 101).unwrap().len(), 101);
    }

    proptest! {
        /// No bytes make the parser panic: random files, truncations and corrupted headers of
        /// valid ones; what it accepts is as long as its header says.
        #[test]
        fn random_and_truncated_files_never_panic(
            junk in prop::collection::vec(any::<u8>(), 0..64),
            count in 1u32..5,
            rows in 1u32..5,
            columns in 1u32..5,
            cut in any::<prop::sample::Index>(),
            flip in any::<prop::sample::Index>(),
        ) {
            let n = (count * rows * columns) as usize;
            let pixels: Vec<u8> = (0..n).map(|p| p as u8).collect();
            let label_values: Vec<u8> = (0..count).map(|c| (c % 10) as u8).collect();
            let good_images = images(count, rows, columns, &pixels);
            let good_labels = labels(&label_values);
            prop_assert!(parse(&good_images, &good_labels).is_ok());
            let _ = parse(&junk, &good_labels);
            let _ = parse(&good_images, &junk);
            let short = &good_images[..cut.index(good_images.len())];
            prop_assert!(parse(short, &good_labels).is_err());
            let short = &good_labels[..cut.index(good_labels.len())];
            prop_assert!(parse(&good_images, short).is_err());
            let mut flipped = good_images.clone();
            let at = flip.index(16);
            flipped[at] ^= 0x5a;
            if let Ok(d) = parse(&flipped, &good_labels) {
                prop_assert_eq!(d.features.len(), d.len() * d.num_features);
            }
        }
    }
}
