//! The `Host` port: the one door through which connectors act on a host.
//!
//! Connectors *read* the host by joining host paths onto [`Host::root`] (see the `fs` module);
//! every *side effect* goes through this trait: writes to sysfs control files, removal of
//! udev links, commands such as `iscsiadm`, and time (sleeps and the clock). [`RealHost`] is
//! `/`, real files, real processes and real time; the harness adapts the simulator to the same
//! trait, so one connector code path runs on both.

use std::fmt;
use std::io::Write as _;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// An absolute path *on the host* (`/sys/...`, `/dev/...`), never joined onto a root yet.
///
/// Construction rejects relative paths, `..`, empty components, NUL bytes and
/// non-UTF-8, so a value read from a hostile sysfs file cannot name a path outside the root.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostPath(String);

impl HostPath {
    /// Validates `path` as an absolute, normalised host path.
    pub fn new(path: impl Into<String>) -> Result<Self, HostError> {
        let path = path.into();
        let ok = path.starts_with('/')
            && !path.contains('\0')
            && !path.contains("//")
            && (path == "/" || !path.ends_with('/'))
            && Path::new(&path)
                .components()
                .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
            && !path.split('/').any(|c| c == "." || c == "..");
        if ok {
            Ok(Self(path))
        } else {
            Err(HostError::BadPath { path })
        }
    }

    /// Appends one path component (a file name, e.g. a device name read from sysfs).
    ///
    /// The component must not be empty, `.`, `..` or contain `/`.
    pub fn join(&self, component: &str) -> Result<Self, HostError> {
        if component.is_empty()
            || component == "."
            || component == ".."
            || component.contains('/')
            || component.contains('\0')
        {
            return Err(HostError::BadPath {
                path: format!("{}/{}", self.0, component),
            });
        }
        // Built by hand: paths are joined on every sysfs walk, and `format!` costs more
        // than the copy.
        let base = if self.0 == "/" { "" } else { self.0.as_str() };
        let mut path = String::with_capacity(base.len() + 1 + component.len());
        path.push_str(base);
        path.push('/');
        path.push_str(component);
        Ok(Self(path))
    }

    /// The path as a string, starting with `/`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last component, or `""` for `/`.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or("")
    }

    /// The parent path, or `None` for `/`.
    pub fn parent(&self) -> Option<Self> {
        if self.0 == "/" {
            return None;
        }
        let idx = self.0.rfind('/')?;
        Some(Self(if idx == 0 {
            "/".to_owned()
        } else {
            self.0[..idx].to_owned()
        }))
    }

    /// This host path under `root` (a real directory on this machine).
    pub fn under(&self, root: &Path) -> PathBuf {
        root.join(self.0.trim_start_matches('/'))
    }
}

impl fmt::Display for HostPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for HostPath {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for HostPath {
    /// Deserializes with the same validation as [`HostPath::new`].
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        HostPath::new(s).map_err(serde::de::Error::custom)
    }
}

/// A command line to run on the host, with optional standard input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    /// The program, by name (`iscsiadm`) as it would be found on `PATH`, then the
    /// arguments, unquoted: what [`Cmd::argv`] lends.
    argv: Vec<String>,
    /// Bytes written to the command's standard input, if any.
    pub stdin: Option<String>,
}

impl Cmd {
    /// A command with no arguments.
    pub fn new(program: impl Into<String>) -> Self {
        Self {
            argv: vec![program.into()],
            stdin: None,
        }
    }

    /// Appends one argument.
    #[must_use]
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.argv.push(arg.into());
        self
    }

    /// Appends several arguments.
    #[must_use]
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.argv.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets standard input.
    #[must_use]
    pub fn stdin(mut self, input: impl Into<String>) -> Self {
        self.stdin = Some(input.into());
        self
    }

    /// The program, by name (`iscsiadm`) as it would be found on `PATH`.
    pub fn program(&self) -> &str {
        self.argv.first().map_or("", String::as_str)
    }

    /// The arguments, unquoted.
    pub fn args_list(&self) -> &[String] {
        self.argv.get(1..).unwrap_or_default()
    }

    /// The program followed by the arguments.
    pub fn argv(&self) -> &[String] {
        &self.argv
    }
}

impl Cmd {
    /// Writes the command line as [`fmt::Display`] does, with the arguments `hide` picks
    /// (by index into [`Cmd::args_list`]) written as `***`.
    pub(crate) fn write_hiding(
        &self,
        f: &mut impl fmt::Write,
        hide: impl Fn(usize) -> bool,
    ) -> fmt::Result {
        f.write_str(self.program())?;
        for (i, a) in self.args_list().iter().enumerate() {
            let a = if hide(i) { "***" } else { a.as_str() };
            if a.is_empty() || a.contains(char::is_whitespace) {
                write!(f, " '{a}'")?;
            } else {
                f.write_char(' ')?;
                f.write_str(a)?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_hiding(f, |_| false)
    }
}

/// What a finished command left behind.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CmdOutput {
    /// The exit status (`-1` when killed by a signal).
    pub status: i32,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
}

impl CmdOutput {
    /// Whether the command exited with status 0.
    pub fn success(&self) -> bool {
        self.status == 0
    }
}

/// A side effect the host refused or could not perform.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// A path that is not absolute and normalised; nothing was touched.
    #[error("refusing host path {path:?}: not an absolute path without `.`/`..` components")]
    BadPath {
        /// The offending path.
        path: String,
    },
    /// Writing a control file failed (the kernel answered with an error).
    #[error("writing {content:?} to {path} failed: {source}")]
    Write {
        /// The control file.
        path: HostPath,
        /// What was written.
        content: String,
        /// The error the host returned (`ENOENT`, `EBUSY`, ...).
        #[source]
        source: std::io::Error,
    },
    /// Removing a link or file failed.
    #[error("removing {path} failed: {source}")]
    Remove {
        /// The path that could not be removed.
        path: HostPath,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A command could not be started at all (not found, not executable).
    #[error("could not run `{cmd}`: {source}")]
    Spawn {
        /// The command line.
        cmd: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// The port through which a connector performs every side effect on a host.
///
/// Reads are not part of the port: a connector reads files under [`Host::root`] directly, so
/// the same code reads a real `/sys` or a simulator's materialized tree. Implementations must
/// keep the tree under the root current after each call returns.
pub trait Host {
    /// The directory that stands for the host's `/`.
    fn root(&self) -> &Path;

    /// Writes `content` to a sysfs control file, as `echo content > path` would
    /// (for example `"0 0 1"` to `/sys/class/scsi_host/host0/scan`).
    fn write_control(&self, path: &HostPath, content: &str) -> Result<(), HostError>;

    /// Removes a file or symlink under `/dev` (stale udev links). Removing a path that does
    /// not exist is an error of kind `NotFound`.
    fn remove(&self, path: &HostPath) -> Result<(), HostError>;

    /// Runs a command to completion and returns its output; a non-zero exit is not an error.
    fn run(&self, cmd: &Cmd) -> Result<CmdOutput, HostError>;

    /// Waits for `duration` on the host's clock.
    fn sleep(&self, duration: Duration);

    /// The host's monotonic clock, measured from an arbitrary start.
    fn now(&self) -> Duration;

    /// An in-memory source for reads of this host's tree, used by
    /// [`HostFs::of`](crate::fs::HostFs::of) instead of the files under [`Host::root`].
    /// `None` (the default): read the files. An implementation that returns a view must
    /// answer exactly what the files under the root would hold, and must bring those files
    /// up to date whenever [`Host::root`] is asked for.
    fn view(&self) -> Option<&dyn crate::fs::HostView> {
        None
    }
}

impl<H: Host + ?Sized> Host for &H {
    fn root(&self) -> &Path {
        (**self).root()
    }
    fn write_control(&self, path: &HostPath, content: &str) -> Result<(), HostError> {
        (**self).write_control(path, content)
    }
    fn remove(&self, path: &HostPath) -> Result<(), HostError> {
        (**self).remove(path)
    }
    fn run(&self, cmd: &Cmd) -> Result<CmdOutput, HostError> {
        (**self).run(cmd)
    }
    fn sleep(&self, duration: Duration) {
        (**self).sleep(duration);
    }
    fn now(&self) -> Duration {
        (**self).now()
    }
    fn view(&self) -> Option<&dyn crate::fs::HostView> {
        (**self).view()
    }
}

/// A real Linux host: real files under a root (normally `/`), real processes, real time.
///
/// Commands run as real processes only when the root is `/`: a connector pointed at another
/// root must not reconfigure the machine it runs on, so there every command fails to spawn.
#[derive(Debug)]
pub struct RealHost {
    root: PathBuf,
    start: Instant,
}

impl RealHost {
    /// A host whose `/` is `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            start: Instant::now(),
        }
    }

    /// The machine this process runs on.
    pub fn system() -> Self {
        Self::new("/")
    }

    fn is_system_root(&self) -> bool {
        self.root == Path::new("/")
    }
}

impl Host for RealHost {
    fn root(&self) -> &Path {
        &self.root
    }

    fn write_control(&self, path: &HostPath, content: &str) -> Result<(), HostError> {
        let target = path.under(&self.root);
        let result = std::fs::OpenOptions::new()
            .write(true)
            .open(&target)
            .and_then(|mut f| f.write_all(content.as_bytes()));
        tracing::debug!(%path, content, ok = result.is_ok(), "write_control");
        result.map_err(|source| HostError::Write {
            path: path.clone(),
            content: content.to_owned(),
            source,
        })
    }

    fn remove(&self, path: &HostPath) -> Result<(), HostError> {
        let target = path.under(&self.root);
        tracing::debug!(%path, "remove");
        std::fs::remove_file(&target).map_err(|source| HostError::Remove {
            path: path.clone(),
            source,
        })
    }

    fn run(&self, cmd: &Cmd) -> Result<CmdOutput, HostError> {
        if !self.is_system_root() {
            return Err(HostError::Spawn {
                cmd: cmd.to_string(),
                source: std::io::Error::new(
                    std::io::ErrorKind::Unsupported,
                    format!(
                        "commands run only on the real root `/`, not on {}",
                        self.root.display()
                    ),
                ),
            });
        }
        let spawn_err = |source| HostError::Spawn {
            cmd: cmd.to_string(),
            source,
        };
        let mut child = Command::new(cmd.program())
            .args(cmd.args_list())
            .stdin(if cmd.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_err)?;
        if let (Some(input), Some(mut pipe)) = (&cmd.stdin, child.stdin.take()) {
            pipe.write_all(input.as_bytes()).map_err(spawn_err)?;
        }
        let out = child.wait_with_output().map_err(spawn_err)?;
        let output = CmdOutput {
            status: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        tracing::debug!(cmd = %cmd, status = output.status, "run");
        Ok(output)
    }

    fn sleep(&self, duration: Duration) {
        std::thread::sleep(duration);
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_path_rejects_traversal_and_relative_paths() {
        for bad in [
            "",
            "sys",
            "/sys/../etc",
            "/sys/./block",
            "/sys//block",
            "/sys/",
            "/a\0b",
        ] {
            assert!(HostPath::new(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(HostPath::new("/sys/block").unwrap().as_str(), "/sys/block");
        assert_eq!(HostPath::new("/").unwrap().as_str(), "/");
    }

    #[test]
    fn host_path_join_rejects_hostile_components() {
        let base = HostPath::new("/sys/block").unwrap();
        for bad in ["", ".", "..", "a/b", "../../etc"] {
            assert!(base.join(bad).is_err(), "{bad:?} accepted");
        }
        let sda = base.join("sda").unwrap();
        assert_eq!(sda.as_str(), "/sys/block/sda");
        assert_eq!(sda.file_name(), "sda");
        assert_eq!(sda.parent().unwrap(), base);
        assert_eq!(
            HostPath::new("/").unwrap().join("dev").unwrap().as_str(),
            "/dev"
        );
    }

    #[test]
    fn real_host_refuses_commands_off_the_system_root() {
        let dir = tempfile::tempdir().unwrap();
        let host = RealHost::new(dir.path());
        let err = host.run(&Cmd::new("true")).unwrap_err();
        assert!(err.to_string().contains("only on the real root"), "{err}");
    }

    #[test]
    fn real_host_writes_control_files_under_its_root() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sys/class/scsi_host/host0")).unwrap();
        std::fs::write(dir.path().join("sys/class/scsi_host/host0/scan"), "").unwrap();
        let host = RealHost::new(dir.path());
        let scan = HostPath::new("/sys/class/scsi_host/host0/scan").unwrap();
        host.write_control(&scan, "0 0 1").unwrap();
        let written = std::fs::read_to_string(scan.under(dir.path())).unwrap();
        assert_eq!(written, "0 0 1");
        let missing = HostPath::new("/sys/class/scsi_host/host9/scan").unwrap();
        assert!(matches!(
            host.write_control(&missing, "- - -"),
            Err(HostError::Write { .. })
        ));
    }
}
