//! The virtual file tree: every view of a simulated host (sysfs, `/dev`, `/etc`) is derived
//! from the model into one [`Tree`], which [`crate::World::materialize`] writes to a real directory.
//!
//! # Representation
//!
//! A [`Tree`] is a persistent tree of directories: each directory holds its entries by name
//! (a sorted map), and each subdirectory sits behind an `Arc`. Copying a tree copies one
//! pointer; changing a copy copies only the directories on the way to the change (the rest
//! stays shared, `Arc::make_mut`). So joining trees rendered apart ([`Tree::union`]) costs the
//! directories they share, not the nodes they hold; comparing and diffing skip shared
//! subtrees by pointer; and dropping a tree frees only what no other tree holds. A lookup
//! walks one small map per path component, comparing names rather than whole paths.
//!
//! The rules a flat map of paths would leave open are fixed by the shape: inserting below a
//! non-directory replaces it with a directory, inserting a non-directory where a directory
//! was drops the directory's subtree, and inserting a directory where one was keeps its
//! entries and takes the new mode. `//` and a trailing `/` in a path are ignored.

use std::cmp::Ordering;
use std::fmt;
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

/// A whole host view: host paths to nodes, every parent a directory.
///
/// Directories are shared (`Arc`) between copies and between trees joined from parts
/// ([`Tree::union`]), so copying, joining and comparing trees cost the directories that
/// differ, not the nodes (see the module doc).
#[derive(Clone, PartialEq, Eq)]
pub struct Tree {
    root: Arc<Dir>,
}

/// A directory: its own node (always [`Node::Dir`], so that [`Tree::get`] can lend it) and
/// its entries, sorted by name (directories are small: a sorted vector is searched, copied
/// and freed faster than a map).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Dir {
    node: Node,
    entries: Vec<(Name, Entry)>,
}

/// What a name in a directory holds. A [`Node::Dir`] is never a `Leaf`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Leaf(Arc<Node>),
    Dir(Arc<Dir>),
}

/// An entry's name. Most names come from the attribute tables (`'static`) or are short
/// (`host3`, `3:0:0:1`, `uevent`): neither needs an allocation.
#[derive(Clone)]
enum Name {
    Static(&'static str),
    /// Up to [`INLINE`] bytes, with their length.
    Inline(u8, [u8; INLINE]),
    Owned(Arc<str>),
}

/// The longest name kept inline (the enum stays three words).
const INLINE: usize = 22;

impl Name {
    fn new(name: &str) -> Self {
        match u8::try_from(name.len()) {
            Ok(len) if name.len() <= INLINE => {
                let mut bytes = [0; INLINE];
                bytes[..name.len()].copy_from_slice(name.as_bytes());
                Name::Inline(len, bytes)
            }
            _ => Name::Owned(Arc::from(name)),
        }
    }

    /// The name's bytes: what names are compared and sorted by (the order of `str`).
    fn as_bytes(&self) -> &[u8] {
        match self {
            Name::Static(s) => s.as_bytes(),
            Name::Inline(len, bytes) => &bytes[..usize::from(*len)],
            Name::Owned(s) => s.as_bytes(),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            Name::Static(s) => s,
            // Copied from a `str` whole: always UTF-8.
            Name::Inline(..) => std::str::from_utf8(self.as_bytes()).unwrap_or_default(),
            Name::Owned(s) => s,
        }
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Name {}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// The default directory mode (parents created on the way, `Tree::dir`).
const DIR_MODE: u32 = 0o755;

/// The components of a host path (`//` and a trailing `/` ignored).
fn components(path: &str) -> Components<'_> {
    Components { rest: path }
}

/// The iterator of [`components`]. Paths are walked on every lookup and insert, and their
/// components are short: a plain byte loop finds the next `/` faster than `str::split`.
#[derive(Debug, Clone)]
struct Components<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Components<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            let end = self
                .rest
                .bytes()
                .position(|b| b == b'/')
                .unwrap_or(self.rest.len());
            // `/` is one byte: both splits fall on character boundaries.
            let (comp, rest) = self.rest.split_at(end);
            self.rest = rest.get(1..).unwrap_or_default();
            if !comp.is_empty() {
                return Some(comp);
            }
        }
    }
}

impl<'a> DoubleEndedIterator for Components<'a> {
    fn next_back(&mut self) -> Option<&'a str> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            let (rest, comp) = match self.rest.bytes().rposition(|b| b == b'/') {
                Some(slash) => (&self.rest[..slash], &self.rest[slash + 1..]),
                None => ("", self.rest),
            };
            self.rest = rest;
            if !comp.is_empty() {
                return Some(comp);
            }
        }
    }
}

impl Dir {
    fn new(mode: u32) -> Self {
        Self {
            node: Node::Dir { mode },
            entries: Vec::new(),
        }
    }

    /// Where `name` is (`Ok`), or where it would go (`Err`).
    fn find(&self, name: &str) -> Result<usize, usize> {
        let name = name.as_bytes();
        self.entries
            .binary_search_by(|(n, _)| cmp_names(n.as_bytes(), name))
    }

    fn get(&self, name: &str) -> Option<&Entry> {
        self.find(name).ok().map(|i| &self.entries[i].1)
    }

    /// The directory `name`, made one (mode `0o755`) if it is missing or not a directory;
    /// unshared, so the caller can change it.
    fn subdir_mut<'s>(&mut self, name: &'s str, name_of: &impl Fn(&'s str) -> Name) -> &mut Dir {
        let i = match self.find(name) {
            Ok(i) => {
                if !matches!(self.entries[i].1, Entry::Dir(_)) {
                    self.entries[i].1 = Entry::Dir(Arc::new(Dir::new(DIR_MODE)));
                }
                i
            }
            Err(i) => {
                let dir = Entry::Dir(Arc::new(Dir::new(DIR_MODE)));
                self.entries.insert(i, (name_of(name), dir));
                i
            }
        };
        match &mut self.entries[i].1 {
            Entry::Dir(d) => Arc::make_mut(d),
            Entry::Leaf(_) => unreachable!("{name} was made a directory just above"),
        }
    }

    /// Puts `node` at `name` (see the module doc for what a directory keeps).
    fn put<'s>(&mut self, name: &'s str, node: Arc<Node>, name_of: &impl Fn(&'s str) -> Name) {
        let found = self.find(name);
        let entry = match (found, &*node) {
            (Ok(i), Node::Dir { .. }) => {
                if let Entry::Dir(d) = &mut self.entries[i].1 {
                    if d.node != *node {
                        Arc::make_mut(d).node = (*node).clone();
                    }
                    return;
                }
                new_dir_entry(&node)
            }
            (Err(_), Node::Dir { .. }) => new_dir_entry(&node),
            _ => Entry::Leaf(node),
        };
        match found {
            Ok(i) => self.entries[i].1 = entry,
            Err(i) => self.entries.insert(i, (name_of(name), entry)),
        }
    }

    /// Puts `node` at `rel`, a path relative to this directory, creating missing parents;
    /// `name_of` makes the names of new entries.
    fn put_path<'s>(&mut self, rel: &'s str, node: Arc<Node>, name_of: impl Fn(&'s str) -> Name) {
        let mut comps = components(rel);
        let Some(mut name) = comps.next() else {
            if let Node::Dir { .. } = *node {
                self.node = (*node).clone();
            }
            return;
        };
        let mut dir = self;
        for next in comps {
            dir = dir.subdir_mut(name, &name_of);
            name = next;
        }
        dir.put(name, node, &name_of);
    }

    /// Nodes below this directory.
    fn count(&self) -> usize {
        self.entries.iter().map(|(_, e)| e.count()).sum()
    }
}

/// An empty directory entry with the mode of `node` (a [`Node::Dir`]).
fn new_dir_entry(node: &Node) -> Entry {
    Entry::Dir(Arc::new(Dir {
        node: node.clone(),
        entries: Vec::new(),
    }))
}

/// The order of names: the order of their bytes, as `str` orders them. Names are short: a
/// byte loop compares them faster than a call to `memcmp`.
fn cmp_names(a: &[u8], b: &[u8]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        if x != y {
            return x.cmp(y);
        }
    }
    a.len().cmp(&b.len())
}

/// The directory at `rel` below `dir`, created (with its parents, mode `0o755`) if missing.
fn descend<'d>(mut dir: &'d mut Dir, rel: &str) -> &'d mut Dir {
    for name in components(rel) {
        dir = dir.subdir_mut(name, &Name::new);
    }
    dir
}

impl Entry {
    fn node(&self) -> &Node {
        match self {
            Entry::Leaf(n) => n,
            Entry::Dir(d) => &d.node,
        }
    }

    /// Nodes at and below this entry.
    fn count(&self) -> usize {
        match self {
            Entry::Leaf(_) => 1,
            Entry::Dir(d) => 1 + d.count(),
        }
    }
}

impl Default for Tree {
    fn default() -> Self {
        Self {
            root: Arc::new(Dir::new(DIR_MODE)),
        }
    }
}

/// The tree as a map from path to node (what a failing assertion shows).
impl fmt::Debug for Tree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// Where the last lookup of [`Tree::get_near`] left off: a directory of a tree (shared,
/// so it stays valid while the cursor holds it) and its path.
#[derive(Debug, Clone, Default)]
pub struct Cursor {
    /// The root of the tree the cursor belongs to (held: its address cannot be reused).
    root: Option<Arc<Dir>>,
    dir: Option<Arc<Dir>>,
    /// The path of `dir` (empty for the root).
    path: String,
}

/// A directory of a [`Tree`], held for inserting many nodes below it without walking from
/// the root for each (see [`Tree::dir_mut`]).
#[derive(Debug)]
pub(crate) struct DirMut<'a> {
    dir: &'a mut Dir,
}

impl DirMut<'_> {
    /// Inserts `node` at `rel`, a path relative to this directory (`queue/scheduler`),
    /// creating missing parents as [`Tree::insert`] does. The path is `'static` (an
    /// attribute table's): its names are not copied.
    pub(crate) fn insert_static(&mut self, rel: &'static str, node: Arc<Node>) {
        self.dir.put_path(rel, node, Name::Static);
    }

    /// Inserts `node` at `rel`, a path relative to this directory, creating missing
    /// parents as [`Tree::insert`] does.
    pub(crate) fn insert(&mut self, rel: &str, node: Node) {
        self.dir.put_path(rel, Arc::new(node), Name::new);
    }

    /// [`Tree::attr`] relative to this directory.
    pub(crate) fn attr(&mut self, rel: &str, mode: u32, content: &str) {
        let mut bytes = Vec::with_capacity(content.len() + 1);
        bytes.extend_from_slice(content.as_bytes());
        bytes.push(b'\n');
        self.insert(
            rel,
            Node::File {
                mode,
                content: bytes,
            },
        );
    }

    /// [`Tree::file`] relative to this directory.
    pub(crate) fn file(&mut self, rel: &str, mode: u32, content: Vec<u8>) {
        self.insert(rel, Node::File { mode, content });
    }

    /// [`Tree::link`] relative to this directory.
    pub(crate) fn link(&mut self, rel: &str, target: &str) {
        self.insert(
            rel,
            Node::Link {
                target: target.to_owned(),
            },
        );
    }

    /// [`Tree::dir`] relative to this directory.
    pub(crate) fn dir(&mut self, rel: &str) {
        self.insert(rel, Node::Dir { mode: DIR_MODE });
    }

    /// The directory at `rel` below this one, created (with its parents) if missing.
    pub(crate) fn dir_mut(&mut self, rel: &str) -> DirMut<'_> {
        DirMut {
            dir: descend(self.dir, rel),
        }
    }

    /// Places every entry of `shared` here: an entry of the same name is replaced, a
    /// directory of the same name is overlaid (as inserting each node of `shared` would).
    /// Into an empty directory this copies one vector of pointers: the nodes and the
    /// subdirectories stay shared.
    pub(crate) fn overlay(&mut self, shared: &SharedDir) {
        overlay(self.dir, &shared.0);
    }
}

/// A directory built once and placed in many trees by [`DirMut::overlay`] (an attribute
/// table, see `kernel::sysfs::put_attrs`).
#[derive(Debug, Clone)]
pub(crate) struct SharedDir(Arc<Dir>);

impl SharedDir {
    /// The directory `build` fills.
    pub(crate) fn build(build: impl FnOnce(&mut DirMut<'_>)) -> Self {
        let mut dir = Dir::new(DIR_MODE);
        build(&mut DirMut { dir: &mut dir });
        SharedDir(Arc::new(dir))
    }
}

/// [`DirMut::overlay`].
fn overlay(dir: &mut Dir, shared: &Dir) {
    if dir.entries.is_empty() {
        dir.node.clone_from(&shared.node);
        dir.entries.clone_from(&shared.entries);
        return;
    }
    dir.node.clone_from(&shared.node);
    for (name, e) in &shared.entries {
        match (dir.find(name.as_str()), e) {
            (Ok(i), Entry::Dir(src)) => match &mut dir.entries[i].1 {
                Entry::Dir(d) => overlay(Arc::make_mut(d), src),
                slot @ Entry::Leaf(_) => *slot = e.clone(),
            },
            (Ok(i), Entry::Leaf(_)) => dir.entries[i].1 = e.clone(),
            (Err(i), _) => dir.entries.insert(i, (name.clone(), e.clone())),
        }
    }
}

impl Tree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts `node` at `path`, creating missing parent directories with mode `0o755`.
    pub fn insert(&mut self, path: &str, node: Node) {
        self.root_mut().insert(path, node);
    }

    /// The root directory, for inserts by absolute path.
    fn root_mut(&mut self) -> DirMut<'_> {
        DirMut {
            dir: Arc::make_mut(&mut self.root),
        }
    }

    /// The directory at `path`, created (with its parents) if missing, for a run of
    /// inserts below it.
    pub(crate) fn dir_mut(&mut self, path: &str) -> DirMut<'_> {
        DirMut {
            dir: descend(Arc::make_mut(&mut self.root), path),
        }
    }

    /// Inserts a text file; `content` gets the trailing newline every sysfs text attribute has.
    pub fn attr(&mut self, path: &str, mode: u32, content: &str) {
        self.root_mut().attr(path, mode, content);
    }

    /// Inserts a regular file with exactly `content` (no newline added).
    pub fn file(&mut self, path: &str, mode: u32, content: Vec<u8>) {
        self.root_mut().file(path, mode, content);
    }

    /// Inserts a symlink.
    pub fn link(&mut self, path: &str, target: &str) {
        self.root_mut().link(path, target);
    }

    /// Inserts a directory.
    pub fn dir(&mut self, path: &str) {
        self.root_mut().dir(path);
    }

    /// The entry at `path`, without following links (`None` for the root itself).
    fn entry(&self, path: &str) -> Option<&Entry> {
        let mut comps = components(path);
        let mut entry = self.root.get(comps.next()?)?;
        for name in comps {
            let Entry::Dir(d) = entry else { return None };
            entry = d.get(name)?;
        }
        Some(entry)
    }

    /// The node at `path` (links are not followed; `None` for `/`).
    pub fn get(&self, path: &str) -> Option<&Node> {
        self.entry(path).map(Entry::node)
    }

    /// `f` of [`Tree::get`]`(path)`, looked up from where `cursor` stands when `path` lies
    /// below it, and leaving `cursor` at the deepest directory walked. Path resolution asks
    /// about `/a`, then `/a/b`, then `/a/b/c`: each lookup then costs one step instead of a
    /// walk from the root. A cursor of another tree is ignored.
    pub fn get_near<R>(
        &self,
        path: &str,
        cursor: &mut Cursor,
        f: impl FnOnce(Option<&Node>) -> R,
    ) -> R {
        let own_tree = cursor
            .root
            .as_ref()
            .is_some_and(|r| Arc::ptr_eq(r, &self.root));
        // Start at the cursor when `path` is it or lies below it, else at the root.
        let (start_dir, start) = match &cursor.dir {
            Some(dir) if own_tree => {
                let p = cursor.path.as_str();
                if path == p && !p.is_empty() {
                    return f(Some(&dir.node));
                }
                if path.starts_with(p) && path.as_bytes().get(p.len()) == Some(&b'/') {
                    (dir, p.len())
                } else {
                    (&self.root, 0)
                }
            }
            _ => (&self.root, 0),
        };
        let mut dir = start_dir;
        let mut dir_end = start;
        let base = path.as_ptr().addr();
        let mut comps = components(&path[start..]).peekable();
        let mut found = None;
        while let Some(name) = comps.next() {
            let Some(e) = dir.get(name) else { break };
            let end = name.as_ptr().addr() - base + name.len();
            match e {
                Entry::Dir(d) => {
                    dir = d;
                    dir_end = end;
                    if comps.peek().is_none() {
                        found = Some(e);
                    }
                }
                Entry::Leaf(_) if comps.peek().is_none() => found = Some(e),
                Entry::Leaf(_) => break,
            }
        }
        let result = f(found.map(Entry::node));
        // The deepest directory walked, if the cursor is not there already. (A directory
        // can be shared at other paths, by another tree or by overlays: its path counts.)
        let moved = !own_tree || !cursor.dir.as_ref().is_some_and(|d| Arc::ptr_eq(d, dir));
        let moved = moved.then(|| Arc::clone(dir));
        if !own_tree {
            cursor.root = Some(Arc::clone(&self.root));
        }
        if let Some(dir) = moved {
            cursor.dir = Some(dir);
            cursor.path.clear();
            cursor.path.push_str(&path[..dir_end]);
        }
        result
    }

    /// All nodes with their paths: parents before their entries, the entries of a directory
    /// sorted by name.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            stack: vec![(String::new(), self.root.entries.iter())],
        }
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.root.count()
    }

    /// Whether the tree is empty.
    pub fn is_empty(&self) -> bool {
        self.root.entries.is_empty()
    }

    /// Removes `path` and everything below it; returns how many nodes were removed.
    pub fn remove(&mut self, path: &str) -> usize {
        // Look first: a miss must not unshare the directories on the way.
        if self.entry(path).is_none() {
            return 0;
        }
        let comps: Vec<&str> = components(path).collect();
        let Some((last, parents)) = comps.split_last() else {
            return 0;
        };
        let mut dir = Arc::make_mut(&mut self.root);
        for name in parents {
            let Ok(i) = dir.find(name) else { return 0 };
            match &mut dir.entries[i].1 {
                Entry::Dir(d) => dir = Arc::make_mut(d),
                Entry::Leaf(_) => return 0,
            }
        }
        match dir.find(last) {
            Ok(i) => dir.entries.remove(i).1.count(),
            Err(_) => 0,
        }
    }

    /// The content of the regular file at `path` (links are not followed).
    pub fn read(&self, path: &str) -> Option<&[u8]> {
        match self.get(path)? {
            Node::File { content, .. } => Some(content),
            _ => None,
        }
    }

    /// The direct children of the directory `path`, as (name, node), sorted by name (none
    /// if `path` is not a directory).
    pub fn children<'a>(&'a self, path: &str) -> impl Iterator<Item = (&'a str, &'a Node)> + 'a {
        let dir = if components(path).next().is_none() {
            Some(&*self.root)
        } else {
            match self.entry(path) {
                Some(Entry::Dir(d)) => Some(&**d),
                _ => None,
            }
        };
        dir.into_iter()
            .flat_map(|d| d.entries.iter())
            .map(|(name, e)| (name.as_str(), e.node()))
    }

    /// Resolves `path` to the canonical path of the node it designates, following symlinks
    /// (relative and absolute) in every component, like `realpath`. `None` if a component
    /// does not exist, a link dangles, or the link chain loops (more than 40 hops).
    pub fn resolve(&self, path: &str) -> Option<String> {
        if !path.starts_with('/') {
            return None;
        }
        let mut hops = 0u32;
        // The components still to walk, last first; and the walked ones, each with the
        // directory it is (`None`: not a directory).
        let mut pending: Vec<&str> = components(path).rev().collect();
        let mut walked: Vec<(&str, Option<&Dir>)> = Vec::new();
        while let Some(comp) = pending.pop() {
            match comp {
                "." => continue,
                ".." => {
                    walked.pop();
                    continue;
                }
                _ => {}
            }
            let cur = match walked.last() {
                None => &*self.root,
                Some((_, Some(d))) => *d,
                Some((_, None)) => return None,
            };
            match cur.get(comp)? {
                Entry::Dir(d) => walked.push((comp, Some(d))),
                Entry::Leaf(n) => match &**n {
                    Node::Link { target } => {
                        hops += 1;
                        if hops > 40 {
                            return None;
                        }
                        if target.starts_with('/') {
                            walked.clear();
                        }
                        pending.extend(components(target).rev());
                    }
                    _ => walked.push((comp, None)),
                },
            }
        }
        let mut out = String::new();
        for (name, _) in &walked {
            out.push('/');
            out.push_str(name);
        }
        if out.is_empty() {
            out.push('/');
        }
        Some(out)
    }

    /// The union of `parts`, each a tree rendered on its own, as if they had been rendered one
    /// after the other into one tree; `None` if two parts hold different nodes at one path
    /// (then the order they were rendered in would decide, and the caller renders in one
    /// pass instead). Paths they share with equal nodes (common parent directories) are
    /// kept once; subtrees only one part has are shared with it, not copied.
    pub(crate) fn union(parts: &[&Tree]) -> Option<Tree> {
        let mut acc = Tree::new();
        for part in parts {
            merge_into(&mut acc.root, &part.root)?;
        }
        Some(acc)
    }

    /// [`Tree::union`] of `self` and `part`.
    pub(crate) fn union_with(mut self, part: &Tree) -> Option<Tree> {
        merge_into(&mut self.root, &part.root)?;
        Some(self)
    }

    /// The differences that turn `self` into `new`: paths to remove (children before
    /// parents) and paths to create or rewrite (parents before children).
    pub fn diff(&self, new: &Tree) -> TreeDiff {
        let mut d = TreeDiff::default();
        let mut path = String::new();
        diff_dirs(&mut path, &self.root, &new.root, &mut d);
        d.removed.reverse();
        d
    }
}

/// Merges `part` into `acc` (see [`Tree::union`]): in place where `acc` holds the only
/// copy of a directory (a union being built), by [`merge_dirs`] where it shares it. `None`
/// if they disagree about a path (`acc` is then half merged).
fn merge_into(acc: &mut Arc<Dir>, part: &Arc<Dir>) -> Option<()> {
    if Arc::ptr_eq(acc, part) {
        return Some(());
    }
    let Some(dir) = Arc::get_mut(acc) else {
        *acc = merge_dirs(acc, part)?;
        return Some(());
    };
    if dir.node != part.node {
        return None;
    }
    if dir.entries.is_empty() {
        *acc = Arc::clone(part);
        return Some(());
    }
    for (name, e) in &part.entries {
        match dir.find(name.as_str()) {
            Err(pos) => dir.entries.insert(pos, (name.clone(), e.clone())),
            Ok(i) => match (&mut dir.entries[i].1, e) {
                (Entry::Dir(x), Entry::Dir(y)) => merge_into(x, y)?,
                // `Arc`'s equality compares pointers first.
                (Entry::Leaf(x), Entry::Leaf(y)) if x == y => {}
                _ => return None,
            },
        }
    }
    Some(())
}

/// The union of two directories (see [`Tree::union`]): `None` if they disagree about a
/// path. Shares whatever one side has alone, and returns the bigger side itself when the
/// smaller adds nothing to it.
fn merge_dirs(a: &Arc<Dir>, b: &Arc<Dir>) -> Option<Arc<Dir>> {
    if Arc::ptr_eq(a, b) {
        return Some(Arc::clone(a));
    }
    if a.node != b.node {
        return None;
    }
    let (big, small) = if a.entries.len() >= b.entries.len() {
        (a, b)
    } else {
        (b, a)
    };
    // What `small` adds to `big`: (position in `big`, whether it replaces the entry there,
    // the entry), in order.
    let mut changes: Vec<(usize, bool, &Name, Entry)> = Vec::new();
    for (name, e) in &small.entries {
        match big.find(name.as_str()) {
            Err(pos) => changes.push((pos, false, name, e.clone())),
            Ok(i) => match (&big.entries[i].1, e) {
                (Entry::Dir(x), Entry::Dir(y)) => {
                    let m = merge_dirs(x, y)?;
                    if !Arc::ptr_eq(&m, x) {
                        changes.push((i, true, name, Entry::Dir(m)));
                    }
                }
                // `Arc`'s equality compares pointers first.
                (Entry::Leaf(x), Entry::Leaf(y)) if x == y => {}
                _ => return None,
            },
        }
    }
    if changes.is_empty() {
        return Some(Arc::clone(big));
    }
    let mut entries = Vec::with_capacity(big.entries.len() + changes.len());
    let mut changes = changes.into_iter().peekable();
    for (i, (name, e)) in big.entries.iter().enumerate() {
        let mut replaced = false;
        while let Some((_, replaces, new_name, new)) = changes.next_if(|c| c.0 == i) {
            entries.push((new_name.clone(), new));
            replaced |= replaces;
        }
        if !replaced {
            entries.push((name.clone(), e.clone()));
        }
    }
    entries.extend(changes.map(|(_, _, name, e)| (name.clone(), e)));
    Some(Arc::new(Dir {
        node: big.node.clone(),
        entries,
    }))
}

/// Appends `/name` to `path` (the root's path is empty); returns the old length.
fn push_name(path: &mut String, name: &str) -> usize {
    let len = path.len();
    path.push('/');
    path.push_str(name);
    len
}

/// Every path at and below `e` (at `path`), parents first.
fn all_paths(path: &mut String, e: &Entry, out: &mut Vec<String>) {
    out.push(path.clone());
    if let Entry::Dir(d) = e {
        for (name, child) in &d.entries {
            let len = push_name(path, name.as_str());
            all_paths(path, child, out);
            path.truncate(len);
        }
    }
}

/// [`Tree::diff`] of two directories at `path`, into `d` (removals parents first: the
/// caller reverses them).
fn diff_dirs(path: &mut String, old: &Dir, new: &Dir, d: &mut TreeDiff) {
    let mut a = old.entries.iter().peekable();
    let mut b = new.entries.iter().peekable();
    loop {
        let order = match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some((na, _)), Some((nb, _))) => cmp_names(na.as_bytes(), nb.as_bytes()),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
        };
        let (name, ea, eb) = match order {
            Ordering::Less => {
                let Some((n, x)) = a.next() else { break };
                (n, Some(x), None)
            }
            Ordering::Greater => {
                let Some((n, y)) = b.next() else { break };
                (n, None, Some(y))
            }
            Ordering::Equal => {
                let (Some((n, x)), Some((_, y))) = (a.next(), b.next()) else {
                    break;
                };
                (n, Some(x), Some(y))
            }
        };
        let len = push_name(path, name.as_str());
        match (ea, eb) {
            (Some(x), None) => all_paths(path, x, &mut d.removed),
            (None, Some(y)) => all_paths(path, y, &mut d.changed),
            (Some(Entry::Dir(x)), Some(Entry::Dir(y))) => {
                if !Arc::ptr_eq(x, y) {
                    if x.node != y.node {
                        d.changed.push(path.clone());
                    }
                    diff_dirs(path, x, y, d);
                }
            }
            (Some(Entry::Leaf(x)), Some(Entry::Leaf(y))) => {
                if std::mem::discriminant(&**x) != std::mem::discriminant(&**y) {
                    d.removed.push(path.clone());
                }
                if x != y {
                    d.changed.push(path.clone());
                }
            }
            // A directory became a file or the other way round: all of the old goes, all
            // of the new comes.
            (Some(x), Some(y)) => {
                all_paths(path, x, &mut d.removed);
                all_paths(path, y, &mut d.changed);
            }
            (None, None) => {}
        }
        path.truncate(len);
    }
}

/// The nodes of a [`Tree`] with their paths ([`Tree::iter`]).
#[derive(Debug)]
pub struct Iter<'a> {
    /// The path of each open directory and where its entries are.
    stack: Vec<(String, std::slice::Iter<'a, (Name, Entry)>)>,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (String, &'a Node);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (dir, entries) = self.stack.last_mut()?;
            let Some((name, e)) = entries.next() else {
                self.stack.pop();
                continue;
            };
            let mut path = String::with_capacity(dir.len() + 1 + name.as_str().len());
            path.push_str(dir);
            path.push('/');
            path.push_str(name.as_str());
            return Some(match e {
                Entry::Leaf(n) => (path, &**n),
                Entry::Dir(d) => {
                    self.stack.push((path.clone(), d.entries.iter()));
                    (path, &d.node)
                }
            });
        }
    }
}

/// The raw target sysfs gives a symlink placed in directory `from_dir` that points at `to`
/// (both absolute): up to the deepest ancestor of `from_dir` that is also an ancestor of
/// `to`'s parent, then down (`kernfs_get_target_path`). So a link to an ancestor still names
/// it (`device -> ../../../0:0:0:1`).
pub(crate) fn sysfs_link(from_dir: &str, to: &str) -> String {
    let up = components(from_dir).count();
    let parent_len = components(to).count().saturating_sub(1);
    let common = components(from_dir)
        .zip(components(to).take(parent_len))
        .take_while(|(a, b)| a == b)
        .count();
    let mut out = String::with_capacity(3 * (up - common) + to.len());
    for _ in common..up {
        out.push_str("../");
    }
    for (i, c) in components(to).skip(common).enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(c);
    }
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
            whole.insert(&p, n.clone());
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

    #[test]
    fn names_sort_as_strings_do() {
        let names = ["", "a", "a-b", "a/", "ab", "b", "host10", "host2", "é", "z"];
        for a in names {
            for b in names {
                assert_eq!(
                    cmp_names(a.as_bytes(), b.as_bytes()),
                    a.cmp(b),
                    "{a:?} {b:?}"
                );
            }
        }
    }

    #[test]
    fn components_skip_empty_ones_from_both_ends() {
        for path in [
            "/sys/block/sda",
            "sys//block/sda/",
            "//sys/block//sda//",
            "",
            "/",
            "a",
        ] {
            let want: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
            assert_eq!(components(path).collect::<Vec<_>>(), want, "{path:?}");
            let mut back: Vec<&str> = components(path).rev().collect();
            back.reverse();
            assert_eq!(back, want, "{path:?} reversed");
        }
        let mut both = components("/a/b/c/d");
        assert_eq!(
            (
                both.next(),
                both.next_back(),
                both.next(),
                both.next_back(),
                both.next()
            ),
            (Some("a"), Some("d"), Some("b"), Some("c"), None)
        );
    }

    #[test]
    fn directories_keep_entries_and_non_directories_replace_them() {
        let mut t = Tree::new();
        t.attr("/a/b/c", 0o444, "1");
        // A directory where one is: the entries stay, the mode changes.
        t.insert("/a/b", Node::Dir { mode: 0o700 });
        assert_eq!(t.get("/a/b"), Some(&Node::Dir { mode: 0o700 }));
        assert_eq!(t.read("/a/b/c"), Some(&b"1\n"[..]));
        // Below a file: the file becomes a directory.
        t.attr("/a/b/c/d", 0o444, "2");
        assert_eq!(t.get("/a/b/c"), Some(&Node::Dir { mode: 0o755 }));
        // A file where a directory is: its subtree goes.
        t.attr("/a/b", 0o444, "3");
        assert_eq!(t.get("/a/b/c"), None);
        assert_eq!(t.len(), 2);
        // `//` and a trailing `/` name the same node.
        assert_eq!(t.read("//a/b/"), Some(&b"3\n"[..]));
        assert_eq!(t.get("/"), None);
        assert_eq!(t.remove("/"), 0);
    }

    #[test]
    fn copies_and_unions_share_what_they_do_not_change() {
        let a = sample();
        let mut b = a.clone();
        b.attr("/sys/devices/platform/host0/new", 0o444, "x");
        // Only the directories on the way to the change were copied.
        // The subdirectory `name` of `d`.
        fn subdir<'t>(d: &'t Dir, name: &str) -> &'t Arc<Dir> {
            match d.get(name) {
                Some(Entry::Dir(sub)) => sub,
                other => panic!("{name} is not a directory: {other:?}"),
            }
        }
        let (sa, sb) = (subdir(&a.root, "sys"), subdir(&b.root, "sys"));
        assert!(!Arc::ptr_eq(sa, sb));
        assert!(Arc::ptr_eq(subdir(sa, "class"), subdir(sb, "class")));
        // A union that adds nothing is the bigger side itself.
        let u = Tree::union(&[&b, &a]).expect("no conflict");
        assert!(Arc::ptr_eq(&u.root, &b.root));
        assert_eq!(a.diff(&b).changed, ["/sys/devices/platform/host0/new"]);
    }

    #[test]
    fn a_cursor_follows_a_directory_shared_at_another_path() {
        // One table directory overlaid at two paths shares its subdirectory `queue`.
        let shared = SharedDir::build(|d| {
            d.insert_static("queue/depth", Arc::new(Node::Dir { mode: 0o755 }));
        });
        let mut a = Tree::new();
        a.dir_mut("/x").overlay(&shared);
        let mut b = Tree::new();
        b.dir_mut("/y").overlay(&shared);
        b.attr("/y/queue/extra", 0o444, "1");
        let mut c = Tree::new();
        c.dir_mut("/z").overlay(&shared);
        let mut cursor = Cursor::default();
        assert!(a.get_near("/x/queue", &mut cursor, |n| n.is_some()));
        // In `c` the same `queue` directory is at `/z`, and `/x` is nowhere: the cursor,
        // now at that directory in `c`, must stand at `/z/queue`.
        assert!(c.get_near("/z/queue", &mut cursor, |n| n.is_some()));
        assert!(!c.get_near("/x/queue/depth", &mut cursor, |n| n.is_some()));
        assert!(c.get_near("/z/queue/depth", &mut cursor, |n| n.is_some()));
        assert!(b.get_near("/y/queue/extra", &mut cursor, |n| n.is_some()));
    }

    mod model {
        //! [`Tree`] against the plain statement of its rules: a sorted map of whole paths.

        use std::collections::BTreeMap;

        use proptest::prelude::*;

        use std::sync::Arc;

        use super::super::{Cursor, Node, SharedDir, Tree};

        /// The reference: every node by its normalized path (`/a/b`).
        type Flat = BTreeMap<String, Node>;

        fn norm(path: &str) -> Vec<&str> {
            path.split('/').filter(|c| !c.is_empty()).collect()
        }

        fn join(comps: &[&str]) -> String {
            comps.iter().map(|c| format!("/{c}")).collect()
        }

        fn remove_below(m: &mut Flat, path: &str) -> usize {
            let prefix = format!("{path}/");
            let below: Vec<String> = m
                .keys()
                .filter(|k| k.starts_with(&prefix))
                .cloned()
                .collect();
            below.iter().for_each(|k| {
                m.remove(k);
            });
            below.len()
        }

        /// The module doc's rules, one by one.
        fn insert(m: &mut Flat, path: &str, node: &Node) {
            let comps = norm(path);
            let Some((_, parents)) = comps.split_last() else {
                return;
            };
            for i in 1..=parents.len() {
                let p = join(&comps[..i]);
                if !matches!(m.get(&p), Some(Node::Dir { .. })) {
                    m.insert(p, Node::Dir { mode: 0o755 });
                }
            }
            let p = join(&comps);
            if !matches!(node, Node::Dir { .. }) {
                remove_below(m, &p);
            }
            m.insert(p, node.clone());
        }

        fn flat_resolve(m: &Flat, path: &str) -> Option<String> {
            if !path.starts_with('/') {
                return None;
            }
            let mut hops = 0;
            let mut cur: Vec<String> = Vec::new();
            let mut pending: Vec<String> =
                norm(path).into_iter().rev().map(str::to_owned).collect();
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
                if let Node::Link { target } = m.get(&joined)? {
                    hops += 1;
                    if hops > 40 {
                        return None;
                    }
                    cur.pop();
                    if target.starts_with('/') {
                        cur.clear();
                    }
                    pending.extend(norm(target).into_iter().rev().map(str::to_owned));
                }
            }
            Some(format!("/{}", cur.join("/")))
        }

        fn flat(t: &Tree) -> Flat {
            t.iter().map(|(p, n)| (p, n.clone())).collect()
        }

        #[derive(Debug, Clone)]
        enum Op {
            Insert(String, Node),
            Remove(String),
            /// A directory built from these inserts, overlaid at the path.
            Overlay(String, Vec<(String, Node)>),
        }

        fn path() -> impl Strategy<Value = String> {
            prop::collection::vec(
                prop::sample::select(vec![
                    "a",
                    "b",
                    "a-b",
                    "c",
                    ".",
                    // Names on both sides of the inline limit (22 bytes).
                    "abcdefghijklmnopqrstuv",
                    "abcdefghijklmnopqrstuvw",
                ]),
                1..4,
            )
            .prop_map(|c| c.iter().map(|c| format!("/{c}")).collect::<String>())
            .prop_filter("not the root", |p| !norm(p).iter().all(|c| *c == "."))
        }

        fn node() -> impl Strategy<Value = Node> {
            prop_oneof![
                prop::sample::select(vec![0o755u32, 0o700]).prop_map(|mode| Node::Dir { mode }),
                (0u8..2).prop_map(|c| Node::File {
                    mode: 0o444,
                    content: vec![c]
                }),
                prop::sample::select(vec!["a", "../b", "/a/b", "..", "/c/../a", "x", "."])
                    .prop_map(|t| Node::Link {
                        target: t.to_owned()
                    }),
            ]
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                4 => (path(), node()).prop_map(|(p, n)| Op::Insert(p, n)),
                1 => path().prop_map(Op::Remove),
                1 => (path(), prop::collection::vec((path(), node()), 0..6))
                    .prop_map(|(p, inserts)| Op::Overlay(p, inserts)),
                // The same directory (one `SharedDir`) at several paths and in several
                // trees, as attribute tables are.
                1 => path().prop_map(|p| Op::Overlay(p, vec![
                    ("/c/a".to_owned(), Node::Dir { mode: 0o755 }),
                    ("/c/b".to_owned(), Node::File { mode: 0o444, content: vec![7] }),
                ])),
            ]
        }

        /// The `SharedDir` built from `inserts`: one per list of inserts, so equal lists
        /// share their directories. The names must outlive it: the few a run makes leak.
        fn shared_dir(inserts: &[(String, Node)]) -> SharedDir {
            thread_local! {
                static BUILT: std::cell::RefCell<BTreeMap<String, SharedDir>> =
                    const { std::cell::RefCell::new(BTreeMap::new()) };
            }
            BUILT.with_borrow_mut(|built| {
                built
                    .entry(format!("{inserts:?}"))
                    .or_insert_with(|| {
                        SharedDir::build(|d| {
                            for (rel, n) in inserts {
                                let rel: &'static str = Box::leak(rel.clone().into_boxed_str());
                                d.insert_static(rel, Arc::new(n.clone()));
                            }
                        })
                    })
                    .clone()
            })
        }

        fn build(ops: &[Op]) -> (Tree, Flat) {
            let mut t = Tree::new();
            let mut m = Flat::new();
            for op in ops {
                match op {
                    Op::Insert(p, n) => {
                        t.insert(p, n.clone());
                        insert(&mut m, p, n);
                    }
                    Op::Remove(p) => {
                        let want = match m.remove(&join(&norm(p))) {
                            Some(_) => 1 + remove_below(&mut m, &join(&norm(p))),
                            None => 0,
                        };
                        assert_eq!(t.remove(p), want, "remove {p}");
                    }
                    Op::Overlay(p, inserts) => {
                        let shared = shared_dir(inserts);
                        t.dir_mut(p).overlay(&shared);
                        // As inserting each of its nodes (parents first) would.
                        let mut built = Tree::new();
                        built.root = Arc::clone(&shared.0);
                        insert(&mut m, p, &Node::Dir { mode: 0o755 });
                        for (rel, n) in built.iter() {
                            insert(&mut m, &format!("{p}{rel}"), n);
                        }
                    }
                }
            }
            (t, m)
        }

        proptest! {
            /// After any history of inserts and removes, the tree holds exactly what the
            /// rules say, and every query answers as on the flat map: lookups, children,
            /// `realpath`, diffs (applied to the old map they give the new one, in an order
            /// a directory writer can follow) and unions (the union of the maps, or `None`
            /// when they disagree about a path).
            #[test]
            fn the_tree_is_the_flat_map_of_its_rules(
                ops in prop::collection::vec(op(), 0..24),
                other in prop::collection::vec(op(), 0..12),
                third in prop::collection::vec(op(), 0..6),
                probes in prop::collection::vec(path(), 8),
            ) {
                let (t, m) = build(&ops);
                prop_assert_eq!(flat(&t), m.clone());
                prop_assert_eq!(t.len(), m.len());
                prop_assert_eq!(t.is_empty(), m.is_empty());
                for p in probes.iter().map(String::as_str).chain(["/", "relative"]) {
                    let key = join(&norm(p));
                    prop_assert_eq!(t.get(p), m.get(&key));
                    let kids: Vec<(String, Node)> = t.children(p).map(|(n, node)| (n.to_owned(), node.clone())).collect();
                    let prefix = if key.is_empty() { "/".to_owned() } else { format!("{key}/") };
                    let want: Vec<(String, Node)> = if key.is_empty() || matches!(m.get(&key), Some(Node::Dir { .. })) {
                        m.iter()
                            .filter_map(|(k, n)| k.strip_prefix(&prefix).filter(|r| !r.contains('/')).map(|r| (r.to_owned(), n.clone())))
                            .collect()
                    } else {
                        Vec::new()
                    };
                    let mut sorted = want.clone();
                    sorted.sort_by(|a, b| a.0.cmp(&b.0));
                    prop_assert_eq!(&kids, &sorted, "children of {}", p);
                    prop_assert_eq!(t.resolve(p), flat_resolve(&m, p), "resolve {}", p);
                }

                // Lookups through one cursor, in the order path resolution asks (each
                // prefix, then the next probe), and across trees, answer as `get`.
                let (u, n) = build(&other);
                let mut cursor = Cursor::default();
                for p in probes.iter().map(String::as_str).chain(["/", "", "relative", "/a//b/"]) {
                    let comps = norm(p);
                    for i in 0..=comps.len() {
                        let prefix = join(&comps[..i]);
                        for tree in [&t, &u, &t] {
                            let got = tree.get_near(&prefix, &mut cursor, |n| n.cloned());
                            prop_assert_eq!(got.as_ref(), tree.get(&prefix), "get_near {}", prefix);
                        }
                    }
                    let got = t.get_near(p, &mut cursor, |n| n.cloned());
                    prop_assert_eq!(got.as_ref(), t.get(p), "get_near {}", p);
                }

                prop_assert_eq!(t == u, m == n);
                // Diff: the old map, minus the removed, plus the changed, is the new map.
                let d = t.diff(&u);
                let mut applied = m.clone();
                for r in &d.removed {
                    prop_assert!(applied.remove(r).is_some(), "removed {} was not there", r);
                }
                for c in &d.changed {
                    applied.insert(c.clone(), n[c].clone());
                }
                prop_assert_eq!(&applied, &n);
                for (i, r) in d.removed.iter().enumerate() {
                    prop_assert!(!d.removed[i + 1..].iter().any(|later| later.starts_with(&format!("{r}/"))), "removed: {} before a child", r);
                }
                for (i, c) in d.changed.iter().enumerate() {
                    prop_assert!(!d.changed[..i].iter().any(|earlier| earlier.starts_with(&format!("{c}/"))), "changed: {} after a child", c);
                }
                // Union: the maps' union, unless they disagree somewhere.
                let agree = m.iter().all(|(k, v)| n.get(k).is_none_or(|w| w == v));
                let mut both = m.clone();
                both.extend(n.clone());
                let union = Tree::union(&[&t, &u]);
                prop_assert_eq!(union.as_ref().map(flat), agree.then_some(both.clone()));
                prop_assert_eq!(t.clone().union_with(&u).map(|x| flat(&x)), agree.then_some(both.clone()));
                // Three parts: the third is merged into directories the union already owns.
                let (w, o) = build(&third);
                let agree3 = agree && both.iter().all(|(k, v)| o.get(k).is_none_or(|x| x == v));
                let mut all = both;
                all.extend(o);
                prop_assert_eq!(Tree::union(&[&t, &u, &w]).as_ref().map(flat), agree3.then_some(all));
            }
        }
    }
}
