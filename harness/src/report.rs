//! Failure reports: what a person needs to see when a check fails.

use std::fmt::Write as _;
use std::path::Path;

/// Lists the tree under `root` in the real-kernel capture format (`PATH TYPE MODE DETAIL`,
/// TAB separated, sorted), with host paths (no root prefix). Files show their first line.
pub fn listing(root: &Path) -> String {
    let mut lines = Vec::new();
    walk(root, root, &mut lines);
    lines.sort();
    let mut out = String::new();
    for line in lines {
        let _ = writeln!(out, "{line}");
    }
    out
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let host = format!(
            "/{}",
            path.strip_prefix(root).unwrap_or(&path).to_string_lossy()
        );
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let mode = {
            use std::os::unix::fs::PermissionsExt as _;
            meta.permissions().mode() & 0o7777
        };
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path)
                .map(|t| t.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.push(format!("{host}\tl\t{mode:04o}\t{target}"));
        } else if meta.is_dir() {
            out.push(format!("{host}\td\t{mode:04o}\t"));
            walk(root, &path, out);
        } else {
            let content = if mode & 0o444 == 0 {
                "<write-only>".to_owned()
            } else {
                std::fs::read(&path)
                    .map(|b| escape(&b))
                    .unwrap_or_else(|e| format!("<err-read: {e}>"))
            };
            out.push(format!("{host}\tf\t{mode:04o}\t{content}"));
        }
    }
}

fn escape(bytes: &[u8]) -> String {
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    if bytes.is_empty() {
        return "<empty>".to_owned();
    }
    let mut s = String::new();
    for &b in bytes.iter().take(256) {
        match b {
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(char::from(b)),
            _ => {
                let _ = write!(s, "\\x{b:02x}");
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_shows_links_files_and_write_only_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("sys/block")).unwrap();
        std::fs::write(root.join("sys/block/size"), "65536\n").unwrap();
        std::fs::write(root.join("sys/block/delete"), "").unwrap();
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(
                root.join("sys/block/delete"),
                std::fs::Permissions::from_mode(0o200),
            )
            .unwrap();
        }
        std::os::unix::fs::symlink("../../sda", root.join("sys/block/sda")).unwrap();
        let text = listing(root);
        assert!(text.contains("/sys/block/size\tf\t0644\t65536\n"), "{text}");
        assert!(
            text.contains("/sys/block/delete\tf\t0200\t<write-only>\n"),
            "{text}"
        );
        assert!(
            text.contains("/sys/block/sda\tl\t0777\t../../sda\n"),
            "{text}"
        );
    }
}
