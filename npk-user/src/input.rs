//! Every file npk reads whole goes through here: a regular file (a FIFO, device or directory
//! is refused before anything is read: opening a FIFO does not wait for a writer) of at most
//! a limit the caller names, checked before reading and again while reading (a file may grow
//! meanwhile).

use std::{
    io::{self, Read},
    os::unix::fs::{FileTypeExt, OpenOptionsExt},
    path::Path,
};

/// `-` as a file to read: standard input (`tcpdump -w - | npk features --pcap - ...`).
pub fn is_stdin(path: &Path) -> bool {
    path == Path::new("-")
}

/// What errors call standard input read as `-`.
pub const STDIN_NAME: &str = "standard input";

/// Why a file was not read.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{0}")]
    Read(io::Error),
    #[error("is a {0}, not a regular file")]
    NotAFile(&'static str),
    #[error("{found} bytes, more than the {limit} this file may have")]
    TooLarge { found: u64, limit: u64 },
}

/// The bytes of the regular file `path`, refused when it holds more than `limit` bytes.
pub fn read_capped(path: &Path, limit: u64) -> Result<Vec<u8>, InputError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(InputError::Read)?;
    let meta = file.metadata().map_err(InputError::Read)?;
    let kind = meta.file_type();
    if !kind.is_file() {
        return Err(InputError::NotAFile(if kind.is_dir() {
            "directory"
        } else if kind.is_fifo() {
            "FIFO"
        } else if kind.is_char_device() {
            "character device"
        } else if kind.is_block_device() {
            "block device"
        } else {
            "socket or special file"
        }));
    }
    if meta.len() > limit {
        return Err(InputError::TooLarge {
            found: meta.len(),
            limit,
        });
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(InputError::Read)?;
    if bytes.len() as u64 > limit {
        return Err(InputError::TooLarge {
            found: bytes.len() as u64,
            limit,
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_a_bounded_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo with a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // Returns at once: no writer is waited for.
        assert!(matches!(
            read_capped(&fifo, 10),
            Err(InputError::NotAFile("FIFO"))
        ));
        assert!(matches!(
            read_capped(Path::new("/dev/zero"), 10),
            Err(InputError::NotAFile("character device"))
        ));
        assert!(matches!(
            read_capped(dir.path(), 10),
            Err(InputError::NotAFile("directory"))
        ));
        let file = dir.path().join("f");
        std::fs::write(&file, "12345678901").unwrap();
        assert!(matches!(
            read_capped(&file, 10),
            Err(InputError::TooLarge {
                found: 11,
                limit: 10
            })
        ));
        assert_eq!(read_capped(&file, 11).unwrap(), b"12345678901");
    }
}
