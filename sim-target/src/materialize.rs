//! Writes a host's tree into a real directory, incrementally.
//!
//! `dir` is the host root: it receives `sys/`, `dev/` and `etc/`. Device nodes are written
//! as empty regular files (no `mknod`, so no root needed); their `major:minor` stays readable
//! in sysfs (`/sys/block/sdX/dev`, `/sys/block/dm-N/dev`, `.../sgN/dev`). Attributes whose
//! read fails on a real kernel ([`Node::Unreadable`]) are empty files with their mode: a
//! reader sees no value instead of the errno. Symlinks are real
//! symlinks with the kernel's relative targets. Modes are applied with `chmod`; files are
//! replaced by unlink + create, so read-only and write-only files can be rewritten without
//! root.
//!
//! The last tree written to each `(host, dir)` is remembered and only the difference is
//! applied next time. Every path is checked to stay inside `dir`: no `..` components, and no
//! write through a symlink.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use crate::ids::HostId;
use crate::tree::{Node, Tree};
use crate::world::World;

/// Joins a tree path onto `dir`, refusing anything that could leave it.
fn join(dir: &Path, host_path: &str) -> io::Result<PathBuf> {
    let rel = host_path.strip_prefix('/').unwrap_or(host_path);
    let p = Path::new(rel);
    if rel.is_empty() || !p.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("unsafe tree path {host_path:?}"),
        ));
    }
    Ok(dir.join(p))
}

/// Fails if any existing ancestor of `path` below `dir` is not a real directory. Directories
/// already verified (or created) during this pass are in `safe`.
fn check_parents(dir: &Path, path: &Path, safe: &mut HashSet<PathBuf>) -> io::Result<()> {
    let mut cur = path.parent();
    while let Some(p) = cur {
        if p == dir || safe.contains(p) {
            return Ok(());
        }
        match fs::symlink_metadata(p) {
            Ok(m) if m.file_type().is_dir() => {
                safe.insert(p.to_path_buf());
            }
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{} is not a directory: refusing to write through it",
                        p.display()
                    ),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        cur = p.parent();
    }
    Ok(())
}

fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates `node` at `path`. `fresh`: nothing is expected there (a new path of an incremental
/// pass); anything found anyway is replaced.
fn write_node(path: &Path, node: &Node, fresh: bool) -> io::Result<()> {
    if !fresh {
        if let Node::Dir { mode } = node
            && fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_dir())
        {
            fs::set_permissions(path, fs::Permissions::from_mode(*mode | 0o700))?;
            return Ok(());
        }
        remove_any(path)?;
    }
    let created = match node {
        Node::Dir { mode } => fs::DirBuilder::new().mode(*mode | 0o700).create(path),
        Node::File { mode, content } => create_file(path, *mode, content),
        Node::Block { mode, .. } | Node::Char { mode, .. } | Node::Unreadable { mode, .. } => {
            create_file(path, *mode, b"")
        }
        Node::Link { target } => std::os::unix::fs::symlink(target, path),
    };
    match created {
        Ok(()) => {}
        Err(e) if fresh && e.kind() == io::ErrorKind::AlreadyExists => {
            return write_node(path, node, false);
        }
        Err(e) => return Err(e),
    }
    // Creation modes pass through the umask; only modes with group/other write bits (0660)
    // can have lost bits to a usual umask (022), so only those need a chmod.
    let mode = match node {
        Node::Dir { mode } => *mode | 0o700,
        Node::File { mode, .. }
        | Node::Block { mode, .. }
        | Node::Char { mode, .. }
        | Node::Unreadable { mode, .. } => *mode,
        Node::Link { .. } => return Ok(()),
    };
    if mode & 0o022 != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

fn create_file(path: &Path, mode: u32, content: &[u8]) -> io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode | 0o200)
        .open(path)?;
    if !content.is_empty() {
        f.write_all(content)?;
    }
    if mode & 0o200 == 0 {
        // Drop the write bit we needed to fill it.
        f.set_permissions(fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

impl World {
    /// Writes the host's current tree under `dir` (created if missing), applying only what
    /// changed since the last call for the same `(host, dir)`.
    pub fn materialize(&mut self, host: HostId, dir: &Path) -> io::Result<()> {
        let new = self.tree(host);
        self.materialize_tree(host, dir, new)
    }

    /// Writes `new`, a tree of `host` taken earlier with [`World::tree`], under `dir`
    /// (created if missing), applying only what changed since the last call for the same
    /// `(host, dir)`. For callers that keep the host's tree in memory and write it out
    /// only when someone reads the directory.
    pub fn materialize_tree(&mut self, host: HostId, dir: &Path, new: Tree) -> io::Result<()> {
        fs::create_dir_all(dir)?;
        let key = (host, dir.to_path_buf());
        let old = self.materialized.remove(&key).unwrap_or_default();
        let first = old.is_empty();
        let diff = old.diff(&new);
        let mut safe: HashSet<PathBuf> = HashSet::new();
        // Removals: a vanished directory takes its children with it.
        let removed: HashSet<&str> = diff.removed.iter().map(String::as_str).collect();
        for p in &diff.removed {
            let covered = p
                .match_indices('/')
                .skip(1)
                .any(|(i, _)| p.get(..i).is_some_and(|anc| removed.contains(anc)));
            if covered {
                continue;
            }
            let path = join(dir, p)?;
            check_parents(dir, &path, &mut safe)?;
            remove_any(&path)?;
        }
        for p in &diff.changed {
            let Some(node) = new.get(p) else { continue };
            let path = join(dir, p)?;
            check_parents(dir, &path, &mut safe)?;
            let fresh = !first && old.get(p).is_none();
            write_node(&path, node, fresh)?;
            if let Node::Dir { .. } = node {
                safe.insert(path);
            }
        }
        self.materialized.insert(key, new);
        Ok(())
    }

    /// Forgets what was materialized in `dir` (the next call rewrites everything).
    pub fn forget_materialized(&mut self, host: HostId, dir: &Path) {
        self.materialized.remove(&(host, dir.to_path_buf()));
    }
}
