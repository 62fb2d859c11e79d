//! A small fake [`Host`] for unit tests: a temp-dir root populated from real-kernel captures,
//! a recorded event log, a virtual clock, and scripted command/write handlers that may
//! change the tree (standing in for the kernel and udev).

use std::cell::RefCell;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::host::{Cmd, CmdOutput, Host, HostError, HostPath};

/// What the connector did, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    Write(String, String),
    Remove(String),
    Run(String),
    Sleep(Duration),
}

type CmdHandler = Box<dyn FnMut(&str, &Path) -> CmdOutput>;
type WriteHandler = Box<dyn FnMut(&str, &str, &Path) -> Result<(), std::io::Error>>;

pub(crate) struct FakeHost {
    dir: tempfile::TempDir,
    events: RefCell<Vec<Event>>,
    clock: RefCell<Duration>,
    on_cmd: RefCell<CmdHandler>,
    on_write: RefCell<WriteHandler>,
}

impl std::fmt::Debug for FakeHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeHost")
            .field("root", &self.dir.path())
            .finish()
    }
}

pub(crate) fn out(status: i32, stdout: &str, stderr: &str) -> CmdOutput {
    CmdOutput {
        status,
        stdout: stdout.to_owned(),
        stderr: stderr.to_owned(),
    }
}

impl FakeHost {
    pub(crate) fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            events: RefCell::new(Vec::new()),
            clock: RefCell::new(Duration::ZERO),
            on_cmd: RefCell::new(Box::new(|_, _| out(0, "", ""))),
            on_write: RefCell::new(Box::new(|_, _, _| Ok(()))),
        }
    }

    /// A host whose tree is the walk lines of a real-kernel capture.
    pub(crate) fn from_capture(walk: &str) -> Self {
        let h = Self::new();
        materialize(h.dir.path(), walk, |_| true);
        h
    }

    pub(crate) fn on_cmd(&self, f: impl FnMut(&str, &Path) -> CmdOutput + 'static) {
        *self.on_cmd.borrow_mut() = Box::new(f);
    }

    pub(crate) fn on_write(
        &self,
        f: impl FnMut(&str, &str, &Path) -> Result<(), std::io::Error> + 'static,
    ) {
        *self.on_write.borrow_mut() = Box::new(f);
    }

    pub(crate) fn events(&self) -> Vec<Event> {
        self.events.borrow().clone()
    }

    pub(crate) fn commands(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Run(c) => Some(c),
                _ => None,
            })
            .collect()
    }

    pub(crate) fn writes(&self) -> Vec<(String, String)> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Write(p, c) => Some((p, c)),
                _ => None,
            })
            .collect()
    }

    pub(crate) fn removes(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Remove(p) => Some(p),
                _ => None,
            })
            .collect()
    }

    pub(crate) fn path(&self, host_path: &str) -> PathBuf {
        self.dir.path().join(host_path.trim_start_matches('/'))
    }

    pub(crate) fn exists(&self, host_path: &str) -> bool {
        fs::symlink_metadata(self.path(host_path)).is_ok()
    }
}

/// Removes a file, link or directory tree under `root` (no error if absent).
pub(crate) fn rm(root: &Path, host_path: &str) {
    let p = root.join(host_path.trim_start_matches('/'));
    match fs::symlink_metadata(&p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(&p).unwrap(),
        Ok(_) => fs::remove_file(&p).unwrap(),
        Err(_) => {}
    }
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('\\') => out.push('\\'),
            Some('x') => {
                let hex: String = chars.by_ref().take(2).collect();
                out.push(char::from(u8::from_str_radix(&hex, 16).unwrap_or(b'?')));
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// Creates the walk lines (`PATH TYPE MODE DETAIL`) accepted by `keep` under `root`; device
/// nodes become empty files, and every `/sys/block/<dev>` also gets a `/dev/<dev>` node.
pub(crate) fn materialize(root: &Path, walk: &str, keep: impl Fn(&str) -> bool) {
    for line in walk.lines() {
        if line.starts_with('#') || !keep(line) {
            continue;
        }
        let mut cols = line.splitn(4, '\t');
        let (Some(path), Some(kind), Some(_mode)) = (cols.next(), cols.next(), cols.next()) else {
            continue;
        };
        let detail = cols.next().unwrap_or("");
        let real = root.join(path.trim_start_matches('/'));
        if let Some(parent) = real.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        match kind {
            "d" => fs::create_dir_all(&real).unwrap(),
            "l" => {
                let _ = symlink(detail, &real);
            }
            "f" => {
                let content = match detail {
                    "<write-only>" | "<empty>" => String::new(),
                    d if d.starts_with("<err-read") => String::new(),
                    d => format!("{}\n", unescape(d)),
                };
                fs::write(&real, content).unwrap();
            }
            "b" | "c" => fs::write(&real, "").unwrap(),
            _ => {}
        }
        if kind == "l"
            && let Some(dev) = path.strip_prefix("/sys/block/")
            && !dev.starts_with("vd")
        {
            let node = root.join("dev").join(dev);
            fs::create_dir_all(node.parent().unwrap()).unwrap();
            fs::write(node, "").unwrap();
        }
    }
}

impl Host for FakeHost {
    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn write_control(&self, path: &HostPath, content: &str) -> Result<(), HostError> {
        self.events
            .borrow_mut()
            .push(Event::Write(path.to_string(), content.to_owned()));
        (self.on_write.borrow_mut())(path.as_str(), content, self.dir.path()).map_err(|source| {
            HostError::Write {
                path: path.clone(),
                content: content.to_owned(),
                source,
            }
        })
    }

    fn remove(&self, path: &HostPath) -> Result<(), HostError> {
        self.events
            .borrow_mut()
            .push(Event::Remove(path.to_string()));
        fs::remove_file(path.under(self.dir.path())).map_err(|source| HostError::Remove {
            path: path.clone(),
            source,
        })
    }

    fn run(&self, cmd: &Cmd) -> Result<CmdOutput, HostError> {
        let line = cmd.to_string();
        self.events.borrow_mut().push(Event::Run(line.clone()));
        Ok((self.on_cmd.borrow_mut())(&line, self.dir.path()))
    }

    fn sleep(&self, duration: Duration) {
        self.events.borrow_mut().push(Event::Sleep(duration));
        *self.clock.borrow_mut() += duration;
    }

    fn now(&self) -> Duration {
        *self.clock.borrow()
    }
}
