//! Comparison of a simulated [`Tree`] with a [`CaptureTree`] within an explicit [`Scope`].
//!
//! Both sides go through the same normalisation before they are compared:
//! 1. identity substitution: each volume's ids (the NAA hex of the wwid, serial, ...) are
//!    replaced by a token on each side, in paths, link targets, file contents and command output;
//! 2. `diskseq`: the sequence number counts every disk the kernel ever saw (the capture guest's
//!    `vda` took 1), so `by-diskseq/N` links are keyed by their target (`by-diskseq/@sda`) and
//!    `diskseq` values by a placeholder;
//! 3. volatile files: content replaced by a placeholder (presence and mode are still compared);
//! 4. simulated file bytes are rendered the way the capture's `walk` lister shows them
//!    ([`Content::render`]), so text, binary and truncation look the same on both sides.
//!
//! Then every path that the scope includes, on either side, is compared.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::{CaptureTree, Content, Entry};
use crate::tree::{Node, Tree};

/// One scope rule: a path glob, the entry types it applies to, and why it is there.
///
/// Globs: `*` matches within one path component, `**` across components, `?` one character;
/// everything else is literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The glob the (normalised) path must match.
    pub pattern: String,
    /// `walk` type letters the rule applies to (`"dl"`: directories and symlinks).
    pub kinds: &'static str,
    /// Why the rule exists; printed with the scope.
    pub reason: &'static str,
}

impl Rule {
    fn matches(&self, path: &str, kind: char) -> bool {
        self.kinds.contains(kind) && glob_match(self.pattern.as_bytes(), path.as_bytes())
    }
}

/// What the simulator must reproduce, what it may leave out, and what is normalised.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    include: Vec<Rule>,
    exclude: Vec<Rule>,
    volatile: Vec<Rule>,
    /// `(real, sim, token)`: the real and the simulated spelling of one id.
    ids: Vec<(String, String, String)>,
}

/// Which side of a comparison a value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Real,
    Sim,
}

const ISCSI_CLASSES: &[&str] = &[
    "iscsi_host",
    "iscsi_session",
    "iscsi_connection",
    "iscsi_transport",
    "iscsi_endpoint",
    "iscsi_iface",
    "scsi_host",
    "scsi_device",
    "scsi_disk",
    "scsi_generic",
    "bsg",
    "block",
];

const ALL: &str = "dlfbc";

impl Scope {
    /// An empty scope: nothing is compared.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a rule: entries of the listed types whose path matches `pattern` must match.
    pub fn include(mut self, pattern: &str, kinds: &'static str, reason: &'static str) -> Self {
        self.include.push(Rule {
            pattern: pattern.to_owned(),
            kinds,
            reason,
        });
        self
    }

    /// Adds a rule: paths matching `pattern` (of any type) are not compared, even if included.
    pub fn exclude(mut self, pattern: &str, reason: &'static str) -> Self {
        self.exclude.push(Rule {
            pattern: pattern.to_owned(),
            kinds: ALL,
            reason,
        });
        self
    }

    /// Adds a rule: files matching `pattern` are compared for presence and mode, not content.
    pub fn volatile(mut self, pattern: &str, reason: &'static str) -> Self {
        self.volatile.push(Rule {
            pattern: pattern.to_owned(),
            kinds: "f",
            reason,
        });
        self
    }

    /// Declares that `real` (the capture's spelling of an id) and `sim` (the simulator's) are the
    /// same id; both become `<token>` before comparison. Give the bare id (the 32 hex digits of
    /// the NAA, not `naa.`/`3`/`0x` forms): every form that contains it follows.
    pub fn identity(mut self, real: &str, sim: &str, token: &str) -> Self {
        if !real.is_empty() && !sim.is_empty() {
            self.ids
                .push((real.to_owned(), sim.to_owned(), format!("<{token}>")));
            // Longest first, so that an id that contains another is replaced as a whole.
            self.ids
                .sort_by_key(|(real, sim, _)| std::cmp::Reverse(real.len().max(sim.len())));
        }
        self
    }

    /// The scope the iSCSI and dm-multipath captures are checked in.
    ///
    /// Must match: every entry (directory, symlink, attribute, device node) of the class and
    /// bus directories of the SCSI/iSCSI stack, of the device trees they point into
    /// (`/sys/devices/platform/host*`, `/sys/devices/virtual/block/dm-*`,
    /// `/sys/devices/virtual/iscsi_transport`), and of `/dev` (`sd*`, `sg*`, `dm-*`, `bsg/`,
    /// `mapper/`, `disk/`, `block/`). Left out, each with its reason: what `walk` did not
    /// descend into, the VPD pages that hold ids in binary (0x80, 0x83), the capture guest's
    /// own `vda` and loop devices.
    /// Content not compared: counters, ports, pids and pointers that differ on every run.
    pub fn iscsi_multipath() -> Self {
        let mut s = Self::new();
        for class in ISCSI_CLASSES {
            s = s
                .include(
                    &format!("/sys/class/{class}"),
                    ALL,
                    "class dirs of the loaded transports",
                )
                .include(
                    &format!("/sys/class/{class}/*"),
                    ALL,
                    "class links: os-brick globs them",
                );
        }
        s.include("/sys/block", ALL, "block devices, read by os-brick")
            .include("/sys/block/*", ALL, "block devices, read by os-brick")
            .include("/sys/bus/scsi/devices", ALL, "SCSI bus view")
            .include(
                "/sys/bus/scsi/devices/*",
                ALL,
                "SCSI bus view: hosts, targets, LUNs",
            )
            .include("/sys/devices/platform/host*", ALL, "iSCSI host device")
            .include(
                "/sys/devices/platform/host*/**",
                ALL,
                "sessions, connections, targets, LUNs, disks",
            )
            .include(
                "/sys/devices/virtual/block/dm-*",
                ALL,
                "multipath map device",
            )
            .include(
                "/sys/devices/virtual/block/dm-*/**",
                ALL,
                "dm-N attributes, dm/name, slaves",
            )
            .include(
                "/sys/devices/virtual/iscsi_transport",
                ALL,
                "transport class device",
            )
            .include(
                "/sys/devices/virtual/iscsi_transport/**",
                ALL,
                "transport class device",
            )
            .include("/dev/sd*", ALL, "SCSI disk nodes")
            .include("/dev/sg*", ALL, "SCSI generic nodes")
            .include("/dev/dm-*", ALL, "dm nodes")
            .include("/dev/bsg", ALL, "bsg nodes")
            .include("/dev/bsg/*", ALL, "bsg nodes")
            .include("/dev/mapper", ALL, "multipath maps")
            .include("/dev/mapper/*", ALL, "multipath maps")
            .include("/dev/disk", ALL, "udev links")
            .include(
                "/dev/disk/*",
                ALL,
                "udev link dirs: an extra by-* dir is a mismatch",
            )
            .include(
                "/dev/disk/by-path/*",
                ALL,
                "os-brick waits for by-path links",
            )
            .include(
                "/dev/disk/by-id/*",
                ALL,
                "os-brick reads scsi-* links for the WWN",
            )
            .include("/dev/disk/by-diskseq/*", ALL, "udev links")
            .include("/dev/block/*", ALL, "dev_t links")
            // Not compared at all.
            .exclude(
                "**/power/**",
                "walk lists power/ but does not descend into it",
            )
            .exclude(
                "**/trace/**",
                "walk lists trace/ but does not descend into it",
            )
            .exclude("**/mq/**", "walk lists mq/ but does not descend into it")
            .exclude(
                "**/iosched/**",
                "walk lists iosched/ but does not descend into it",
            )
            .exclude(
                "**/vpd_pg80",
                "binary, holds the serial: compared through the scsi-S by-id link instead",
            )
            .exclude(
                "**/vpd_pg83",
                "binary, holds the NAA ids: compared through wwid and the by-id links instead",
            )
            .exclude(
                "/sys/block/vda",
                "the capture guest's virtio disk (carries the results out)",
            )
            .exclude("/sys/class/block/vda", "the capture guest's virtio disk")
            .exclude(
                "/dev/disk/by-path/pci-0000:00:04.0",
                "the capture guest's virtio disk",
            )
            .exclude(
                "/dev/disk/by-path/virtio-pci-0000:00:04.0",
                "the capture guest's virtio disk",
            )
            .exclude(
                "/dev/disk/by-diskseq/@vda",
                "the capture guest's virtio disk",
            )
            .exclude(
                "/dev/block/254:*",
                "the capture guest's virtio disk (virtio-blk major 254)",
            )
            .exclude(
                "/sys/block/loop*",
                "loop devices back the nvmet namespace only",
            )
            .exclude(
                "/sys/class/block/loop*",
                "loop devices back the nvmet namespace only",
            )
            // Compared for presence and mode, not content.
            .volatile(
                "**/diskseq",
                "counts every disk since boot; the guest's vda took 1",
            )
            .volatile(
                "**/iscsi_connection/*/exp_statsn",
                "iSCSI StatSN: grows with every PDU",
            )
            .volatile(
                "**/iscsi_connection/*/local_port",
                "ephemeral TCP source port",
            )
            .volatile(
                "**/iscsi_session/*/creator",
                "pid of the iscsid that created the session",
            )
            .volatile("**/stat", "I/O counters")
            .volatile(
                "**/io*_cnt",
                "I/O counters (iodone, ioerr, iorequest, iotmo)",
            )
            .volatile(
                "/sys/devices/virtual/iscsi_transport/tcp/handle",
                "kernel pointer of the transport",
            )
    }

    /// Whether an entry of type `kind` at the normalised `path` is compared.
    pub fn covers(&self, path: &str, kind: char) -> bool {
        self.include.iter().any(|r| r.matches(path, kind))
            && !self.exclude.iter().any(|r| r.matches(path, kind))
    }

    fn is_volatile(&self, path: &str) -> bool {
        self.volatile.iter().any(|r| r.matches(path, 'f'))
    }

    /// The scope as a readable list (one rule per line), for test output and reports.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for (title, rules) in [
            ("must match", &self.include),
            ("not compared", &self.exclude),
            ("content not compared", &self.volatile),
        ] {
            out.push_str(title);
            out.push_str(":\n");
            for r in rules {
                out.push_str(&format!("  [{}] {}  ({})\n", r.kinds, r.pattern, r.reason));
            }
        }
        out
    }

    /// Replaces the capture's ids by their tokens in `text`.
    pub fn normalise_real(&self, text: &str) -> String {
        self.substitute(Side::Real, text)
    }

    /// Replaces the simulator's ids by their tokens in `text`.
    pub fn normalise_sim(&self, text: &str) -> String {
        self.substitute(Side::Sim, text)
    }

    /// Rewrites the capture's ids in `text` into the simulator's spelling (to replay a step
    /// such as `multipath -f 3<naa>` that names a real id).
    pub fn real_to_sim(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for (real, sim, _) in &self.ids {
            out = out.replace(real.as_str(), sim);
        }
        out
    }

    fn substitute(&self, side: Side, text: &str) -> String {
        let mut out = text.to_owned();
        for (real, sim, token) in &self.ids {
            let from = match side {
                Side::Real => real,
                Side::Sim => sim,
            };
            if out.contains(from.as_str()) {
                out = out.replace(from.as_str(), token);
            }
        }
        out
    }

    fn substitute_bytes(&self, side: Side, bytes: &[u8]) -> Vec<u8> {
        match std::str::from_utf8(bytes) {
            Ok(text) => self.substitute(side, text).into_bytes(),
            Err(_) => bytes.to_vec(),
        }
    }

    /// Normalises one entry (path and value) of either side.
    fn normalise(&self, side: Side, path: &str, entry: Entry) -> (String, Entry) {
        let mut path = self.substitute(side, path);
        let entry = match entry {
            Entry::Link { target } => {
                let target = self.substitute(side, &target);
                if let Some(base) = path.strip_prefix("/dev/disk/by-diskseq/") {
                    let dev = target.rsplit('/').next().unwrap_or(&target);
                    if base.bytes().all(|b| b.is_ascii_digit()) {
                        path = format!("/dev/disk/by-diskseq/@{dev}");
                    }
                }
                Entry::Link { target }
            }
            Entry::File { mode, content } => {
                let content = if self.is_volatile(&path) {
                    Content::Text(b"<volatile>\n".to_vec())
                } else {
                    match content {
                        Content::Text(bytes) => {
                            let bytes = self.substitute_bytes(side, &bytes);
                            Content::Text(mask_diskseq(&bytes))
                        }
                        Content::Truncated { prefix, len } => Content::Truncated {
                            prefix: self.substitute_bytes(side, &prefix),
                            len,
                        },
                        other => other,
                    }
                };
                Entry::File { mode, content }
            }
            other => other,
        };
        (path, entry)
    }
}

/// Replaces the number of every `DISKSEQ=N` line (in `uevent`) by `<n>`.
fn mask_diskseq(bytes: &[u8]) -> Vec<u8> {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return bytes.to_vec();
    };
    if !text.contains("DISKSEQ=") {
        return bytes.to_vec();
    }
    let mut out = String::with_capacity(text.len());
    for piece in text.split_inclusive('\n') {
        let (line, nl) = match piece.strip_suffix('\n') {
            Some(l) => (l, "\n"),
            None => (piece, ""),
        };
        match line.strip_prefix("DISKSEQ=") {
            Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                out.push_str("DISKSEQ=<n>")
            }
            _ => out.push_str(line),
        }
        out.push_str(nl);
    }
    out.into_bytes()
}

/// Whether `path` matches `pattern`: `*` matches within one path component, `**` across
/// components, `?` one character other than `/`; everything else is literal.
pub fn glob(pattern: &str, path: &str) -> bool {
    glob_match(pattern.as_bytes(), path.as_bytes())
}

/// `*` within a component, `**` across, `?` one non-`/` byte.
fn glob_match(pat: &[u8], text: &[u8]) -> bool {
    match pat.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => {
            if let Some(rest) = rest.strip_prefix(b"*") {
                // `**`: any sequence, `/` included. `/**` at the end also matches the dir itself.
                (0..=text.len()).any(|i| text.get(i..).is_some_and(|t| glob_match(rest, t)))
            } else {
                let stop = text.iter().position(|&c| c == b'/').unwrap_or(text.len());
                (0..=stop).any(|i| text.get(i..).is_some_and(|t| glob_match(rest, t)))
            }
        }
        Some((b'?', rest)) => match text.split_first() {
            Some((&c, t)) if c != b'/' => glob_match(rest, t),
            _ => false,
        },
        Some((&p, rest)) => match text.split_first() {
            Some((&c, t)) if c == p => glob_match(rest, t),
            _ => false,
        },
    }
}

/// One difference between the simulated and the real tree, at a normalised path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The normalised path.
    pub path: String,
    /// What differs.
    pub kind: MismatchKind,
}

/// What differs at a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MismatchKind {
    /// The real kernel has the entry, the simulator has not. Holds the real `walk` detail.
    MissingInSim {
        /// Real type letter and detail.
        real: String,
    },
    /// The simulator has an entry the real kernel has not.
    ExtraInSim {
        /// Simulated type letter and detail.
        sim: String,
    },
    /// Both have the entry with different types (`d`, `f`, `l`, `b`, `c`).
    TypeDiffers {
        /// Real type letter.
        real: char,
        /// Simulated type letter.
        sim: char,
    },
    /// Same type, different permission bits.
    ModeDiffers {
        /// Real mode.
        real: u32,
        /// Simulated mode.
        sim: u32,
    },
    /// Both are symlinks with different raw targets.
    LinkDiffers {
        /// Real target.
        real: String,
        /// Simulated target.
        sim: String,
    },
    /// Both are files with different content (as `walk` details).
    ContentDiffers {
        /// Real content.
        real: String,
        /// Simulated content.
        sim: String,
    },
    /// Both are device nodes with different numbers.
    DeviceDiffers {
        /// Real `major:minor`.
        real: String,
        /// Simulated `major:minor`.
        sim: String,
    },
}

impl MismatchKind {
    /// A short label for the table.
    pub fn label(&self) -> &'static str {
        match self {
            Self::MissingInSim { .. } => "missing in sim",
            Self::ExtraInSim { .. } => "extra in sim",
            Self::TypeDiffers { .. } => "type",
            Self::ModeDiffers { .. } => "mode",
            Self::LinkDiffers { .. } => "link target",
            Self::ContentDiffers { .. } => "content",
            Self::DeviceDiffers { .. } => "dev number",
        }
    }

    fn columns(&self) -> (String, String) {
        match self {
            Self::MissingInSim { real } => (real.clone(), "-".to_owned()),
            Self::ExtraInSim { sim } => ("-".to_owned(), sim.clone()),
            Self::TypeDiffers { real, sim } => (real.to_string(), sim.to_string()),
            Self::ModeDiffers { real, sim } => (format!("{real:04o}"), format!("{sim:04o}")),
            Self::LinkDiffers { real, sim }
            | Self::ContentDiffers { real, sim }
            | Self::DeviceDiffers { real, sim } => (real.clone(), sim.clone()),
        }
    }
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (real, sim) = self.kind.columns();
        write!(
            f,
            "{:<14} {}  real: {real}  sim: {sim}",
            self.kind.label(),
            self.path
        )
    }
}

/// Renders mismatches as an aligned table (`KIND | PATH | REAL | SIM`).
pub fn mismatch_table(mismatches: &[Mismatch]) -> String {
    let rows: Vec<(&str, &str, String, String)> = mismatches
        .iter()
        .map(|m| {
            let (r, s) = m.kind.columns();
            (m.kind.label(), m.path.as_str(), r, s)
        })
        .collect();
    let w_kind = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(4);
    let w_path = rows.iter().map(|r| r.1.len()).max().unwrap_or(0).max(4);
    let w_real = rows
        .iter()
        .map(|r| r.2.len())
        .max()
        .unwrap_or(0)
        .clamp(4, 60);
    let mut out = format!(
        "{:<w_kind$} | {:<w_path$} | {:<w_real$} | SIM\n",
        "KIND", "PATH", "REAL"
    );
    for (kind, path, real, sim) in rows {
        out.push_str(&format!(
            "{kind:<w_kind$} | {path:<w_path$} | {real:<w_real$} | {sim}\n"
        ));
    }
    out
}

fn node_to_entry(node: &Node) -> Entry {
    match node {
        Node::Dir { mode } => Entry::Dir { mode: *mode },
        Node::File { mode, content } => Entry::File {
            mode: *mode,
            content: Content::render(*mode, content),
        },
        Node::Link { target } => Entry::Link {
            target: target.clone(),
        },
        Node::Block { major, minor, mode } => Entry::Block {
            major: *major,
            minor: *minor,
            mode: *mode,
        },
        Node::Char { major, minor, mode } => Entry::Char {
            major: *major,
            minor: *minor,
            mode: *mode,
        },
        Node::Unreadable { mode, errno } => Entry::File {
            mode: *mode,
            content: Content::ReadError(errno.strerror().to_owned()),
        },
    }
}

fn summary(e: &Entry) -> String {
    let detail = e.detail();
    if detail.is_empty() {
        e.type_letter().to_string()
    } else {
        format!("{} {detail}", e.type_letter())
    }
}

/// Compares the simulated tree with the real one, within `scope`.
///
/// Returns every difference at a path the scope covers on either side, sorted by path.
/// A real directory the simulator lacks is not reported when nothing inside it is in scope but
/// directories (for example `/dev/disk`, kept alive in the capture guest only by `vda`'s links).
/// A real file whose read failed (`<err-read: ...>`) matches only a [`Node::Unreadable`] with
/// the same errno (and mode).
pub fn compare(real: &CaptureTree, sim: &Tree, scope: &Scope) -> Vec<Mismatch> {
    let real_map: BTreeMap<String, Entry> = real
        .iter()
        .map(|(p, e)| scope.normalise(Side::Real, p, e.clone()))
        .collect();
    let sim_map: BTreeMap<String, Entry> = sim
        .iter()
        .map(|(p, n)| scope.normalise(Side::Sim, &p, node_to_entry(n)))
        .collect();
    let paths: BTreeSet<&String> = real_map.keys().chain(sim_map.keys()).collect();
    let mut out = Vec::new();
    for path in paths {
        let r = real_map.get(path);
        let s = sim_map.get(path);
        let covered = r.is_some_and(|e| scope.covers(path, e.type_letter()))
            || s.is_some_and(|e| scope.covers(path, e.type_letter()));
        if !covered {
            continue;
        }
        let kind = match (r, s) {
            (Some(r), None) => {
                let kept_alive_by_others = matches!(r, Entry::Dir { .. })
                    && has_children(&real_map, path)
                    && !has_covered_leaf(&real_map, path, scope);
                (!kept_alive_by_others).then(|| MismatchKind::MissingInSim { real: summary(r) })
            }
            (None, Some(s)) => Some(MismatchKind::ExtraInSim { sim: summary(s) }),
            (Some(r), Some(s)) => compare_entries(r, s),
            (None, None) => None,
        };
        if let Some(kind) = kind {
            out.push(Mismatch {
                path: path.clone(),
                kind,
            });
        }
    }
    out
}

/// Whether `dir` has a descendant that the scope covers and that is a leaf: not a directory, or
/// an empty directory. A directory without one exists only for entries out of scope.
fn has_covered_leaf(map: &BTreeMap<String, Entry>, dir: &str, scope: &Scope) -> bool {
    let prefix = format!("{dir}/");
    map.range(prefix.clone()..)
        .take_while(|(p, _)| p.starts_with(&prefix))
        .any(|(p, e)| {
            scope.covers(p, e.type_letter())
                && (!matches!(e, Entry::Dir { .. }) || !has_children(map, p))
        })
}

/// Whether `dir` has any descendant in the map.
fn has_children(map: &BTreeMap<String, Entry>, dir: &str) -> bool {
    let prefix = format!("{dir}/");
    map.range(prefix.clone()..)
        .next()
        .is_some_and(|(p, _)| p.starts_with(&prefix))
}

fn compare_entries(r: &Entry, s: &Entry) -> Option<MismatchKind> {
    if r.type_letter() != s.type_letter() {
        return Some(MismatchKind::TypeDiffers {
            real: r.type_letter(),
            sim: s.type_letter(),
        });
    }
    if r.mode() != s.mode() {
        return Some(MismatchKind::ModeDiffers {
            real: r.mode(),
            sim: s.mode(),
        });
    }
    match (r, s) {
        (Entry::Link { target: rt }, Entry::Link { target: st }) if rt != st => {
            Some(MismatchKind::LinkDiffers {
                real: rt.clone(),
                sim: st.clone(),
            })
        }
        (Entry::File { content: rc, .. }, Entry::File { content: sc, .. }) if rc != sc => {
            Some(MismatchKind::ContentDiffers {
                real: rc.to_detail(),
                sim: sc.to_detail(),
            })
        }
        (Entry::Block { .. }, Entry::Block { .. }) | (Entry::Char { .. }, Entry::Char { .. })
            if r.detail() != s.detail() =>
        {
            Some(MismatchKind::DeviceDiffers {
                real: r.detail(),
                sim: s.detail(),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Errno;

    #[test]
    fn glob_star_stays_in_one_component() {
        assert!(glob_match(b"/sys/block/*", b"/sys/block/sda"));
        assert!(!glob_match(b"/sys/block/*", b"/sys/block/sda/device"));
        assert!(glob_match(
            b"/sys/devices/platform/host*/**",
            b"/sys/devices/platform/host0/session1/x"
        ));
        assert!(!glob_match(
            b"/sys/devices/platform/host*/**",
            b"/sys/devices/platform/host0"
        ));
        assert!(glob_match(
            b"**/power",
            b"/sys/devices/platform/host0/power"
        ));
        assert!(!glob_match(
            b"**/power",
            b"/sys/devices/platform/host0/power_x"
        ));
        assert!(glob_match(b"/dev/sd?", b"/dev/sda"));
        assert!(!glob_match(b"/dev/sd?", b"/dev/sdaa"));
    }

    #[test]
    fn scope_describes_every_rule_with_its_reason() {
        let text = Scope::iscsi_multipath().describe();
        assert!(text.contains("must match:\n"), "{text}");
        assert!(
            text.contains("[dlfbc] **/vpd_pg83  (binary, holds the NAA ids"),
            "{text}"
        );
        assert!(
            text.contains("content not compared:\n  [f] **/diskseq"),
            "{text}"
        );
    }

    #[test]
    fn diskseq_lines_are_masked_only_when_numeric() {
        let masked = mask_diskseq(b"MAJOR=8\nDISKSEQ=12\nDEVNAME=sda\n");
        assert_eq!(masked, b"MAJOR=8\nDISKSEQ=<n>\nDEVNAME=sda\n");
        assert_eq!(mask_diskseq(b"DISKSEQ=x\n"), b"DISKSEQ=x\n");
    }

    fn real_tree(lines: &str) -> CaptureTree {
        let mut t = CaptureTree::default();
        for l in lines.lines() {
            super::super::parse_walk_line(l, &mut t).unwrap();
        }
        t
    }

    #[test]
    fn identical_trees_have_no_mismatch_and_ids_are_normalised() {
        let real = real_tree(
            "/sys/block\td\t0755\t\n\
             /dev/disk\td\t0755\t\n\
             /dev/disk/by-id\td\t0755\t\n\
             /dev/disk/by-diskseq\td\t0755\t\n\
             /sys/block/sda\tl\t0777\t../devices/platform/host0/session1/target0:0:0/0:0:0:1/block/sda\n\
             /dev/disk/by-id/scsi-3600aa\tl\t0777\t../../sda\n\
             /dev/disk/by-diskseq/2\tl\t0777\t../../sda\n",
        );
        let mut sim = Tree::new();
        sim.dir("/sys/block");
        sim.link(
            "/sys/block/sda",
            "../devices/platform/host0/session1/target0:0:0/0:0:0:1/block/sda",
        );
        sim.link("/dev/disk/by-id/scsi-3600bb", "../../sda");
        sim.link("/dev/disk/by-diskseq/1", "../../sda");
        let scope = Scope::iscsi_multipath();
        let m = compare(&real, &sim, &scope);
        assert_eq!(m.len(), 2, "{}", mismatch_table(&m));
        let scope = scope.identity("600aa", "600bb", "V1");
        assert_eq!(compare(&real, &sim, &scope), vec![]);
    }

    #[test]
    fn every_kind_of_difference_is_reported() {
        let real = real_tree(
            "/sys/devices/platform/host0\td\t0755\t\n\
             /sys/devices/platform/host0/scsi_host\td\t0755\t\n\
             /sys/devices/platform/host0/scsi_host/host0\td\t0755\t\n\
             /sys/devices/platform/host0/scsi_host/host0/scan\tf\t0200\t<write-only>\n\
             /sys/devices/platform/host0/scsi_host/host0/state\tf\t0644\trunning\n\
             /sys/devices/platform/host0/scsi_host/host0/proc_name\tf\t0444\tiscsi_tcp\n\
             /sys/devices/platform/host0/subsystem\tl\t0777\t../../../bus/scsi\n\
             /sys/devices/platform/host0/scsi_host/host0/can_queue\tf\t0444\t113\n\
             /sys/devices/platform/host0/power\td\t0755\t\n",
        );
        let mut sim = Tree::new();
        sim.dir("/sys/devices/platform/host0");
        sim.insert(
            "/sys/devices/platform/host0/scsi_host/host0/scan",
            Node::File {
                mode: 0o644,
                content: vec![],
            },
        );
        sim.attr(
            "/sys/devices/platform/host0/scsi_host/host0/state",
            0o644,
            "blocked",
        );
        sim.link("/sys/devices/platform/host0/subsystem", "../../bus/scsi");
        sim.dir("/sys/devices/platform/host0/session9");
        let m = compare(&real, &sim, &Scope::iscsi_multipath());
        let got: Vec<(&str, &str)> = m
            .iter()
            .map(|m| (m.kind.label(), m.path.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("missing in sim", "/sys/devices/platform/host0/power"),
                (
                    "missing in sim",
                    "/sys/devices/platform/host0/scsi_host/host0/can_queue"
                ),
                (
                    "missing in sim",
                    "/sys/devices/platform/host0/scsi_host/host0/proc_name"
                ),
                ("mode", "/sys/devices/platform/host0/scsi_host/host0/scan"),
                (
                    "content",
                    "/sys/devices/platform/host0/scsi_host/host0/state"
                ),
                ("extra in sim", "/sys/devices/platform/host0/session9"),
                ("link target", "/sys/devices/platform/host0/subsystem"),
            ]
        );
        let table = mismatch_table(&m);
        assert!(table.contains("| running"), "{table}");
    }

    #[test]
    fn read_errors_match_only_the_same_failing_read() {
        let path = "/sys/devices/platform/host0/session1/target0:0:0/0:0:0:1/access_state";
        let real = real_tree(&format!("{path}\tf\t0444\t<err-read: Invalid argument>\n"));
        let scope = Scope::new().include("/sys/**", "f", "test");
        let unreadable = |errno| {
            let mut t = Tree::new();
            t.insert(path, Node::Unreadable { mode: 0o444, errno });
            t
        };
        assert_eq!(compare(&real, &unreadable(Errno::EINVAL), &scope), vec![]);
        let other = compare(&real, &unreadable(Errno::EIO), &scope);
        assert!(
            matches!(&other[..], [Mismatch { kind: MismatchKind::ContentDiffers { real, sim }, .. }]
                if real == "<err-read: Invalid argument>" && sim == "<err-read: Input/output error>"),
            "{other:?}"
        );
        // A readable file is not a failing read, whatever it holds.
        let mut readable = Tree::new();
        readable.attr(path, 0o444, "x");
        assert_eq!(compare(&real, &readable, &scope).len(), 1);
        assert_eq!(compare(&real, &Tree::new(), &scope).len(), 1);
    }
}
