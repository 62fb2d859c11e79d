//! Synthetic host trees for the agent's tests and benchmarks: iSCSI sessions with many LUNs,
//! written straight to a directory with the real 6.1 kernel's sysfs shape
//! (`shared/reference/real-kernel/iscsi-2luns.txt`) and udev's links, without the simulator.
//!
//! Block device nodes are empty regular files (creating real ones needs root); everything
//! the connectors read treats them as existing devices.

use std::io;
use std::os::unix::fs::symlink;
use std::path::Path;

use serde_json::json;

/// One volume of a synthetic host: the properties Cinder would emit, and what the host has.
#[derive(Debug, Clone)]
pub struct SyntheticVolume {
    /// Cinder's connection properties, with the `driver_volume_type`/`data` wrapper.
    pub props: serde_json::Value,
    /// The by-path link written for it.
    pub by_path: String,
    /// The device (`sdX`).
    pub device: String,
    /// Its udev-form WWID.
    pub wwid: String,
}

/// The kernel's `sd` naming: `sda`…`sdz`, `sdaa`…`sdzz`, `sdaaa`… (index from 0).
pub fn sd_name(mut index: usize) -> String {
    let mut letters = Vec::new();
    loop {
        letters.push(b'a' + (index % 26) as u8);
        if index < 26 {
            break;
        }
        index = index / 26 - 1;
    }
    letters.reverse();
    format!("sd{}", String::from_utf8_lossy(&letters))
}

/// The udev WWID of LUN `lun` of session `session` (NAA 6, unique per pair).
pub fn synthetic_wwid(session: u32, lun: u32) -> String {
    format!("36001405{session:08x}{lun:016x}")
}

fn write(root: &Path, path: &str, content: &str) -> io::Result<()> {
    let real = root.join(path.trim_start_matches('/'));
    if let Some(parent) = real.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(real, content)
}

fn link(root: &Path, path: &str, target: &str) -> io::Result<()> {
    let real = root.join(path.trim_start_matches('/'));
    if let Some(parent) = real.parent() {
        std::fs::create_dir_all(parent)?;
    }
    symlink(target, real)
}

/// Writes `sessions` iSCSI sessions (one target each, portal `10.0.<s/256>.<s%256>:3260`)
/// with `luns` disks each (LUNs 1..=luns) under `root`, plus the initiator name. Returns the
/// volumes in session, then LUN order.
pub fn write_iscsi_host(root: &Path, sessions: u32, luns: u32) -> io::Result<Vec<SyntheticVolume>> {
    write(
        root,
        "/etc/iscsi/initiatorname.iscsi",
        "InitiatorName=iqn.1993-08.org.debian:01:synthetic\n",
    )?;
    std::fs::create_dir_all(root.join("dev/disk/by-path"))?;
    std::fs::create_dir_all(root.join("dev/disk/by-id"))?;
    std::fs::create_dir_all(root.join("sys/block"))?;
    let mut out = Vec::new();
    let mut disk = 0usize;
    for s in 1..=sessions {
        let h = s - 1;
        let addr = format!("10.0.{}.{}", s / 256, s % 256);
        let portal = format!("{addr}:3260");
        let iqn = format!("iqn.2010-10.org.openstack:volume-{s:05}");
        let sdir = format!("/sys/devices/platform/host{h}/session{s}");
        let sess = format!("{sdir}/iscsi_session/session{s}");
        write(root, &format!("{sess}/targetname"), &format!("{iqn}\n"))?;
        write(root, &format!("{sess}/state"), "LOGGED_IN\n")?;
        link(
            root,
            &format!("{sess}/device"),
            &format!("../../../session{s}"),
        )?;
        link(
            root,
            &format!("/sys/class/iscsi_session/session{s}"),
            &format!("../../devices/platform/host{h}/session{s}/iscsi_session/session{s}"),
        )?;
        let conn = format!("{sdir}/connection{s}:0/iscsi_connection/connection{s}:0");
        for (attr, value) in [
            ("address", addr.as_str()),
            ("persistent_address", addr.as_str()),
            ("port", "3260"),
            ("persistent_port", "3260"),
            ("state", "up"),
        ] {
            write(root, &format!("{conn}/{attr}"), &format!("{value}\n"))?;
        }
        link(
            root,
            &format!("/sys/class/iscsi_connection/connection{s}:0"),
            &format!(
                "../../devices/platform/host{h}/session{s}/connection{s}:0/iscsi_connection/connection{s}:0"
            ),
        )?;
        for l in 1..=luns {
            let name = sd_name(disk);
            disk += 1;
            let wwid = synthetic_wwid(s, l);
            let sdev = format!("{sdir}/target{h}:0:0/{h}:0:0:{l}");
            write(
                root,
                &format!("{sdev}/wwid"),
                &format!("naa.{}\n", &wwid[1..]),
            )?;
            write(root, &format!("{sdev}/state"), "running\n")?;
            write(root, &format!("{sdev}/type"), "0\n")?;
            let blk = format!("{sdev}/block/{name}");
            std::fs::create_dir_all(root.join(format!("{blk}/holders").trim_start_matches('/')))?;
            write(root, &format!("{blk}/dev"), &format!("8:{}\n", disk * 16))?;
            write(root, &format!("{blk}/size"), "2097152\n")?;
            link(
                root,
                &format!("{blk}/device"),
                &format!("../../../{h}:0:0:{l}"),
            )?;
            link(
                root,
                &format!("/sys/block/{name}"),
                &format!(
                    "../devices/platform/host{h}/session{s}/target{h}:0:0/{h}:0:0:{l}/block/{name}"
                ),
            )?;
            write(root, &format!("/dev/{name}"), "")?;
            let lun_name = brick_connectors::naming::format_lun(u64::from(l));
            let by_path = format!("ip-{portal}-iscsi-{iqn}-lun-{lun_name}");
            link(
                root,
                &format!("/dev/disk/by-path/{by_path}"),
                &format!("../../{name}"),
            )?;
            link(
                root,
                &format!("/dev/disk/by-id/scsi-{wwid}"),
                &format!("../../{name}"),
            )?;
            out.push(SyntheticVolume {
                props: json!({
                    "driver_volume_type": "iscsi",
                    "data": {
                        "target_portal": portal,
                        "target_iqn": iqn,
                        "target_lun": l,
                        "target_discovered": false,
                        "volume_id": format!("vol-{s}-{l}"),
                    }
                }),
                by_path: format!("/dev/disk/by-path/{by_path}"),
                device: name,
                wwid,
            });
        }
    }
    Ok(out)
}

/// Every entry under `root` (relative path → `dir`, `link -> target`, or the file's bytes
/// as lossy text, with its mode), to assert that a tree was left byte-identical.
pub fn snapshot(root: &Path) -> io::Result<std::collections::BTreeMap<String, String>> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            let meta = std::fs::symlink_metadata(&path)?;
            let mode = meta.permissions().mode();
            let value = if meta.file_type().is_symlink() {
                format!("link -> {}", std::fs::read_link(&path)?.display())
            } else if meta.is_dir() {
                stack.push(path);
                format!("dir {mode:o}")
            } else {
                let bytes = std::fs::read(&path)?;
                format!("file {mode:o} {}", String::from_utf8_lossy(&bytes))
            };
            out.insert(rel, value);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sd_names_follow_the_kernel() {
        assert_eq!(sd_name(0), "sda");
        assert_eq!(sd_name(25), "sdz");
        assert_eq!(sd_name(26), "sdaa");
        assert_eq!(sd_name(701), "sdzz");
        assert_eq!(sd_name(702), "sdaaa");
    }

    #[test]
    fn synthetic_host_is_clean_and_complete() {
        let dir = tempfile::tempdir().unwrap();
        let vols = write_iscsi_host(dir.path(), 2, 3).unwrap();
        assert_eq!(vols.len(), 6);
        assert_eq!(vols[5].device, "sdf");
        let host = brick_connectors::RealHost::new(dir.path());
        let report = brick_connectors::find_orphans(&host);
        assert!(report.is_clean(), "{:#?}", report.orphans);
        assert!(report.diagnostics.is_empty(), "{:#?}", report.diagnostics);
    }
}
