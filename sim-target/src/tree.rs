//! The virtual file tree: every view of a simulated host (sysfs, `/dev`, `/etc`) is derived
//! from the model into one [`Tree`], which [`crate::World::materialize`] writes to a real directory.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

/// One entry of the tree. Paths are host paths (`/sys/block/sda`), without a root prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A directory with its octal mode (`0o755`).
    Dir { mode: u32 },
    /// A regular file (sysfs attribute) with its mode and content. Write-only control files
    /// (`scan`, `delete`) have mode `0o200` and empty content.
    File { mode: u32, content: Vec<u8> },
    /// A symlink with its raw target, exactly as `readlink` prints it (usually relative).
    Link { target: String },
    /// A block device node `major:minor`, with its mode.
    Block { major: u32, minor: u32, mode: u32 },
    /// A character device node `major:minor`, with its mode.
    Char { major: u32, minor: u32, mode: u32 },
    /// A regular file whose `read(2)` fails with `errno` (sysfs `access_state` without an
    /// ALUA device handler: EINVAL). A real directory cannot reproduce a failing read:
    /// [`crate::World::materialize`] writes it as an empty file with this mode.
    Unreadable { mode: u32, errno: crate::ids::Errno },
}

/// A whole host view: host path to node, sorted, parents before children.
///
/// Paths and nodes are shared (`Arc`), so copying a tree, or joining trees rendered apart
/// (`Tree::union`), copies no path or content.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    nodes: BTreeMap<Arc<str>, Arc<Node>>,
}

/// The entries at and after `from`, in order.
fn range_from<'a>(
    nodes: &'a BTreeMap<Arc<str>, Arc<Node>>,
    from: &str,
) -> std::collections::btree_map::Range<'a, Arc<str>, Arc<Node>> {
    nodes.range::<str, _>((Bound::Included(from), Bound::Unbounded))
}

impl Tree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts `node` at `path`, creating missing parent directories with mode `0o755`.
    pub fn insert(&mut self, path: &str, node: Node) {
        self.insert_shared(path, Arc::new(node));
    }

    /// [`Tree::insert`] of a node that may be shared with other trees (a constant attribute
    /// rendered once, see `kernel::sysfs::put_attrs`).
    pub(crate) fn insert_shared(&mut self, path: &str, node: Arc<Node>) {
        // Parents, deepest first: stop at the first one that exists (its own parents do),
        // and allocate only for the missing ones.
        let mut end = path.len();
        let mut missing = Vec::new();
        while let Some(pos) = path.get(..end).and_then(|p| p.rfind('/')) {
            if pos == 0 {
                break;
            }
            end = pos;
            let parent = &path[..end];
            if self.nodes.contains_key(parent) {
                break;
            }
            missing.push(parent);
        }
        for parent in missing.into_iter().rev() {
            self.nodes
                .insert(Arc::from(parent), Arc::new(Node::Dir { mode: 0o755 }));
        }
        self.nodes.insert(Arc::from(path), node);
    }

    /// [`Tree::insert_shared`] of a path whose parent directory the caller knows exists
    /// (a sibling was just inserted): no parent lookup.
    pub(crate) fn insert_in_existing_dir(&mut self, path: &str, node: Arc<Node>) {
        debug_assert!(
            path.rfind('/')
                .is_some_and(|pos| pos == 0 || self.nodes.contains_key(&path[..pos])),
            "{path}: the parent must exist"
        );
        self.nodes.insert(Arc::from(path), node);
    }

    /// Inserts a text file; `content` gets the trailing newline every sysfs text attribute has.
    pub fn attr(&mut self, path: &str, mode: u32, content: &str) {
        let mut bytes = content.as_bytes().to_vec();
        bytes.push(b'\n');
        self.insert(
            path,
            Node::File {
                mode,
                content: bytes,
            },
        );
    }

    /// Inserts a regular file with exactly `content` (no newline added).
    pub fn file(&mut self, path: &str, mode: u32, content: Vec<u8>) {
        self.insert(path, Node::File { mode, content });
    }

    /// Inserts a symlink.
    pub fn link(&mut self, path: &str, target: &str) {
        self.insert(
            path,
            Node::Link {
                target: target.to_owned(),
            },
        );
    }

    /// Inserts a directory.
    pub fn dir(&mut self, path: &str) {
        self.insert(path, Node::Dir { mode: 0o755 });
    }

    /// The node at `path`.
    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path).map(|n| &**n)
    }

    /// All nodes, sorted by path.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Node)> {
        self.nodes.iter().map(|(p, n)| (&**p, &**n))
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the tree is empty.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
    /// Removes `path` and everything below it; returns how many nodes were removed.
    pub fn remove(&mut self, path: &str) -> usize {
        let prefix = format!("{path}/");
        let below: Vec<Arc<str>> = range_from(&self.nodes, &prefix)
            .take_while(|(p, _)| p.starts_with(&prefix))
            .map(|(p, _)| Arc::clone(p))
            .collect();
        let mut n = below.len();
        for p in below {
            self.nodes.remove(&*p);
        }
        if self.nodes.remove(path).is_some() {
            n += 1;
        }
        n
    }

    /// The content of the regular file at `path` (links are not followed).
    pub fn read(&self, path: &str) -> Option<&[u8]> {
        match &**self.nodes.get(path)? {
            Node::File { content, .. } => Some(content),
            _ => None,
        }
    }

    /// The direct children of the directory `path`, as (name, node), sorted by name.
    pub fn children<'a>(&'a self, path: &str) -> impl Iterator<Item = (&'a str, &'a Node)> + 'a {
        let prefix = if path == "/" {
            "/".to_owned()
        } else {
            format!("{path}/")
        };
        let plen = prefix.len();
        range_from(&self.nodes, &prefix)
            .take_while(move |(p, _)| p.starts_with(&prefix))
            .filter(move |(p, _)| !p[plen..].contains('/'))
            .map(move |(p, n)| (&p[plen..], &**n))
    }

    /// Resolves `path` to the canonical path of the node it designates, following symlinks
    /// (relative and absolute) in every component, like `realpath`. `None` if a component
    /// does not exist, a link dangles, or the link chain loops (more than 40 hops).
    pub fn resolve(&self, path: &str) -> Option<String> {
        let mut hops = 0;
        self.resolve_inner(path, &mut hops)
    }

    fn resolve_inner(&self, path: &str, hops: &mut u32) -> Option<String> {
        if !path.starts_with('/') {
            return None;
        }
        let mut cur: Vec<String> = Vec::new();
        let mut pending: Vec<String> = path
            .split('/')
            .filter(|c| !c.is_empty())
            .rev()
            .map(str::to_owned)
            .collect();
        while let Some(comp) = pending.pop() {
            match comp.as_str() {
                "." => continue,
                ".." => {
                    cur.pop();
                    continue;
                }
                _ => {}
            }
            cur.push(comp);
            let joined = format!("/{}", cur.join("/"));
            if let Node::Link { target } = &**self.nodes.get(joined.as_str())? {
                {
                    *hops += 1;
                    if *hops > 40 {
                        return None;
                    }
                    cur.pop();
                    let base = if target.starts_with('/') {
                        cur.clear();
                        target.clone()
                    } else {
                        target.clone()
                    };
                    for c in base.split('/').filter(|c| !c.is_empty()).rev() {
                        pending.push(c.to_owned());
                    }
                }
            }
        }
        Some(format!("/{}", cur.join("/")))
    }

    /// The union of `parts`, each a tree rendered on its own, as if they had been rendered one
    /// after the other into one tree; `None` if two parts hold different nodes at one path
    /// (then the order they were rendered in would decide, and the caller renders in one
    /// pass instead). Paths they share with equal nodes (common parent directories) are
    /// kept once.
    pub(crate) fn union(parts: &[&Tree]) -> Option<Tree> {
        // Each part is sorted: merged two at a time, smallest first (each merge costs the
        // size of both sides), with no sort.
        let mut parts = parts.to_vec();
        parts.sort_by_key(|t| t.len());
        let mut acc: Vec<(Arc<str>, Arc<Node>)> = Vec::new();
        for part in parts {
            acc = merge_sorted(acc, &part.nodes)?;
        }
        // Sorted input: the map is built in one pass.
        Some(Tree {
            nodes: acc.into_iter().collect(),
        })
    }

    /// [`Tree::union`] of `self` and `part`, by inserting `part`'s nodes into `self`
    /// (cheaper when `part` is small).
    pub(crate) fn union_with(mut self, part: &Tree) -> Option<Tree> {
        for (path, node) in &part.nodes {
            match self.nodes.get(path) {
                Some(n) if n == node => {}
                Some(_) => return None,
                None => {
                    self.nodes.insert(Arc::clone(path), Arc::clone(node));
                }
            }
        }
        Some(self)
    }

    /// The differences that turn `self` into `new`: paths to remove (children before
    /// parents) and paths to create or rewrite (parents before children).
    pub fn diff(&self, new: &Tree) -> TreeDiff {
        // One merge pass over the two sorted maps.
        let mut removed = Vec::new();
        let mut changed = Vec::new();
        let mut a = self.nodes.iter().peekable();
        let mut b = new.nodes.iter().peekable();
        loop {
            match (a.peek(), b.peek()) {
                (None, None) => break,
                (Some((pa, _)), None) => {
                    removed.push(pa.to_string());
                    a.next();
                }
                (None, Some((pb, _))) => {
                    changed.push(pb.to_string());
                    b.next();
                }
                (Some((pa, na)), Some((pb, nb))) => match pa.cmp(pb) {
                    std::cmp::Ordering::Less => {
                        removed.push(pa.to_string());
                        a.next();
                    }
                    std::cmp::Ordering::Greater => {
                        changed.push(pb.to_string());
                        b.next();
                    }
                    std::cmp::Ordering::Equal => {
                        if std::mem::discriminant(&***na) != std::mem::discriminant(&***nb) {
                            removed.push(pa.to_string());
                        }
                        if na != nb {
                            changed.push(pb.to_string());
                        }
                        a.next();
                        b.next();
                    }
                },
            }
        }
        removed.reverse();
        TreeDiff { removed, changed }
    }
}

/// The sorted union of `acc` (sorted, no duplicates) and `part`; `None` if they hold different
/// nodes at one path (see [`Tree::union`]).
fn merge_sorted(
    acc: Vec<(Arc<str>, Arc<Node>)>,
    part: &BTreeMap<Arc<str>, Arc<Node>>,
) -> Option<Vec<(Arc<str>, Arc<Node>)>> {
    let mut out = Vec::with_capacity(acc.len() + part.len());
    let mut a = acc.into_iter().peekable();
    let mut b = part.iter().peekable();
    while let (Some((pa, na)), Some((pb, nb))) = (a.peek(), b.peek()) {
        match (**pa).cmp(&***pb) {
            std::cmp::Ordering::Less => out.extend(a.next()),
            std::cmp::Ordering::Greater => {
                out.extend(b.next().map(|(p, n)| (Arc::clone(p), Arc::clone(n))));
            }
            std::cmp::Ordering::Equal => {
                if na != *nb {
                    return None;
                }
                out.extend(a.next());
                b.next();
            }
        }
    }
    out.extend(a);
    out.extend(b.map(|(p, n)| (Arc::clone(p), Arc::clone(n))));
    Some(out)
}

/// The raw target sysfs gives a symlink placed in directory `from_dir` that points at `to`
/// (both absolute): up to the deepest ancestor of `from_dir` that is also an ancestor of
/// `to`'s parent, then down (`kernfs_get_target_path`). So a link to an ancestor still names
/// it (`device -> ../../../0:0:0:1`).
pub(crate) fn sysfs_link(from_dir: &str, to: &str) -> String {
    let from: Vec<&str> = from_dir.split('/').filter(|c| !c.is_empty()).collect();
    let to: Vec<&str> = to.split('/').filter(|c| !c.is_empty()).collect();
    let parent_len = to.len().saturating_sub(1);
    let common = from
        .iter()
        .zip(to.iter().take(parent_len))
        .take_while(|(a, b)| a == b)
        .count();
    let mut out = "../".repeat(from.len() - common);
    out.push_str(&to.get(common..).unwrap_or_default().join("/"));
    out
}

/// What changed between two trees (see [`Tree::diff`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeDiff {
    /// Paths that vanished or changed node type, deepest first.
    pub removed: Vec<String>,
    /// Paths that are new or whose node differs, shallowest first.
    pub changed: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Tree {
        let mut t = Tree::new();
        t.attr(
            "/sys/devices/platform/host0/scsi_host/host0/scan",
            0o200,
            "",
        );
        t.link(
            "/sys/class/scsi_host/host0",
            "../../devices/platform/host0/scsi_host/host0",
        );
        t.link(
            "/sys/devices/platform/host0/scsi_host/host0/device",
            "../../../host0",
        );
        t.link("/sys/loop", "/sys/loop");
        t
    }

    #[test]
    fn resolve_follows_relative_links() {
        let t = sample();
        assert_eq!(
            t.resolve("/sys/class/scsi_host/host0/scan").as_deref(),
            Some("/sys/devices/platform/host0/scsi_host/host0/scan")
        );
        assert_eq!(
            t.resolve("/sys/class/scsi_host/host0/device").as_deref(),
            Some("/sys/devices/platform/host0")
        );
        assert_eq!(t.resolve("/sys/class/scsi_host/host1/scan"), None);
        assert_eq!(t.resolve("/sys/loop/x"), None);
        assert_eq!(t.resolve("relative"), None);
    }

    #[test]
    fn remove_takes_the_subtree_only() {
        let mut t = sample();
        t.attr("/sys/devices/platform/host01", 0o444, "x");
        let n = t.remove("/sys/devices/platform/host0");
        assert_eq!(n, 5);
        assert!(t.get("/sys/devices/platform/host01").is_some());
        assert!(t.get("/sys/devices/platform/host0/scsi_host").is_none());
    }

    #[test]
    fn sysfs_links_name_ancestors() {
        let lun = "/sys/devices/platform/host0/session1/target0:0:0/0:0:0:1";
        assert_eq!(
            sysfs_link(&format!("{lun}/scsi_device/0:0:0:1"), lun),
            "../../../0:0:0:1"
        );
        assert_eq!(
            sysfs_link(lun, "/sys/bus/scsi"),
            "../../../../../../bus/scsi"
        );
        assert_eq!(
            sysfs_link(&format!("{lun}/block/sda"), "/sys/devices/virtual/bdi/8:0"),
            "../../../../../../../virtual/bdi/8:0"
        );
        assert_eq!(
            sysfs_link("/sys/class/block", &format!("{lun}/block/sda")),
            "../../devices/platform/host0/session1/target0:0:0/0:0:0:1/block/sda"
        );
    }

    #[test]
    fn union_merges_sorted_parts_and_refuses_conflicts() {
        let a = sample();
        let mut b = Tree::new();
        b.attr("/sys/devices/platform/host1/uevent", 0o644, "x");
        b.attr("/sys/a", 0o444, "1");
        let mut whole = a.clone();
        for (p, n) in b.iter() {
            whole.insert(p, n.clone());
        }
        assert_eq!(Tree::union(&[&a, &b, &a]).as_ref(), Some(&whole));
        assert_eq!(Tree::union(&[&b, &a]).as_ref(), Some(&whole));
        let mut c = Tree::new();
        c.attr("/sys/a", 0o444, "2");
        assert_eq!(Tree::union(&[&a, &b, &c]), None);
        assert_eq!(Tree::union(&[]), Some(Tree::new()));
    }

    #[test]
    fn children_and_diff() {
        let t = sample();
        let names: Vec<&str> = t.children("/sys").map(|(n, _)| n).collect();
        assert_eq!(names, ["class", "devices", "loop"]);
        let mut u = t.clone();
        u.remove("/sys/loop");
        u.attr("/sys/new", 0o444, "1");
        let d = t.diff(&u);
        assert_eq!(d.removed, ["/sys/loop"]);
        assert_eq!(d.changed, ["/sys/new"]);
        assert_eq!(
            t.read("/sys/devices/platform/host0/scsi_host/host0/scan"),
            Some(&b"\n"[..])
        );
    }
}
