//! Reading the host, confined to its root.
//!
//! Every read a connector makes goes through [`HostFs`]: a host path (`/sys/block/sda/device/wwid`)
//! is resolved *inside* [`Host::root`], component by component, with
//! symlinks followed the way the kernel would follow them if the root were `/` (a chroot):
//! absolute link targets restart at the root, `..` never climbs above it, and link chains are
//! bounded. The operating system never gets to follow a link on its own, so a hostile link such
//! as `../../../../etc/passwd` or `/etc/shadow` in a simulated tree lands inside the root.

use std::fs;
use std::io::{ErrorKind, Read as _};
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::host::{Host, HostError, HostPath};

/// How many symlinks one resolution may follow before it is declared a loop (Linux: 40).
const MAX_LINKS: usize = 40;

/// The most bytes [`HostFs::read_attr`] reads from one attribute (sysfs pages are 4 KiB).
const MAX_ATTR_BYTES: u64 = 64 * 1024;

/// A read of the host tree that failed.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// Resolving the path followed more than 40 symlinks.
    #[error("too many levels of symbolic links resolving {path}")]
    Loop {
        /// The path being resolved.
        path: HostPath,
    },
    /// A file, link target or directory entry is not valid UTF-8.
    #[error("{path}: {what} is not valid UTF-8")]
    NotUtf8 {
        /// The path that holds the bytes.
        path: HostPath,
        /// What was being decoded (`"content"`, `"link target"`).
        what: &'static str,
    },
    /// A symlink target that cannot name a host path (NUL bytes, empty).
    #[error("{path}: unusable symlink target {target:?}")]
    BadLink {
        /// The link.
        path: HostPath,
        /// Its raw target.
        target: String,
    },
    /// An attribute larger than any sysfs attribute.
    #[error("{path}: attribute larger than {MAX_ATTR_BYTES} bytes")]
    TooLarge {
        /// The attribute.
        path: HostPath,
    },
    /// Any other I/O error (permission denied, `EINVAL` from a sysfs `show`, a directory read as a file).
    #[error("reading {path}: {source}")]
    Io {
        /// The host path.
        path: HostPath,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A host path could not be formed.
    #[error(transparent)]
    Path(#[from] HostError),
}

/// The kind of a node in the host tree (symlinks are followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A directory.
    Dir,
    /// A regular file (a sysfs attribute).
    File,
    /// A block device node, or any other non-directory special file.
    Special,
}

/// What a host path names in a [`HostView`], the last component not followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViewEntry {
    /// A directory.
    Dir,
    /// A regular file.
    File,
    /// A symlink with its raw target.
    Link(String),
    /// A device node or other special file.
    Special,
}

/// An in-memory source for the reads of [`HostFs`], instead of the files under the root.
///
/// A view is a dumb lookup: [`HostFs`] still does every symlink resolution and confinement
/// step itself, asking the view only what a single, already resolved path is (`lstat`),
/// holds (`read`) or lists (`readdir`). So a view answers the same questions the real
/// directory would, and the two backends share one implementation of the semantics.
///
/// A [`Host`] that keeps its tree in memory (the simulator) exposes one through
/// [`Host::view`]; the default (`None`) reads the files under [`Host::root`].
pub trait HostView {
    /// The directory this view stands for (the host's root on disk, which may lag behind
    /// the view until [`Host::root`] is asked for).
    fn root(&self) -> &Path;

    /// What `path` (absolute, normalised, e.g. `/sys/block/sda`) is, without following a
    /// final symlink; `None` if nothing is there. `/` is a directory.
    fn entry(&self, path: &str) -> Option<ViewEntry>;

    /// The bytes of the regular file at `path`. Errors as `read(2)` gives them: `ENOENT`
    /// when missing, `EISDIR` for a directory.
    fn read(&self, path: &str) -> std::io::Result<Vec<u8>>;

    /// The names in the directory at `path`, any order. Errors as `opendir(3)` gives them:
    /// `ENOENT` when missing, `ENOTDIR` for anything else.
    fn list(&self, path: &str) -> std::io::Result<Vec<String>>;
}

/// Confined, read-only access to a host's tree under its root.
#[derive(Clone, Copy)]
pub struct HostFs<'a> {
    root: &'a Path,
    view: Option<&'a dyn HostView>,
}

impl std::fmt::Debug for HostFs<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostFs")
            .field("root", &self.root)
            .field("in_memory", &self.view.is_some())
            .finish()
    }
}

impl<'a> HostFs<'a> {
    /// Reads the tree under `root` (the directory that stands for the host's `/`).
    pub fn new(root: &'a Path) -> Self {
        Self { root, view: None }
    }

    /// Reads the tree from `view` instead of the files under `root`; `root` only names the
    /// directory the view stands for (see [`HostFs::root`]).
    pub fn with_view(root: &'a Path, view: &'a dyn HostView) -> Self {
        Self {
            root,
            view: Some(view),
        }
    }

    /// Reads the tree of `host`: from its [`Host::view`] if it has one, else the files under
    /// [`Host::root`].
    pub fn of(host: &'a dyn Host) -> Self {
        match host.view() {
            Some(view) => Self::with_view(view.root(), view),
            None => Self::new(host.root()),
        }
    }

    /// The root this reader is confined to.
    pub fn root(&self) -> &'a Path {
        self.root
    }

    /// Resolves every symlink in `path` inside the root, like `realpath -m` in a chroot.
    ///
    /// Absolute link targets restart at the root; `..` stops at the root. Components that do
    /// not exist are kept as written (as Python's `os.path.realpath` does), so a dangling
    /// link resolves to the path it names; use [`HostFs::exists`] to test the result.
    pub fn realpath(&self, path: &HostPath) -> Result<HostPath, FsError> {
        self.resolve(path, true)
    }

    /// Resolves the parent directories of `path` but not its last component.
    fn resolve_parent(&self, path: &HostPath) -> Result<HostPath, FsError> {
        self.resolve(path, false)
    }

    fn resolve(&self, path: &HostPath, follow_last: bool) -> Result<HostPath, FsError> {
        // The resolved components as a host path (`/a/b`, empty for the root): asking the
        // view about each component allocates nothing (components never contain `/`).
        let mut joined = String::with_capacity(path.as_str().len());
        // Link targets met so far; the components still to walk point into them or into
        // `path` (in reverse order: pop from the end), so walking allocates no component.
        let mut targets: Vec<String> = Vec::new();
        let mut pending: Vec<(Source, Range<usize>)> = component_ranges(path.as_str())
            .rev()
            .map(|r| (Source::Path, r))
            .collect();
        let mut links = 0usize;
        while let Some((source, range)) = pending.pop() {
            let text = match source {
                Source::Path => path.as_str(),
                Source::Target(i) => targets[i].as_str(),
            };
            match &text[range] {
                "." => continue,
                ".." => {
                    pop_component(&mut joined);
                    continue;
                }
                comp => {
                    joined.push('/');
                    joined.push_str(comp);
                }
            }
            if pending.is_empty() && !follow_last {
                break;
            }
            let Some(target) = self.link_target(&joined, path, &mut links)? else {
                // Missing, unreadable or not a link: keep going literally.
                continue;
            };
            if target.is_empty() || target.contains('\0') {
                return Err(FsError::BadLink {
                    path: to_host_path(&joined)?,
                    target,
                });
            }
            // The link itself is replaced by its target.
            pop_component(&mut joined);
            if target.starts_with('/') {
                joined.clear();
            }
            let i = targets.len();
            pending.extend(
                component_ranges(&target)
                    .rev()
                    .map(|r| (Source::Target(i), r)),
            );
            targets.push(target);
        }
        to_host_path(&joined)
    }

    /// The raw target if the already resolved `joined` (a host path) is a symlink (counting
    /// it against the loop bound), `None` if it is missing or anything else.
    fn link_target(
        &self,
        joined: &str,
        path: &HostPath,
        links: &mut usize,
    ) -> Result<Option<String>, FsError> {
        let target = match self.view {
            Some(view) => match view.entry(joined) {
                Some(ViewEntry::Link(target)) => {
                    count_link(links, path)?;
                    target
                }
                _ => return Ok(None),
            },
            None => {
                let physical = self.physical(joined);
                let Ok(meta) = fs::symlink_metadata(&physical) else {
                    return Ok(None);
                };
                if !meta.file_type().is_symlink() {
                    return Ok(None);
                }
                count_link(links, path)?;
                let link_path = to_host_path(joined)?;
                let target = fs::read_link(&physical).map_err(|source| FsError::Io {
                    path: link_path.clone(),
                    source,
                })?;
                target
                    .into_os_string()
                    .into_string()
                    .map_err(|_| FsError::NotUtf8 {
                        path: link_path,
                        what: "link target",
                    })?
            }
        };
        Ok(Some(target))
    }

    /// The real path under the root of `joined`, a host path whose components were
    /// resolved inside the root.
    fn physical(&self, joined: &str) -> PathBuf {
        let mut p = self.root.to_path_buf();
        p.extend(joined.split('/').filter(|c| !c.is_empty()));
        p
    }

    /// The real path on this machine of `path` after in-root resolution.
    fn physical_of(&self, path: &HostPath) -> Result<PathBuf, FsError> {
        Ok(self.realpath(path)?.under(self.root))
    }

    /// Reads a text attribute, trimmed of surrounding whitespace.
    ///
    /// An attribute whose device vanished while it was being read (`ENODEV`, `ENXIO`) counts
    /// as absent, like one that was never there.
    ///
    /// `Ok(None)` if it does not exist (or a dangling link leads nowhere). Non-UTF-8 bytes,
    /// read errors (`EINVAL` from the kernel, a directory) and oversized files are typed errors.
    pub fn read_attr(&self, path: &HostPath) -> Result<Option<String>, FsError> {
        let io_err = |source| FsError::Io {
            path: path.clone(),
            source,
        };
        let resolved = self.realpath(path)?;
        let Some(bytes) = self
            .read_bytes(&resolved, MAX_ATTR_BYTES + 1)
            .map_err(io_err)?
        else {
            return Ok(None);
        };
        if bytes.len() as u64 > MAX_ATTR_BYTES {
            return Err(FsError::TooLarge { path: path.clone() });
        }
        let text = String::from_utf8(bytes).map_err(|_| FsError::NotUtf8 {
            path: path.clone(),
            what: "content",
        })?;
        Ok(Some(text.trim().to_owned()))
    }

    /// Reads at most `max` bytes of the file at the already resolved `resolved`.
    /// `Ok(None)` if it does not exist or vanished while being read.
    fn read_bytes(&self, resolved: &HostPath, max: u64) -> Result<Option<Vec<u8>>, std::io::Error> {
        if let Some(view) = self.view {
            return match view.read(resolved.as_str()) {
                Ok(mut bytes) => {
                    bytes.truncate(usize::try_from(max).unwrap_or(usize::MAX));
                    Ok(Some(bytes))
                }
                Err(e) if vanished(&e) => Ok(None),
                Err(e) => Err(e),
            };
        }
        let file = match fs::File::open(resolved.under(self.root)) {
            Ok(f) => f,
            Err(e) if vanished(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut bytes = Vec::new();
        match file.take(max).read_to_end(&mut bytes) {
            Ok(_) => Ok(Some(bytes)),
            // The device went away between open and read (sysfs answers ENODEV).
            Err(e) if vanished(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads a binary attribute (a VPD page) of at most `max` bytes; `None` if it does not
    /// exist or cannot be read.
    pub fn read_raw(&self, path: &HostPath, max: u64) -> Option<Vec<u8>> {
        let resolved = self.realpath(path).ok()?;
        self.read_bytes(&resolved, max).ok().flatten()
    }

    /// The names in a directory, sorted. A missing directory has no entries.
    ///
    /// Entries whose names are not UTF-8 or not usable as a path component are skipped with a
    /// warning: they cannot name a device the connectors handle.
    pub fn read_dir(&self, path: &HostPath) -> Result<Vec<String>, FsError> {
        if let Some(view) = self.view {
            let resolved = self.realpath(path)?;
            let listed = match view.list(resolved.as_str()) {
                Ok(names) => names,
                Err(e) if vanished(&e) => return Ok(Vec::new()),
                Err(source) => {
                    return Err(FsError::Io {
                        path: path.clone(),
                        source,
                    });
                }
            };
            let mut names: Vec<String> = listed
                .into_iter()
                .filter(|name| {
                    let ok = path.join(name).is_ok();
                    if !ok {
                        tracing::warn!(%path, name, "skipping unusable directory entry");
                    }
                    ok
                })
                .collect();
            names.sort();
            return Ok(names);
        }
        let physical = self.physical_of(path)?;
        let entries = match fs::read_dir(&physical) {
            Ok(e) => e,
            Err(e) if vanished(&e) => {
                return Ok(Vec::new());
            }
            Err(source) => {
                return Err(FsError::Io {
                    path: path.clone(),
                    source,
                });
            }
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| FsError::Io {
                path: path.clone(),
                source,
            })?;
            match entry.file_name().into_string() {
                Ok(name) if path.join(&name).is_ok() => names.push(name),
                Ok(name) => tracing::warn!(%path, name, "skipping unusable directory entry"),
                Err(raw) => tracing::warn!(%path, ?raw, "skipping non-UTF-8 directory entry"),
            }
        }
        names.sort();
        Ok(names)
    }

    /// The raw target of a symlink (parents resolved in-root, the link itself not followed).
    ///
    /// `Ok(None)` if the path does not exist or is not a symlink.
    pub fn read_link(&self, path: &HostPath) -> Result<Option<String>, FsError> {
        let parent_resolved = self.resolve_parent(path)?;
        if let Some(view) = self.view {
            return Ok(match view.entry(parent_resolved.as_str()) {
                Some(ViewEntry::Link(target)) => Some(target),
                _ => None,
            });
        }
        let physical = parent_resolved.under(self.root);
        match fs::symlink_metadata(&physical) {
            Ok(m) if m.file_type().is_symlink() => {}
            Ok(_) => return Ok(None),
            Err(e) if vanished(&e) => {
                return Ok(None);
            }
            Err(source) => {
                return Err(FsError::Io {
                    path: path.clone(),
                    source,
                });
            }
        }
        let target = fs::read_link(&physical).map_err(|source| FsError::Io {
            path: path.clone(),
            source,
        })?;
        target
            .into_os_string()
            .into_string()
            .map(Some)
            .map_err(|_| FsError::NotUtf8 {
                path: path.clone(),
                what: "link target",
            })
    }

    /// Whether `path` is a symlink (not followed). False if it does not exist.
    pub fn is_link(&self, path: &HostPath) -> bool {
        matches!(self.read_link(path), Ok(Some(_)))
    }

    /// The kind of what `path` leads to (symlinks followed in-root), `None` if nothing.
    pub fn kind(&self, path: &HostPath) -> Option<FileKind> {
        if let Some(view) = self.view {
            return Some(match view.entry(self.realpath(path).ok()?.as_str())? {
                ViewEntry::Dir => FileKind::Dir,
                ViewEntry::File => FileKind::File,
                // A symlink left after resolution is not followed, like `lstat` on disk.
                ViewEntry::Link(_) | ViewEntry::Special => FileKind::Special,
            });
        }
        let physical = self.physical_of(path).ok()?;
        let meta = fs::symlink_metadata(physical).ok()?;
        let ft = meta.file_type();
        Some(if ft.is_dir() {
            FileKind::Dir
        } else if ft.is_file() {
            FileKind::File
        } else {
            FileKind::Special
        })
    }

    /// Whether `path` leads to something (symlinks followed in-root; a dangling link does not exist).
    pub fn exists(&self, path: &HostPath) -> bool {
        self.kind(path).is_some()
    }

    /// Whether `path` leads to a directory.
    pub fn is_dir(&self, path: &HostPath) -> bool {
        self.kind(path) == Some(FileKind::Dir)
    }

    /// The entries of `dir` whose names start with `prefix`, as host paths, sorted.
    pub fn children_with_prefix(
        &self,
        dir: &HostPath,
        prefix: &str,
    ) -> Result<Vec<HostPath>, FsError> {
        let mut out = Vec::new();
        for name in self.read_dir(dir)? {
            if name.starts_with(prefix) {
                out.push(dir.join(&name)?);
            }
        }
        Ok(out)
    }
}

/// Counts one followed symlink; more than [`MAX_LINKS`] is a loop.
fn count_link(links: &mut usize, path: &HostPath) -> Result<(), FsError> {
    *links += 1;
    if *links > MAX_LINKS {
        return Err(FsError::Loop { path: path.clone() });
    }
    Ok(())
}

/// Drops the last component of a host path built by [`HostFs::resolve`] (`/a/b` -> `/a`,
/// `/a` -> ``), as popping it from the component list does.
fn pop_component(joined: &mut String) {
    let end = joined.rfind('/').unwrap_or(0);
    joined.truncate(end);
}

/// The host path `joined` as [`HostFs::resolve`] builds it (empty for the root).
fn to_host_path(joined: &str) -> Result<HostPath, FsError> {
    Ok(HostPath::new(if joined.is_empty() { "/" } else { joined })?)
}

/// Where a component [`HostFs::resolve`] has still to walk is written.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// The path asked about.
    Path,
    /// The `n`th link target met.
    Target(usize),
}

/// The byte ranges of the components of `path` (empty components skipped).
fn component_ranges(path: &str) -> impl DoubleEndedIterator<Item = Range<usize>> + '_ {
    let base = path.as_ptr().addr();
    path.split('/').filter(|c| !c.is_empty()).map(move |c| {
        let start = c.as_ptr().addr() - base;
        start..start + c.len()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn p(s: &str) -> HostPath {
        HostPath::new(s).unwrap()
    }

    struct Tree {
        dir: tempfile::TempDir,
    }

    impl Tree {
        fn new() -> Self {
            Self {
                dir: tempfile::tempdir().unwrap(),
            }
        }
        fn root(&self) -> &Path {
            self.dir.path()
        }
        fn file(&self, path: &str, content: &[u8]) {
            let real = self.root().join(path.trim_start_matches('/'));
            fs::create_dir_all(real.parent().unwrap()).unwrap();
            fs::write(real, content).unwrap();
        }
        fn link(&self, path: &str, target: &str) {
            let real = self.root().join(path.trim_start_matches('/'));
            fs::create_dir_all(real.parent().unwrap()).unwrap();
            symlink(target, real).unwrap();
        }
        fn dir(&self, path: &str) {
            fs::create_dir_all(self.root().join(path.trim_start_matches('/'))).unwrap();
        }
    }

    #[test]
    fn reads_trimmed_attribute_through_relative_class_links() {
        let t = Tree::new();
        t.file(
            "/sys/devices/platform/host0/session1/target0:0:0/0:0:0:2/wwid",
            b"naa.60000000000000000e00000000020002\n",
        );
        t.dir("/sys/devices/platform/host0/session1/target0:0:0/0:0:0:2/block/sda");
        t.link(
            "/sys/devices/platform/host0/session1/target0:0:0/0:0:0:2/block/sda/device",
            "../../../0:0:0:2",
        );
        t.link(
            "/sys/block/sda",
            "../devices/platform/host0/session1/target0:0:0/0:0:0:2/block/sda",
        );
        let fs = HostFs::new(t.root());
        assert_eq!(
            fs.read_attr(&p("/sys/block/sda/device/wwid"))
                .unwrap()
                .as_deref(),
            Some("naa.60000000000000000e00000000020002")
        );
        assert_eq!(
            fs.realpath(&p("/sys/block/sda/device")).unwrap().as_str(),
            "/sys/devices/platform/host0/session1/target0:0:0/0:0:0:2"
        );
        assert_eq!(
            fs.read_attr(&p("/sys/block/sdz/device/wwid")).unwrap(),
            None
        );
    }

    #[test]
    fn hostile_relative_link_stays_inside_root() {
        let t = Tree::new();
        t.file("/etc/passwd", b"inside-root\n");
        t.link(
            "/dev/disk/by-path/evil",
            "../../../../../../../../etc/passwd",
        );
        let fs = HostFs::new(t.root());
        let real = fs.realpath(&p("/dev/disk/by-path/evil")).unwrap();
        assert_eq!(real.as_str(), "/etc/passwd");
        assert_eq!(
            fs.read_attr(&p("/dev/disk/by-path/evil"))
                .unwrap()
                .as_deref(),
            Some("inside-root")
        );
    }

    #[test]
    fn absolute_link_restarts_at_root_not_at_real_slash() {
        let t = Tree::new();
        t.link("/dev/disk/by-id/abs", "/etc/hostname");
        let fs = HostFs::new(t.root());
        assert_eq!(
            fs.realpath(&p("/dev/disk/by-id/abs")).unwrap().as_str(),
            "/etc/hostname"
        );
        // The real /etc/hostname of the build machine must not be read.
        assert_eq!(fs.read_attr(&p("/dev/disk/by-id/abs")).unwrap(), None);
        assert!(!fs.exists(&p("/dev/disk/by-id/abs")));
    }

    #[test]
    fn link_loops_are_bounded() {
        let t = Tree::new();
        t.link("/a", "b");
        t.link("/b", "a");
        t.link("/self", "self");
        let fs = HostFs::new(t.root());
        assert!(matches!(fs.realpath(&p("/a")), Err(FsError::Loop { .. })));
        assert!(matches!(
            fs.read_attr(&p("/self/x")),
            Err(FsError::Loop { .. })
        ));
        assert!(!fs.exists(&p("/a")));
    }

    #[test]
    fn garbage_content_is_a_typed_error_not_a_panic() {
        let t = Tree::new();
        t.file(
            "/sys/block/sda/device/wwid",
            &[0xff, 0xfe, b'n', 0x00, 0x80],
        );
        let fs = HostFs::new(t.root());
        let err = fs.read_attr(&p("/sys/block/sda/device/wwid")).unwrap_err();
        assert!(matches!(err, FsError::NotUtf8 { .. }), "{err}");
        assert!(err.to_string().contains("/sys/block/sda/device/wwid"));
    }

    #[test]
    fn oversized_and_directory_reads_are_errors() {
        let t = Tree::new();
        t.file("/big", &vec![b'a'; 70_000]);
        t.dir("/sys/block/sda");
        let fs = HostFs::new(t.root());
        assert!(matches!(
            fs.read_attr(&p("/big")),
            Err(FsError::TooLarge { .. })
        ));
        assert!(matches!(
            fs.read_attr(&p("/sys/block/sda")),
            Err(FsError::Io { .. })
        ));
    }

    #[test]
    fn dangling_link_resolves_but_does_not_exist() {
        let t = Tree::new();
        t.dir("/dev");
        t.link("/dev/disk/by-path/ip-x-lun-1", "../../sdc");
        let fs = HostFs::new(t.root());
        let link = p("/dev/disk/by-path/ip-x-lun-1");
        assert_eq!(fs.realpath(&link).unwrap().as_str(), "/dev/sdc");
        assert!(!fs.exists(&link));
        assert!(fs.is_link(&link));
        assert_eq!(fs.read_link(&link).unwrap().as_deref(), Some("../../sdc"));
        assert_eq!(
            fs.read_dir(&p("/dev/disk/by-path")).unwrap(),
            vec!["ip-x-lun-1"]
        );
    }

    #[test]
    fn read_dir_sorts_and_tolerates_missing_dirs() {
        let t = Tree::new();
        t.file("/sys/block/sdb/size", b"1");
        t.file("/sys/block/sda/size", b"1");
        t.link("/sys/class/block", "../block");
        let fs = HostFs::new(t.root());
        assert_eq!(fs.read_dir(&p("/sys/block")).unwrap(), vec!["sda", "sdb"]);
        assert_eq!(
            fs.read_dir(&p("/sys/class/block")).unwrap(),
            vec!["sda", "sdb"]
        );
        assert!(fs.read_dir(&p("/sys/nothing")).unwrap().is_empty());
        assert_eq!(
            fs.children_with_prefix(&p("/sys/block"), "sdb").unwrap(),
            vec![p("/sys/block/sdb")]
        );
    }

    #[test]
    fn pop_component_follows_the_component_list() {
        // `resolve` keeps the joined path in step with its component list.
        for (before, after) in [("/a/b", "/a"), ("/a", ""), ("", ""), ("/a/b.c/d", "/a/b.c")] {
            let mut joined = before.to_owned();
            pop_component(&mut joined);
            assert_eq!(joined, after, "{before}");
        }
    }

    #[test]
    fn dotdot_in_link_targets_is_clamped_at_root() {
        let t = Tree::new();
        t.file("/x", b"top");
        t.link("/a/b/up", "../../../../x");
        let fs = HostFs::new(t.root());
        assert_eq!(fs.realpath(&p("/a/b/up")).unwrap().as_str(), "/x");
        assert_eq!(fs.kind(&p("/a/b/up")), Some(FileKind::File));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_link_targets_never_escape(target in "[./a-z]{0,30}") {
            let t = Tree::new();
            t.dir("/d");
            if !target.is_empty() {
                t.link("/d/l", &target);
            }
            let fs = HostFs::new(t.root());
            if let Ok(real) = fs.realpath(&p("/d/l")) {
                let physical = real.under(t.root());
                proptest::prop_assert!(physical.starts_with(t.root()));
            }
            let _ = fs.read_attr(&p("/d/l"));
        }
    }
}

/// Whether an I/O error means "this path is not there (any more)": missing, a non-directory on
/// the way, or a sysfs device removed between open and read (`ENODEV`, `ENXIO`).
fn vanished(e: &std::io::Error) -> bool {
    const ENXIO: i32 = 6;
    const ENODEV: i32 = 19;
    matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory)
        || matches!(e.raw_os_error(), Some(ENXIO | ENODEV))
}

#[cfg(test)]
mod vanished_tests {
    use super::vanished;
    use std::io::{Error, ErrorKind};

    #[test]
    fn enodev_and_enxio_count_as_vanished_but_eacces_does_not() {
        assert!(vanished(&Error::from_raw_os_error(19)));
        assert!(vanished(&Error::from_raw_os_error(6)));
        assert!(vanished(&Error::from(ErrorKind::NotFound)));
        assert!(!vanished(&Error::from_raw_os_error(13)));
        assert!(
            !vanished(&Error::from_raw_os_error(22)),
            "EINVAL is a real read error"
        );
    }
}
