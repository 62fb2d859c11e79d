//! The real-kernel capture format (`/work/shared/reference/real-kernel/*.txt`) and a comparator
//! that measures how faithfully the simulator's [`Tree`](crate::tree::Tree) reproduces it.
//!
//! A capture has a `#` header, the guest steps, and four sections:
//! 1. and 2. `walk` lines (`PATH\tTYPE\tMODE\tDETAIL`) of sysfs class/bus dirs and device trees,
//!    with `PATH\t<absent>` for directories that do not exist;
//! 3. `/dev` as command blocks: a busybox `ls -l` of the device nodes, `ls -l /dev/mapper`, a
//!    `walk` of `/dev/disk`, `/dev/mapper` and `/dev/bsg`, and `ls -l /dev/block`;
//! 4. command blocks: `$ COMMAND`, the output (stdout and stderr mixed), `[exit status N]`.
//!
//! [`Capture::parse`] reads all of it into a [`CaptureTree`] (sections 1 to 3, one entry per path)
//! and a list of [`CommandCapture`]s (section 4). Parsing never panics: malformed input gives a
//! [`CaptureError`] with its line number. [`compare`] then checks a simulated tree against the
//! captured one within an explicit [`Scope`].

mod compare;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

pub use compare::{Mismatch, MismatchKind, Rule, Scope, compare, glob, mismatch_table};

/// Number of bytes of a binary attribute that `walk` prints in hex.
pub const HEX_PREFIX_LEN: usize = 96;
/// Number of content bytes of a text attribute that `walk` prints before truncating.
pub const TEXT_LIMIT: usize = 1024;
/// Number of bytes `walk` reads from a file.
pub const READ_LIMIT: usize = 4096;

/// An error in a capture file, with the 1-based line number where it was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {kind}")]
pub struct CaptureError {
    /// 1-based line number in the capture text.
    pub line: usize,
    /// What is wrong.
    pub kind: CaptureErrorKind,
}

/// What is wrong with a capture line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureErrorKind {
    /// A line of the form `=== ... ===` that names no known section.
    #[error("unknown section header {0:?}")]
    UnknownSection(String),
    /// A section appeared out of order or twice.
    #[error("section {found} follows section {previous}")]
    SectionOrder {
        /// The section seen before.
        previous: String,
        /// The section found on this line.
        found: String,
    },
    /// Content before the first section that is neither a `#` comment nor blank.
    #[error("unexpected text before the first section: {0:?}")]
    BeforeFirstSection(String),
    /// A walk line without the four TAB-separated columns.
    #[error("walk line needs 4 TAB-separated columns (PATH TYPE MODE DETAIL): {0:?}")]
    WalkColumns(String),
    /// A path that is not absolute or contains empty, `.` or `..` components.
    #[error("path {0:?} is not absolute and normalised")]
    BadPath(String),
    /// An entry type other than `d`, `l`, `f`, `b`, `c` or `?`.
    #[error("unknown entry type {0:?}")]
    UnknownType(String),
    /// A mode that is not 4 octal digits (or an `ls -l` mode string that cannot be read).
    #[error("bad mode {0:?}")]
    BadMode(String),
    /// A device number that is not `major:minor`.
    #[error("bad device number {0:?}")]
    BadDevice(String),
    /// A file content with a broken escape, hex dump or marker.
    #[error("bad file content {content:?}: {why}")]
    BadContent {
        /// The raw DETAIL column.
        content: String,
        /// What could not be decoded.
        why: &'static str,
    },
    /// A `?` entry whose detail is not an `<err-lstat: ...>`/`<err-scandir: ...>` marker.
    #[error("unexpected detail for a `?` entry: {0:?}")]
    BadErrorEntry(String),
    /// The same path listed twice with different entries.
    #[error("path {0} listed twice with different entries")]
    Conflict(String),
    /// A line outside a command block in sections 3 or 4.
    #[error("unexpected line outside a command block: {0:?}")]
    OutsideCommand(String),
    /// A command block with no `[exit status N]` line.
    #[error("command {0:?} has no `[exit status N]` line")]
    Unterminated(String),
    /// An `[exit status ...]` line whose status is not an integer.
    #[error("bad exit status line {0:?}")]
    BadStatus(String),
    /// A `ls -l` line in section 3 that cannot be read.
    #[error("unreadable `ls -l` line {0:?}")]
    LsLine(String),
    /// A required section is missing.
    #[error("section {0} is missing")]
    MissingSection(&'static str),
}

/// The content of a regular file as `walk` reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// Text: the exact bytes of the file, trailing newline included (restored after `walk`
    /// stripped it, unless the capture said `<no-trailing-newline>`).
    Text(Vec<u8>),
    /// Text longer than [`TEXT_LIMIT`]: the first bytes and the number of bytes read.
    Truncated {
        /// The first [`TEXT_LIMIT`] bytes.
        prefix: Vec<u8>,
        /// How many bytes `walk` read (at most [`READ_LIMIT`]).
        len: usize,
    },
    /// Binary content: its length and the first [`HEX_PREFIX_LEN`] bytes.
    Binary {
        /// Bytes read (at most [`READ_LIMIT`]).
        len: usize,
        /// The first bytes, at most [`HEX_PREFIX_LEN`].
        prefix: Vec<u8>,
        /// `walk` filled its whole buffer, so the file may be longer than `len`.
        more: bool,
    },
    /// The read returned 0 bytes (`<empty>`).
    Empty,
    /// The mode has no read bit, so `walk` did not read it (`<write-only>`).
    WriteOnly,
    /// `read(2)` failed with this errno text (`<err-read: Invalid argument>`).
    ReadError(String),
    /// `open(2)` failed with this errno text (`<err-open: ...>`).
    OpenError(String),
}

impl Content {
    /// Decodes `walk`'s DETAIL column of an `f` line.
    pub fn decode(detail: &str) -> Result<Self, CaptureErrorKind> {
        let bad = |why| CaptureErrorKind::BadContent {
            content: detail.to_owned(),
            why,
        };
        match detail {
            "<empty>" => return Ok(Self::Empty),
            "<write-only>" => return Ok(Self::WriteOnly),
            _ => {}
        }
        if let Some(rest) = detail.strip_prefix("<err-read: ") {
            let errno = rest
                .strip_suffix('>')
                .ok_or_else(|| bad("unterminated <err-read: marker"))?;
            return Ok(Self::ReadError(errno.to_owned()));
        }
        if let Some(rest) = detail.strip_prefix("<err-open: ") {
            let errno = rest
                .strip_suffix('>')
                .ok_or_else(|| bad("unterminated <err-open: marker"))?;
            return Ok(Self::OpenError(errno.to_owned()));
        }
        if let Some(rest) = detail.strip_prefix("hex[len=") {
            return decode_hex(rest).map_err(bad);
        }
        if let Some(text) = detail.strip_suffix("<no-trailing-newline>") {
            return unescape(text).map(Self::Text).map_err(bad);
        }
        if let Some(pos) = detail.rfind("...<truncated, ") {
            let (text, marker) = detail.split_at(pos);
            let len = marker
                .strip_prefix("...<truncated, ")
                .and_then(|m| m.strip_suffix(" bytes read>"))
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| bad("bad <truncated, N bytes read> marker"))?;
            return Ok(Self::Truncated {
                prefix: unescape(text).map_err(bad)?,
                len,
            });
        }
        let mut bytes = unescape(detail).map_err(bad)?;
        bytes.push(b'\n');
        Ok(Self::Text(bytes))
    }

    /// Renders file bytes the way `walk` would have shown them, so that a simulated file can be
    /// compared with a captured one: the same text/binary heuristic, read and display limits.
    pub fn render(mode: u32, bytes: &[u8]) -> Self {
        if mode & 0o444 == 0 {
            return Self::WriteOnly;
        }
        let read = bytes.get(..READ_LIMIT).unwrap_or(bytes);
        let n = read.len();
        if n == 0 {
            return Self::Empty;
        }
        let nonprint = read
            .iter()
            .filter(|&&c| !(c == b'\n' || c == b'\t' || (0x20..0x7f).contains(&c)))
            .count();
        let b0 = read.first().copied().unwrap_or(b'\n');
        if nonprint > 0 && (nonprint * 8 > n || (b0 < 0x20 && b0 != b'\n' && b0 != b'\t')) {
            let prefix = read.get(..HEX_PREFIX_LEN).unwrap_or(read).to_vec();
            return Self::Binary {
                len: n,
                prefix,
                more: n == READ_LIMIT,
            };
        }
        let body = read.strip_suffix(b"\n").unwrap_or(read);
        if body.len() > TEXT_LIMIT {
            let prefix = body.get(..TEXT_LIMIT).unwrap_or(body).to_vec();
            return Self::Truncated { prefix, len: n };
        }
        Self::Text(read.to_vec())
    }

    /// The DETAIL column `walk` prints for this content (the inverse of [`Content::decode`]).
    pub fn to_detail(&self) -> String {
        match self {
            Self::Text(bytes) => match bytes.strip_suffix(b"\n") {
                Some(body) => escape(body),
                None => format!("{}<no-trailing-newline>", escape(bytes)),
            },
            Self::Truncated { prefix, len } => {
                format!("{}...<truncated, {len} bytes read>", escape(prefix))
            }
            Self::Binary { len, prefix, more } => {
                let mut s = format!("hex[len={len}{}]:", if *more { "+" } else { "" });
                for b in prefix {
                    s.push_str(&format!(" {b:02x}"));
                }
                if *len > prefix.len() {
                    s.push_str(" ...");
                }
                s
            }
            Self::Empty => "<empty>".to_owned(),
            Self::WriteOnly => "<write-only>".to_owned(),
            Self::ReadError(e) => format!("<err-read: {e}>"),
            Self::OpenError(e) => format!("<err-open: {e}>"),
        }
    }
}

impl fmt::Display for Content {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_detail())
    }
}

/// `walk`'s text escaping: `\n`, `\t`, `\\`, and `\xHH` for other control or non-ASCII bytes.
pub fn escape(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for &c in bytes {
        match c {
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            b'\\' => s.push_str("\\\\"),
            0x20..0x7f => s.push(char::from(c)),
            _ => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    s
}

fn unescape(text: &str) -> Result<Vec<u8>, &'static str> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(c) = bytes.next() {
        if c != b'\\' {
            out.push(c);
            continue;
        }
        match bytes.next() {
            Some(b'n') => out.push(b'\n'),
            Some(b't') => out.push(b'\t'),
            Some(b'\\') => out.push(b'\\'),
            Some(b'x') => {
                let hi = bytes.next().and_then(hex_digit);
                let lo = bytes.next().and_then(hex_digit);
                match (hi, lo) {
                    (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                    _ => return Err("`\\x` must be followed by two hex digits"),
                }
            }
            Some(_) => return Err("unknown escape (only \\n, \\t, \\\\ and \\xHH exist)"),
            None => return Err("trailing backslash"),
        }
    }
    Ok(out)
}

fn hex_digit(c: u8) -> Option<u8> {
    char::from(c)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// Decodes the rest of `hex[len=N]: xx xx ...` after `hex[len=`.
fn decode_hex(rest: &str) -> Result<Content, &'static str> {
    let (len, dump) = rest.split_once("]:").ok_or("hex dump without `]:`")?;
    let (len, more) = match len.strip_suffix('+') {
        Some(l) => (l, true),
        None => (len, false),
    };
    let len: usize = len.parse().map_err(|_| "hex dump length is not a number")?;
    let mut prefix = Vec::new();
    let mut ellipsis = false;
    for tok in dump.split(' ').filter(|t| !t.is_empty()) {
        if ellipsis {
            return Err("bytes after `...` in a hex dump");
        }
        if tok == "..." {
            ellipsis = true;
            continue;
        }
        let b = tok.as_bytes();
        match (
            b.len(),
            b.first().copied().and_then(hex_digit),
            b.get(1).copied().and_then(hex_digit),
        ) {
            (2, Some(hi), Some(lo)) => prefix.push(hi << 4 | lo),
            _ => return Err("hex dump byte is not two hex digits"),
        }
    }
    if prefix.len() > len || prefix.len() > HEX_PREFIX_LEN {
        return Err("hex dump longer than its length");
    }
    if prefix.len() < len.min(HEX_PREFIX_LEN) {
        return Err("hex dump shorter than its length");
    }
    if ellipsis != (len > prefix.len()) {
        return Err("`...` must end exactly the hex dumps that are cut");
    }
    Ok(Content::Binary { len, prefix, more })
}

/// One captured filesystem entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A directory and its mode.
    Dir {
        /// Octal permission bits (`0o755`).
        mode: u32,
    },
    /// A regular file, its mode and content.
    File {
        /// Octal permission bits (`0o444`).
        mode: u32,
        /// The content as `walk` reported it.
        content: Content,
    },
    /// A symlink and its raw target.
    Link {
        /// The target, exactly as `readlink` returned it.
        target: String,
    },
    /// A block device node.
    Block {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
        /// Octal permission bits.
        mode: u32,
    },
    /// A character device node.
    Char {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
        /// Octal permission bits.
        mode: u32,
    },
}

impl Entry {
    /// The `walk` TYPE letter of the entry.
    pub fn type_letter(&self) -> char {
        match self {
            Self::Dir { .. } => 'd',
            Self::File { .. } => 'f',
            Self::Link { .. } => 'l',
            Self::Block { .. } => 'b',
            Self::Char { .. } => 'c',
        }
    }

    /// The permission bits (`0o777` for a symlink, as `lstat` reports).
    pub fn mode(&self) -> u32 {
        match self {
            Self::Dir { mode }
            | Self::File { mode, .. }
            | Self::Block { mode, .. }
            | Self::Char { mode, .. } => *mode,
            Self::Link { .. } => 0o777,
        }
    }

    /// The DETAIL column (`walk` format).
    pub fn detail(&self) -> String {
        match self {
            Self::Dir { .. } => String::new(),
            Self::File { content, .. } => content.to_detail(),
            Self::Link { target } => target.clone(),
            Self::Block { major, minor, .. } | Self::Char { major, minor, .. } => {
                format!("{major}:{minor}")
            }
        }
    }

    /// The whole `PATH\tTYPE\tMODE\tDETAIL` line for this entry at `path`.
    pub fn walk_line(&self, path: &str) -> String {
        format!(
            "{path}\t{}\t{:04o}\t{}",
            self.type_letter(),
            self.mode(),
            self.detail()
        )
    }
}

/// The entries of sections 1 to 3, by host path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaptureTree {
    entries: BTreeMap<String, Entry>,
    absent: BTreeSet<String>,
}

impl CaptureTree {
    /// The entry at `path`.
    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.entries.get(path)
    }

    /// All entries, sorted by path.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.entries.iter().map(|(p, e)| (p.as_str(), e))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Paths listed as not existing: `<absent>` in section 1, and `<err-lstat: No such file or
    /// directory>` in the `/dev` walk.
    pub fn absent(&self) -> &BTreeSet<String> {
        &self.absent
    }

    /// Parses a bare `walk` listing (such as `nvmet-configfs.txt`): `#` comment lines, blank
    /// lines and `PATH\tTYPE\tMODE\tDETAIL` lines.
    pub fn parse_walk(text: &str) -> Result<Self, CaptureError> {
        let mut tree = Self::default();
        for (idx, line) in text.lines().enumerate() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            parse_walk_line(line, &mut tree).map_err(|kind| CaptureError {
                line: idx + 1,
                kind,
            })?;
        }
        Ok(tree)
    }

    /// Adds an entry; the same path may be listed twice (the `ls -l` and `walk` views of `/dev`)
    /// only if both agree.
    fn add(&mut self, path: &str, entry: Entry) -> Result<(), CaptureErrorKind> {
        check_path(path)?;
        match self.entries.get(path) {
            Some(old) if *old != entry => Err(CaptureErrorKind::Conflict(path.to_owned())),
            Some(_) => Ok(()),
            None => {
                self.entries.insert(path.to_owned(), entry);
                Ok(())
            }
        }
    }

    fn add_absent(&mut self, path: &str) -> Result<(), CaptureErrorKind> {
        check_path(path)?;
        self.absent.insert(path.to_owned());
        Ok(())
    }

    /// Renders the tree in the capture's own line format, one `walk` line per entry.
    pub fn to_walk_lines(&self) -> String {
        let mut out = String::new();
        for (path, entry) in &self.entries {
            out.push_str(&entry.walk_line(path));
            out.push('\n');
        }
        out
    }
}

fn check_path(path: &str) -> Result<(), CaptureErrorKind> {
    let ok = path.starts_with('/')
        && (path == "/"
            || path.get(1..).is_some_and(|rest| {
                rest.split('/')
                    .all(|c| !c.is_empty() && c != "." && c != "..")
            }));
    if ok {
        Ok(())
    } else {
        Err(CaptureErrorKind::BadPath(path.to_owned()))
    }
}

/// One command of sections 3 or 4 with its output and exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandCapture {
    /// 1-based line number of the `$ COMMAND` line in the capture.
    pub line: usize,
    /// The command line as the capture shows it (after `$ `; shell quoting is lost there, so
    /// `multipathd show paths raw format "%d %w"` reads `... format %d %w`).
    pub command: String,
    /// The exit status.
    pub status: i32,
    /// stdout and stderr as they were interleaved, one `\n` after each line.
    pub output: String,
}

/// One parsed capture file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capture {
    /// The `#` header lines, without the leading `# `.
    pub header: Vec<String>,
    /// The guest steps, one per line, trimmed.
    pub steps: Vec<String>,
    /// Sections 1 to 3 as one tree.
    pub tree: CaptureTree,
    /// The raw command blocks of section 3 (the `/dev` listings).
    pub dev_commands: Vec<CommandCapture>,
    /// Section 4.
    pub commands: Vec<CommandCapture>,
    /// Notes between the command blocks, such as
    /// `(nvme commands skipped: nvme_core not loaded in this scenario)`.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Section {
    Header,
    Steps,
    Classes,
    Devices,
    Dev,
    Commands,
}

impl Section {
    fn from_header(line: &str) -> Option<Self> {
        let title = line.strip_prefix("=== ")?.strip_suffix(" ===")?;
        if title.starts_with("STEPS DONE") {
            Some(Self::Steps)
        } else if title.starts_with("SECTION 1:") {
            Some(Self::Classes)
        } else if title.starts_with("SECTION 2:") {
            Some(Self::Devices)
        } else if title.starts_with("SECTION 3:") {
            Some(Self::Dev)
        } else if title.starts_with("SECTION 4:") {
            Some(Self::Commands)
        } else {
            None
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Header => "header",
            Self::Steps => "STEPS",
            Self::Classes => "1",
            Self::Devices => "2",
            Self::Dev => "3",
            Self::Commands => "4",
        }
    }
}

/// A command block being read.
struct OpenCommand {
    line: usize,
    command: String,
    output: String,
}

impl Capture {
    /// Parses a whole capture file.
    pub fn parse(text: &str) -> Result<Self, CaptureError> {
        let mut cap = Self::default();
        let mut section = Section::Header;
        let mut open: Option<OpenCommand> = None;
        for (idx, line) in text.lines().enumerate() {
            let lineno = idx + 1;
            let err = |kind| CaptureError { line: lineno, kind };
            if let Some(cmd) = open.as_mut() {
                if let Some(status) = line.strip_prefix("[exit status ") {
                    let status = status
                        .strip_suffix(']')
                        .and_then(|s| s.parse::<i32>().ok())
                        .ok_or_else(|| err(CaptureErrorKind::BadStatus(line.to_owned())))?;
                    if let Some(cmd) = open.take() {
                        let done = CommandCapture {
                            line: cmd.line,
                            command: cmd.command,
                            status,
                            output: cmd.output,
                        };
                        if section == Section::Dev {
                            cap.dev_commands.push(done);
                        } else {
                            cap.commands.push(done);
                        }
                    }
                } else if line.starts_with("$ ")
                    || (line.starts_with("=== ") && Section::from_header(line).is_some())
                {
                    // `run` always ends a block with its exit status: a new command or section
                    // here means this block was cut.
                    return Err(CaptureError {
                        line: cmd.line,
                        kind: CaptureErrorKind::Unterminated(cmd.command.clone()),
                    });
                } else {
                    cmd.output.push_str(line);
                    cmd.output.push('\n');
                }
                continue;
            }
            if line.starts_with("===") {
                let next = Section::from_header(line)
                    .ok_or_else(|| err(CaptureErrorKind::UnknownSection(line.to_owned())))?;
                if next <= section {
                    return Err(err(CaptureErrorKind::SectionOrder {
                        previous: section.name().to_owned(),
                        found: next.name().to_owned(),
                    }));
                }
                section = next;
                continue;
            }
            match section {
                Section::Header => {
                    if let Some(comment) = line.strip_prefix('#') {
                        cap.header
                            .push(comment.strip_prefix(' ').unwrap_or(comment).to_owned());
                    } else if !line.trim().is_empty() {
                        return Err(err(CaptureErrorKind::BeforeFirstSection(line.to_owned())));
                    }
                }
                Section::Steps => {
                    if !line.trim().is_empty() {
                        cap.steps.push(line.trim().to_owned());
                    }
                }
                Section::Classes | Section::Devices => {
                    if !line.is_empty() {
                        parse_walk_line(line, &mut cap.tree).map_err(err)?;
                    }
                }
                Section::Dev | Section::Commands => {
                    if let Some(command) = line.strip_prefix("$ ") {
                        open = Some(OpenCommand {
                            line: lineno,
                            command: command.to_owned(),
                            output: String::new(),
                        });
                    } else if line.starts_with('(') && line.ends_with(')') {
                        cap.notes.push(line.to_owned());
                    } else if !line.trim().is_empty() {
                        return Err(err(CaptureErrorKind::OutsideCommand(line.to_owned())));
                    }
                }
            }
        }
        if let Some(cmd) = open {
            return Err(CaptureError {
                line: cmd.line,
                kind: CaptureErrorKind::Unterminated(cmd.command),
            });
        }
        let last_line = text.lines().count().max(1);
        for (needed, name) in [
            (Section::Steps, "STEPS"),
            (Section::Classes, "1"),
            (Section::Devices, "2"),
            (Section::Dev, "3"),
            (Section::Commands, "4"),
        ] {
            if section < needed {
                return Err(CaptureError {
                    line: last_line,
                    kind: CaptureErrorKind::MissingSection(name),
                });
            }
        }
        let mut tree = std::mem::take(&mut cap.tree);
        for cmd in &cap.dev_commands {
            add_dev_listing(cmd, &mut tree)?;
        }
        cap.tree = tree;
        Ok(cap)
    }

    /// The first command whose command line is exactly `command` (as the capture shows it).
    pub fn command(&self, command: &str) -> Option<&CommandCapture> {
        self.commands.iter().find(|c| c.command == command)
    }
}

fn parse_mode(s: &str) -> Result<u32, CaptureErrorKind> {
    if s.len() == 4 && s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        u32::from_str_radix(s, 8).map_err(|_| CaptureErrorKind::BadMode(s.to_owned()))
    } else {
        Err(CaptureErrorKind::BadMode(s.to_owned()))
    }
}

fn parse_devno(s: &str) -> Result<(u32, u32), CaptureErrorKind> {
    let bad = || CaptureErrorKind::BadDevice(s.to_owned());
    let (major, minor) = s.split_once(':').ok_or_else(bad)?;
    Ok((
        major.trim().parse().map_err(|_| bad())?,
        minor.trim().parse().map_err(|_| bad())?,
    ))
}

/// Reads one `walk` line (or `PATH\t<absent>`) into `tree`.
fn parse_walk_line(line: &str, tree: &mut CaptureTree) -> Result<(), CaptureErrorKind> {
    let cols: Vec<&str> = line.splitn(4, '\t').collect();
    let (path, kind, mode, detail) = match cols.as_slice() {
        [path, "<absent>"] => return tree.add_absent(path),
        [path, kind, mode, detail] => (*path, *kind, *mode, *detail),
        _ => return Err(CaptureErrorKind::WalkColumns(line.to_owned())),
    };
    if kind == "?" {
        // `walk` could not lstat the path (or scandir the directory `path/`).
        if detail.starts_with("<err-lstat: No such file or directory>") {
            return tree.add_absent(path);
        }
        if detail.starts_with("<err-lstat: ") || detail.starts_with("<err-scandir: ") {
            // Exists but cannot be listed: nothing to add, nothing to claim absent.
            return check_path(path.strip_suffix('/').unwrap_or(path));
        }
        return Err(CaptureErrorKind::BadErrorEntry(detail.to_owned()));
    }
    let entry = match kind {
        "d" => Entry::Dir {
            mode: parse_mode(mode)?,
        },
        "l" => Entry::Link {
            target: detail.to_owned(),
        },
        "f" => Entry::File {
            mode: parse_mode(mode)?,
            content: Content::decode(detail)?,
        },
        "b" => {
            let (major, minor) = parse_devno(detail)?;
            Entry::Block {
                major,
                minor,
                mode: parse_mode(mode)?,
            }
        }
        "c" => {
            let (major, minor) = parse_devno(detail)?;
            Entry::Char {
                major,
                minor,
                mode: parse_mode(mode)?,
            }
        }
        other => return Err(CaptureErrorKind::UnknownType(other.to_owned())),
    };
    tree.add(path, entry)
}

/// Reads the section-3 command blocks into the tree: the `walk` block line by line, the
/// `ls -l` blocks through [`parse_ls_line`].
fn add_dev_listing(cmd: &CommandCapture, tree: &mut CaptureTree) -> Result<(), CaptureError> {
    // Output line `i` (0-based) is capture line `cmd.line + 1 + i`.
    let at = |i: usize| {
        move |kind| CaptureError {
            line: cmd.line + 1 + i,
            kind,
        }
    };
    if cmd.command.starts_with("walk ") {
        for (i, line) in cmd
            .output
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.is_empty())
        {
            parse_walk_line(line, tree).map_err(at(i))?;
        }
        return Ok(());
    }
    if !cmd.command.contains("ls -l") {
        return Ok(());
    }
    // `ls -l DIR` lists DIR's children; `ls -l FILES... DIR` prints files with their full path
    // and then `DIR:` blocks.
    let mut dir: Option<String> = cmd
        .command
        .split_whitespace()
        .find(|w| w.starts_with('/') && !w.contains('*'))
        .filter(|_| !cmd.command.contains('*'))
        .map(str::to_owned);
    for (i, line) in cmd.output.lines().enumerate() {
        let err = at(i);
        if line.is_empty() || line.starts_with("total ") || line.starts_with("ls: ") {
            continue;
        }
        if let Some(d) = line.strip_suffix(':').filter(|d| d.starts_with('/')) {
            dir = Some(d.to_owned());
            continue;
        }
        let (name, entry) = parse_ls_line(line).map_err(err)?;
        let path = if name.starts_with('/') {
            name
        } else {
            match &dir {
                Some(d) => format!("{d}/{name}"),
                None => return Err(err(CaptureErrorKind::LsLine(line.to_owned()))),
            }
        };
        tree.add(&path, entry).map_err(err)?;
    }
    Ok(())
}

/// Parses the permission part of an `ls -l` mode string (`rwxr-x---`, with `s`/`t`).
fn parse_ls_perms(perms: &str) -> Option<u32> {
    let b = perms.as_bytes();
    if b.len() != 9 {
        return None;
    }
    let mut mode = 0u32;
    for (i, &c) in b.iter().enumerate() {
        let bit = 1u32 << (8 - i);
        let slot = i % 3;
        let set = match (slot, c) {
            (0, b'r') | (1, b'w') | (2, b'x' | b's' | b't') => true,
            (_, b'-') | (2, b'S' | b'T') => false,
            _ => return None,
        };
        if set {
            mode |= bit;
        }
        if matches!(c, b's' | b'S' | b't' | b'T') {
            mode |= match i {
                2 => 0o4000,
                5 => 0o2000,
                8 => 0o1000,
                _ => return None,
            };
        }
    }
    Some(mode)
}

/// Parses one busybox `ls -l` line: `MODE LINKS OWNER GROUP (SIZE | MAJ, MIN) MON DAY TIME NAME`.
fn parse_ls_line(line: &str) -> Result<(String, Entry), CaptureErrorKind> {
    let bad = || CaptureErrorKind::LsLine(line.to_owned());
    let mut rest = line;
    let take = |rest: &mut &str| -> Option<String> {
        let trimmed = rest.trim_start();
        let end = trimmed.find(' ').unwrap_or(trimmed.len());
        let (tok, tail) = trimmed.split_at(end);
        *rest = tail;
        (!tok.is_empty()).then(|| tok.to_owned())
    };
    let mode_str = take(&mut rest).ok_or_else(bad)?;
    let kind = mode_str.chars().next().ok_or_else(bad)?;
    let mode = mode_str.get(1..).and_then(parse_ls_perms).ok_or_else(bad)?;
    for _ in 0..3 {
        take(&mut rest).ok_or_else(bad)?; // links, owner, group
    }
    let devno = if matches!(kind, 'b' | 'c') {
        let major = take(&mut rest).ok_or_else(bad)?;
        let minor = take(&mut rest).ok_or_else(bad)?;
        let major: u32 = major
            .strip_suffix(',')
            .and_then(|m| m.parse().ok())
            .ok_or_else(bad)?;
        let minor: u32 = minor.parse().map_err(|_| bad())?;
        Some((major, minor))
    } else {
        take(&mut rest).ok_or_else(bad)?; // size
        None
    };
    for _ in 0..3 {
        take(&mut rest).ok_or_else(bad)?; // month, day, time or year
    }
    let name = rest.strip_prefix(' ').ok_or_else(bad)?;
    if name.is_empty() {
        return Err(bad());
    }
    let entry = match (kind, devno) {
        ('b', Some((major, minor))) => Entry::Block { major, minor, mode },
        ('c', Some((major, minor))) => Entry::Char { major, minor, mode },
        ('l', _) => {
            let (name, target) = name.split_once(" -> ").ok_or_else(bad)?;
            return Ok((
                name.to_owned(),
                Entry::Link {
                    target: target.to_owned(),
                },
            ));
        }
        ('d', _) => Entry::Dir { mode },
        _ => return Err(bad()),
    };
    Ok((name.to_owned(), entry))
}

#[cfg(test)]
mod tests;
