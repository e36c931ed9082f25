//! Every file npk writes goes through here, and so does every report line on the console.
//!
//! An output is checked before the work that produces it ([`OutputPath::check`]): symbolic
//! links are followed to the file they name, except one that another user owns in a sticky
//! world-writable directory such as /tmp (the rule of the kernel's `fs.protected_symlinks`,
//! which npk applies itself since a machine may have it off: such a link is how another user
//! makes root overwrite or create a file of their choosing); the directory must exist and take
//! a new file, and the output must not be one of the command's inputs. Then:
//!
//! - a regular file, or a name that does not exist yet, is written atomically: a temporary
//!   file in the same directory, synced, renamed over the target only when the work succeeded
//!   ([`AtomicOutput::commit`]); dropped uncommitted (an error, Ctrl-C handled by the command),
//!   the temporary file is removed and the target is untouched; one left by a process that
//!   was killed is removed by the next write of the same target;
//! - a character device, FIFO or socket (`/dev/stdout`, `/dev/null`, a pipe) cannot be
//!   replaced, so it is written in place, as a stream;
//! - `-` is the process's standard output, written through its descriptor whatever it is
//!   (`> file` in a shell: the file the shell opened, not a new one);
//! - anything else (a directory, a block device) is refused.
//!
//! Report lines go through [`Console`] (and [`outln!`](crate::outln)): a closed or full
//! stdout is an error the CLI edge can tell apart ([`ConsoleError::is_broken_pipe`]), where
//! `println!` panics.

use std::{
    ffi::OsString,
    fmt,
    fs::{self, File, Metadata},
    io::{self, Write},
    os::unix::fs::{FileTypeExt, MetadataExt},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

/// Symbolic links followed before giving up, as the kernel's own limit (MAXSYMLINKS).
const MAX_SYMLINK_HOPS: usize = 40;

/// An output that cannot be written: the path as given and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{}: {kind}", path.display())]
pub struct OutputError {
    pub path: PathBuf,
    pub kind: OutputErrorKind,
}

#[derive(Debug, thiserror::Error)]
pub enum OutputErrorKind {
    #[error("is a directory")]
    IsDirectory,
    #[error("is a {0}: npk writes regular files, or character devices, FIFOs and sockets in place")]
    Unsupported(&'static str),
    #[error("the directory {} does not exist", .0.display())]
    NoDirectory(PathBuf),
    #[error("{} is not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("names no file")]
    NoFileName,
    #[error("more than {MAX_SYMLINK_HOPS} symbolic links")]
    SymlinkLoop,
    #[error(
        "{} is a symbolic link owned by another user (uid {owner}) in the sticky, \
         world-writable directory {}: npk does not write through it (as the kernel's \
         fs.protected_symlinks would refuse)",
        link.display(),
        dir.display()
    )]
    UntrustedSymlink {
        link: PathBuf,
        dir: PathBuf,
        owner: u32,
    },
    #[error("is also the input {}: refusing to overwrite it", .0.display())]
    IsInput(PathBuf),
    #[error("cannot resolve: {0}")]
    Resolve(io::Error),
    #[error("cannot create a file in {}: {error}", dir.display())]
    NotWritable { dir: PathBuf, error: io::Error },
    #[error("cannot write: {0}")]
    Write(io::Error),
}

/// What an output path names once its symbolic links are followed.
#[derive(Debug)]
enum Target {
    /// A regular file (`existing`) or a name not taken yet: replaced atomically at `path`.
    File {
        path: PathBuf,
        existing: Option<Metadata>,
    },
    /// A character device, FIFO or socket: opened and written in place.
    Stream(Metadata),
    /// `-`: this process's standard output, whatever it is (a terminal, a pipe, a file the
    /// shell opened: written where the shell's descriptor points, never replaced).
    Stdout,
}

/// A checked output path: see the module doc.
#[derive(Debug)]
pub struct OutputPath {
    /// As the user gave it (messages show this).
    given: PathBuf,
    target: Target,
}

impl OutputPath {
    /// Resolves `path`, refuses what npk must not write (see the module doc) and an output that
    /// is one of `inputs` (the same file, or the same name while neither exists), and checks
    /// that the directory takes a new file: all before any work is done.
    pub fn check(path: &Path, inputs: &[&Path]) -> Result<Self, OutputError> {
        let err = |kind| OutputError {
            path: path.to_owned(),
            kind,
        };
        let target = if path == Path::new("-") {
            Target::Stdout
        } else {
            resolve(path).map_err(err)?
        };
        if let Target::File {
            path: resolved,
            existing,
        } = &target
        {
            for &input in inputs {
                let same = match (existing, fs::metadata(input)) {
                    (Some(out), Ok(inp)) => (out.dev(), out.ino()) == (inp.dev(), inp.ino()),
                    (None, Err(_)) => resolve(input)
                        .is_ok_and(|t| matches!(t, Target::File { path, .. } if path == *resolved)),
                    _ => false,
                };
                if same {
                    return Err(err(OutputErrorKind::IsInput(input.to_owned())));
                }
            }
            // The surest check that the directory takes a file is to make one.
            drop(TempFile::create(resolved, existing.as_ref()).map_err(err)?);
        }
        Ok(Self {
            given: path.to_owned(),
            target,
        })
    }

    /// The path as given.
    pub fn path(&self) -> &Path {
        &self.given
    }

    /// Whether this output is the process's own standard output (then reports go to stderr).
    pub fn is_stdout(&self) -> bool {
        let meta = match &self.target {
            Target::Stdout => return true,
            Target::Stream(meta) => meta,
            Target::File { .. } => return false,
        };
        let stdout = io::stdout();
        std::os::fd::AsFd::as_fd(&stdout)
            .try_clone_to_owned()
            .and_then(|fd| File::from(fd).metadata())
            .is_ok_and(|m| (m.dev(), m.ino()) == (meta.dev(), meta.ino()))
    }

    /// Where the command's report lines go: stderr when this output is stdout, so that stdout
    /// holds the output alone.
    pub fn report_console(&self) -> Console {
        if self.is_stdout() {
            Console::Stderr
        } else {
            Console::Stdout
        }
    }

    /// Opens the output for writing: a temporary file next to the target, or the stream.
    pub fn create(&self) -> Result<AtomicOutput, OutputError> {
        let err = |kind| OutputError {
            path: self.given.clone(),
            kind,
        };
        let sink = match &self.target {
            Target::File { path, existing } => {
                Sink::Temp(TempFile::create(path, existing.as_ref()).map_err(err)?)
            }
            Target::Stream(_) => Sink::Stream(
                fs::OpenOptions::new()
                    .write(true)
                    .open(&self.given)
                    .map_err(|e| err(OutputErrorKind::Write(e)))?,
            ),
            Target::Stdout => Sink::Stream(File::from(
                std::os::fd::AsFd::as_fd(&io::stdout())
                    .try_clone_to_owned()
                    .map_err(|e| err(OutputErrorKind::Write(e)))?,
            )),
        };
        Ok(AtomicOutput {
            given: self.given.clone(),
            sink,
        })
    }

    /// Writes `bytes` as the whole output (see [`AtomicOutput::commit`]).
    pub fn write_all(&self, bytes: &[u8]) -> Result<(), OutputError> {
        let mut out = self.create()?;
        out.write_all(bytes).map_err(|e| out.error(e))?;
        out.commit()
    }
}

/// An open output: written through [`Write`], made visible by [`AtomicOutput::commit`].
#[derive(Debug)]
pub struct AtomicOutput {
    given: PathBuf,
    sink: Sink,
}

#[derive(Debug)]
enum Sink {
    Temp(TempFile),
    /// Written in place.
    Stream(File),
}

impl AtomicOutput {
    /// Syncs the temporary file and renames it over the target; a stream was written in
    /// place already.
    pub fn commit(self) -> Result<(), OutputError> {
        match self.sink {
            Sink::Temp(temp) => temp.commit().map_err(|e| OutputError {
                path: self.given,
                kind: OutputErrorKind::Write(e),
            }),
            Sink::Stream(_) => Ok(()),
        }
    }

    /// The output's path as given.
    pub fn path(&self) -> &Path {
        &self.given
    }

    /// A write error, naming the output.
    pub fn error(&self, e: io::Error) -> OutputError {
        OutputError {
            path: self.given.clone(),
            kind: OutputErrorKind::Write(e),
        }
    }

    fn file(&mut self) -> &mut File {
        match &mut self.sink {
            Sink::Temp(temp) => &mut temp.file,
            Sink::Stream(file) => file,
        }
    }
}

impl Write for AtomicOutput {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file().flush()
    }
}

/// A temporary file beside `target`, removed when dropped unless committed.
#[derive(Debug)]
struct TempFile {
    path: PathBuf,
    target: PathBuf,
    file: File,
    committed: bool,
}

impl TempFile {
    /// `.NAME.tmp-PID-N` in the target's directory, never an existing file (O_EXCL: no
    /// following a planted link), with the permissions of the file it replaces.
    fn create(target: &Path, existing: Option<&Metadata>) -> Result<Self, OutputErrorKind> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let prefix = Self::prefix(target)?;
        Self::remove_abandoned(target, &prefix);
        let mut temp_name = prefix;
        temp_name.push(format!(
            "{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let path = target.with_file_name(temp_name);
        let not_writable = |error| OutputErrorKind::NotWritable {
            dir: parent_dir(target).to_owned(),
            error,
        };
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(not_writable)?;
        let temp = Self {
            path,
            target: target.to_owned(),
            file,
            committed: false,
        };
        if let Some(meta) = existing {
            temp.file
                .set_permissions(meta.permissions())
                .map_err(OutputErrorKind::Write)?;
        }
        Ok(temp)
    }

    /// `.NAME.tmp-`: what every temporary file of `target` is called before `PID-N`.
    fn prefix(target: &Path) -> Result<OsString, OutputErrorKind> {
        let name = target.file_name().ok_or(OutputErrorKind::NoFileName)?;
        let mut prefix = OsString::from(".");
        prefix.push(name);
        prefix.push(".tmp-");
        Ok(prefix)
    }

    /// Removes the temporary files of `target` whose writer is gone (killed before it could
    /// commit or clean up: SIGKILL, a second Ctrl-C). A live writer's file is kept, and so is
    /// anything whose name is not exactly `PREFIX PID-N`. Best effort: a directory that
    /// cannot be listed leaves them.
    fn remove_abandoned(target: &Path, prefix: &OsString) {
        let Ok(entries) = fs::read_dir(parent_dir(target)) else {
            return;
        };
        let prefix = prefix.as_encoded_bytes();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(rest) = name.as_encoded_bytes().strip_prefix(prefix) else {
                continue;
            };
            let Some((pid, counter)) = std::str::from_utf8(rest)
                .ok()
                .and_then(|rest| rest.split_once('-'))
            else {
                continue;
            };
            let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            let Ok(pid) = pid.parse::<libc::pid_t>() else {
                continue;
            };
            if !digits(counter) || pid <= 0 || pid as u32 == std::process::id() {
                continue;
            }
            // Gone, or a zombie (it exited; its parent has not read its status yet): the
            // same test the attachment pins' owner gets.
            let gone = crate::sys::process_start_time(pid as u32).is_none();
            if gone && entry.file_type().is_ok_and(|t| t.is_file()) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    fn commit(mut self) -> io::Result<()> {
        self.file.sync_all()?;
        fs::rename(&self.path, &self.target)?;
        self.committed = true;
        // The rename itself is durable once the directory is synced.
        File::open(parent_dir(&self.target))?.sync_all()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.committed {
            // Best effort: nothing else can be done about a file that will not go.
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Follows `path`'s symbolic links to the file it names (see the module doc).
fn resolve(path: &Path) -> Result<Target, OutputErrorKind> {
    let end = follow_trusted_links(path)?;
    match fs::metadata(path) {
        Ok(meta) => {
            let kind = meta.file_type();
            if kind.is_file() {
                // canonicalize() also sees through /proc/self/fd links (/dev/stdout to a file).
                let path = fs::canonicalize(path).map_err(OutputErrorKind::Resolve)?;
                Ok(Target::File {
                    path,
                    existing: Some(meta),
                })
            } else if kind.is_dir() {
                Err(OutputErrorKind::IsDirectory)
            } else if kind.is_char_device() || kind.is_fifo() || kind.is_socket() {
                Ok(Target::Stream(meta))
            } else if kind.is_block_device() {
                Err(OutputErrorKind::Unsupported("block device"))
            } else {
                Err(OutputErrorKind::Unsupported("special file"))
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // A name not taken yet, perhaps through a dangling link: the name it makes.
            match fs::symlink_metadata(&end) {
                Ok(_) => Err(OutputErrorKind::Resolve(e)),
                Err(_) => new_file(&end),
            }
        }
        Err(e) => Err(OutputErrorKind::Resolve(e)),
    }
}

/// Follows the symbolic links `path` names, one hop at a time, to the first name that is not
/// one (or does not exist), and refuses a link that another user owns (neither this
/// process's user nor the directory's owner) in a sticky, world-writable directory:
/// fs.protected_symlinks' rule, whatever the machine's setting.
fn follow_trusted_links(path: &Path) -> Result<PathBuf, OutputErrorKind> {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    let mut name = path.to_owned();
    for _ in 0..MAX_SYMLINK_HOPS {
        let Ok(link) = fs::symlink_metadata(&name) else {
            return Ok(name);
        };
        if !link.file_type().is_symlink() {
            return Ok(name);
        }
        let dir = parent_dir(&name).to_owned();
        let dir_meta = fs::metadata(&dir).map_err(OutputErrorKind::Resolve)?;
        let sticky_world_writable = dir_meta.mode() & 0o1002 == 0o1002;
        if sticky_world_writable && link.uid() != euid && link.uid() != dir_meta.uid() {
            return Err(OutputErrorKind::UntrustedSymlink {
                link: name,
                dir,
                owner: link.uid(),
            });
        }
        let target = fs::read_link(&name).map_err(OutputErrorKind::Resolve)?;
        name = dir.join(target);
    }
    Err(OutputErrorKind::SymlinkLoop)
}

/// The target for `name`, which does not exist: its directory, canonical, joined to the name.
fn new_file(name: &Path) -> Result<Target, OutputErrorKind> {
    let file_name = name.file_name().ok_or(OutputErrorKind::NoFileName)?;
    let dir = parent_dir(name);
    let canonical = fs::canonicalize(dir).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => OutputErrorKind::NoDirectory(dir.to_owned()),
        io::ErrorKind::NotADirectory => OutputErrorKind::NotADirectory(dir.to_owned()),
        _ => OutputErrorKind::Resolve(e),
    })?;
    if !canonical.is_dir() {
        return Err(OutputErrorKind::NotADirectory(dir.to_owned()));
    }
    Ok(Target::File {
        path: canonical.join(file_name),
        existing: None,
    })
}

/// An error and its causes joined by ": ", for a message that stands alone (the CLI's last
/// line, a reason in a report), leaving out a cause whose text the message already ends
/// with: an error that shows its source in its own text and also returns it as its source
/// would otherwise say it twice ("Read-only file system (os error 30): Read-only file system
/// (os error 30)").
pub fn error_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let part = c.to_string();
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = c.source();
    }
    text
}

/// Where a command prints its report lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Console {
    Stdout,
    Stderr,
}

/// A report line that could not be printed.
#[derive(Debug, thiserror::Error)]
#[error("writing to standard {}: {error}", match stream { Console::Stdout => "output", Console::Stderr => "error" })]
pub struct ConsoleError {
    pub stream: Console,
    pub error: io::Error,
}

impl ConsoleError {
    /// The reader went away (`npk ... | head`): nothing is wrong with npk's work.
    pub fn is_broken_pipe(&self) -> bool {
        self.error.kind() == io::ErrorKind::BrokenPipe
    }
}

impl Console {
    /// Writes one line and flushes it, so that a write error shows at this line.
    pub fn line(self, line: fmt::Arguments) -> Result<(), ConsoleError> {
        let write = |out: &mut dyn Write| {
            out.write_fmt(line)?;
            out.write_all(b"\n")?;
            out.flush()
        };
        match self {
            Self::Stdout => write(&mut io::stdout().lock()),
            Self::Stderr => write(&mut io::stderr().lock()),
        }
        .map_err(|error| ConsoleError {
            stream: self,
            error,
        })
    }
}

/// `println!` that returns a [`ConsoleError`] instead of panicking.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::Console::Stdout.line(format_args!($($arg)*))
    };
}

/// `eprintln!` that does not panic: a note on stderr is best effort, lost when stderr is
/// closed or full (the command's work and its exit status do not depend on it).
#[macro_export]
macro_rules! noteln {
    ($($arg:tt)*) => {{
        let _ = $crate::output::Console::Stderr.line(format_args!($($arg)*));
    }};
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{PermissionsExt, symlink};

    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// In a sticky world-writable directory, a link another user owns is not written through,
    /// whether it names an existing file (which would be replaced) or none (which would be
    /// created); the same link owned by this user, or in an ordinary directory, is followed.
    #[test]
    fn another_users_symlink_in_a_sticky_directory_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let sticky = dir.path().join("tmp");
        fs::create_dir(&sticky).unwrap();
        fs::set_permissions(&sticky, fs::Permissions::from_mode(0o1777)).unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "root's").unwrap();
        let nobody = 65534;
        for (name, target) in [
            ("existing", victim.clone()),
            ("dangling", dir.path().join("new")),
        ] {
            let link = sticky.join(name);
            symlink(&target, &link).unwrap();
            std::os::unix::fs::lchown(&link, Some(nobody), Some(nobody)).unwrap();
            let e = OutputPath::check(&link, &[]).unwrap_err();
            assert!(
                matches!(e.kind, OutputErrorKind::UntrustedSymlink { owner, .. } if owner == nobody),
                "{name}: {e}"
            );
            assert!(e.to_string().contains("fs.protected_symlinks"), "{e}");
            // Owned by this user: followed.
            std::os::unix::fs::lchown(&link, Some(0), Some(0)).unwrap();
            OutputPath::check(&link, &[]).unwrap();
        }
        assert_eq!(fs::read_to_string(&victim).unwrap(), "root's");
        assert!(!dir.path().join("new").exists());
        // Another user's link in an ordinary directory: followed, as the kernel would.
        let plain = dir.path().join("plain-link");
        symlink(&victim, &plain).unwrap();
        std::os::unix::fs::lchown(&plain, Some(nobody), Some(nobody)).unwrap();
        OutputPath::check(&plain, &[]).unwrap();
    }

    #[test]
    fn a_regular_file_is_replaced_only_on_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.csv");
        fs::write(&path, "old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let out = OutputPath::check(&path, &[]).unwrap();
        let mut w = out.create().unwrap();
        w.write_all(b"new").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "old");
        drop(w);
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "old",
            "dropped: untouched"
        );
        assert_eq!(entries(dir.path()), ["out.csv"], "no temporary file left");
        let mut w = out.create().unwrap();
        w.write_all(b"new").unwrap();
        w.commit().unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640, "the replaced file's permissions");
        assert_eq!(entries(dir.path()), ["out.csv"]);
    }

    #[test]
    fn a_killed_writers_temporary_file_is_removed_by_the_next_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.csv");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        // A writer that exited but was not reaped yet (a zombie) is gone too.
        let mut zombie = std::process::Command::new("true").spawn().unwrap();
        while crate::sys::process_start_time(zombie.id()).is_some() {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let of_zombie = format!(".out.csv.tmp-{}-0", zombie.id());
        fs::write(dir.path().join(&of_zombie), "partial").unwrap();
        let abandoned = format!(".out.csv.tmp-{dead}-0");
        let live = ".out.csv.tmp-1-0"; // init never exits
        let other_target = format!(".other.csv.tmp-{dead}-0");
        let not_ours = format!(".out.csv.tmp-{dead}-x");
        for name in [&abandoned, live, &other_target, &not_ours] {
            fs::write(dir.path().join(name), "partial").unwrap();
        }
        OutputPath::check(&path, &[])
            .unwrap()
            .write_all(b"new")
            .unwrap();
        let mut kept = vec![live.to_owned(), other_target, not_ours, "out.csv".into()];
        kept.sort();
        assert_eq!(entries(dir.path()), kept);
        zombie.wait().unwrap();
    }

    #[test]
    fn a_symlink_stays_a_symlink_and_its_target_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.npk");
        let link = dir.path().join("link.npk");
        fs::write(&real, "old").unwrap();
        symlink("real.npk", &link).unwrap();
        OutputPath::check(&link, &[])
            .unwrap()
            .write_all(b"new")
            .unwrap();
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read_to_string(&real).unwrap(), "new");
        // A dangling link makes its target.
        let dangling = dir.path().join("dangling");
        symlink("made.npk", &dangling).unwrap();
        OutputPath::check(&dangling, &[])
            .unwrap()
            .write_all(b"x")
            .unwrap();
        assert!(
            fs::symlink_metadata(&dangling)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(
            fs::read_to_string(dir.path().join("made.npk")).unwrap(),
            "x"
        );
        let looped = dir.path().join("loop");
        symlink("loop", &looped).unwrap();
        let e = OutputPath::check(&looped, &[]).unwrap_err();
        assert!(
            matches!(
                e.kind,
                OutputErrorKind::Resolve(_) | OutputErrorKind::SymlinkLoop
            ),
            "{e}"
        );
    }

    #[test]
    fn devices_are_written_in_place() {
        let out = OutputPath::check(Path::new("/dev/null"), &[]).unwrap();
        out.write_all(b"discarded").unwrap();
        assert!(
            fs::metadata("/dev/null")
                .unwrap()
                .file_type()
                .is_char_device()
        );
        let e = OutputPath::check(Path::new("/dev/full"), &[])
            .unwrap()
            .write_all(b"x")
            .unwrap_err();
        assert!(
            e.to_string().starts_with("/dev/full: cannot write: "),
            "{e}"
        );
    }

    #[test]
    fn refused_outputs_name_the_path_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let input = dir.path().join("in.pcap");
        fs::write(&input, "capture").unwrap();
        let hard_link = dir.path().join("hard.pcap");
        fs::hard_link(&input, &hard_link).unwrap();
        let new_csv = dir.path().join("new.csv");
        let cases = [
            (
                dir.path().to_owned(),
                &[][..],
                format!("{d}: is a directory"),
            ),
            (
                dir.path().join("no/m.npk"),
                &[],
                format!("{d}/no/m.npk: the directory {d}/no does not exist"),
            ),
            (
                input.join("m.npk"),
                &[],
                format!("{d}/in.pcap/m.npk: cannot resolve: Not a directory (os error 20)"),
            ),
            (
                hard_link.clone(),
                &[input.as_path()][..],
                format!("{d}/hard.pcap: is also the input {d}/in.pcap: refusing to overwrite it"),
            ),
            (
                dir.path().join("./new.csv"),
                &[new_csv.as_path()][..],
                format!("{d}/./new.csv: is also the input {d}/new.csv: refusing to overwrite it"),
            ),
        ];
        for (path, inputs, message) in cases {
            let e = OutputPath::check(&path, inputs).unwrap_err();
            assert_eq!(e.to_string(), message);
        }
        assert_eq!(fs::read_to_string(&input).unwrap(), "capture");
        assert_eq!(entries(dir.path()), ["hard.pcap", "in.pcap"]);
    }
}
