//! The virtual file tree: every view of a simulated host (sysfs, `/dev`, `/etc`) is derived
//! from the model into one [`Tree`], which [`crate::materialize`] writes to a real directory.

use std::collections::BTreeMap;

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
}

/// A whole host view: host path to node, sorted, parents before children.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    nodes: BTreeMap<String, Node>,
}

impl Tree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts `node` at `path`, creating missing parent directories with mode `0o755`.
    pub fn insert(&mut self, path: &str, node: Node) {
        let mut end = 0;
        while let Some(pos) = path[end + 1..].find('/') {
            end += 1 + pos;
            self.nodes
                .entry(path[..end].to_owned())
                .or_insert(Node::Dir { mode: 0o755 });
        }
        self.nodes.insert(path.to_owned(), node);
    }

    /// Inserts a text file; `content` gets the trailing newline every sysfs text attribute has.
    pub fn attr(&mut self, path: &str, mode: u32, content: &str) {
        let mut bytes = content.as_bytes().to_vec();
        bytes.push(b'\n');
        self.insert(path, Node::File { mode, content: bytes });
    }

    /// Inserts a symlink.
    pub fn link(&mut self, path: &str, target: &str) {
        self.insert(path, Node::Link { target: target.to_owned() });
    }

    /// Inserts a directory.
    pub fn dir(&mut self, path: &str) {
        self.insert(path, Node::Dir { mode: 0o755 });
    }

    /// The node at `path`.
    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    /// All nodes, sorted by path.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Node)> {
        self.nodes.iter().map(|(p, n)| (p.as_str(), n))
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the tree is empty.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}
