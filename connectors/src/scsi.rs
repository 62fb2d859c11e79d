//! SCSI helpers (os-brick `linuxscsi` SCSI half): identities from sysfs, device lookup
//! through an iSCSI session's sysfs tree, targeted scans, removal of SCSI devices and of the
//! `/dev/disk/by-id/scsi-*` links that pointed to them.
//!
//! Device names handled here (`sda`, `dm-0`) come from sysfs directory listings; they are
//! joined with [`HostPath::join`], which refuses `..` or `/`, so a hostile name cannot
//! direct a write outside `/sys/block/<name>/...`.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use crate::error::{ConnectorError, ErrorChain};
use crate::fs::HostFs;
use crate::host::{Cmd, Host, HostPath};
use crate::ids::Wwid;
use crate::iscsiadm::run_checked;
use crate::multipath::run_with_retries;

/// A SCSI address `host:channel:target:lun`; channel and target are `None` while unknown
/// (written as `-` wildcards in a scan).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hctl {
    /// The SCSI host number (`hostH`).
    pub host: u32,
    /// The channel, if known.
    pub channel: Option<u32>,
    /// The target id, if known.
    pub target: Option<u32>,
    /// The LUN as the kernel numbers it (after the addressing mode).
    pub lun: u64,
}

impl Hctl {
    /// The `C T L` text written to `/sys/class/scsi_host/hostH/scan`.
    pub fn scan_text(&self) -> String {
        let dash = |v: Option<u32>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
        format!("{} {} {}", dash(self.channel), dash(self.target), self.lun)
    }
}

impl fmt::Display for Hctl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dash = |v: Option<u32>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
        write!(
            f,
            "{}:{}:{}:{}",
            self.host,
            dash(self.channel),
            dash(self.target),
            self.lun
        )
    }
}

/// Parses `H:C:T:L` (all four numeric).
pub fn parse_hctl(s: &str) -> Option<(u32, u32, u32, u64)> {
    let mut it = s.split(':');
    let h = it.next()?.parse().ok()?;
    let c = it.next()?.parse().ok()?;
    let t = it.next()?.parse().ok()?;
    let l = it.next()?.parse().ok()?;
    if it.next().is_some() {
        return None;
    }
    Some((h, c, t, l))
}

/// Parses a `targetH:C:T` directory name.
fn parse_target_dir(name: &str) -> Option<(u32, u32, u32)> {
    let rest = name.strip_prefix("target")?;
    let mut it = rest.split(':');
    let h = it.next()?.parse().ok()?;
    let c = it.next()?.parse().ok()?;
    let t = it.next()?.parse().ok()?;
    if it.next().is_some() {
        return None;
    }
    Some((h, c, t))
}

/// `sde1` → `sde` (partition digits stripped, as os-brick's `strip('0123456789')` on the right).
fn whole_disk(name: &str) -> &str {
    name.trim_end_matches(|c: char| c.is_ascii_digit())
}

fn p(s: &str) -> Result<HostPath, ConnectorError> {
    Ok(HostPath::new(s)?)
}

/// `/sys/block/<dev>`.
pub(crate) fn sys_block(dev: &str) -> Result<HostPath, ConnectorError> {
    Ok(p("/sys/block")?.join(dev)?)
}

/// `/dev/<dev>`.
pub(crate) fn dev_node(dev: &str) -> Result<HostPath, ConnectorError> {
    Ok(p("/dev")?.join(dev)?)
}

/// os-brick's `linuxscsi.extend_volume` for the paths of one volume: rescan every SCSI device
/// behind them (the slaves of a multipath map included) through
/// `/sys/bus/scsi/drivers/sd/<H:C:T:L>/rescan`, then resize the map if there is one, and
/// return the new size in bytes (the map's, else the last device's).
pub(crate) fn extend_devices(
    host: &dyn Host,
    paths: &crate::connector::VolumePaths,
) -> Result<u64, ConnectorError> {
    let scsi = Scsi::new(host);
    let mut devices: Vec<String> = Vec::new();
    for vp in &paths.paths {
        let Some(dev) = vp.device.as_ref().map(|d| d.file_name().to_owned()) else {
            continue;
        };
        if dev.starts_with("dm-") {
            devices.extend(scsi.dm_slaves(&dev));
        } else if !devices.contains(&dev) {
            devices.push(dev);
        }
    }
    let mut size = None;
    for dev in &devices {
        let Some(hctl) = scsi.hctl_of_device(dev) else {
            tracing::warn!(device = dev, "no SCSI address for device; not rescanned");
            continue;
        };
        let rescan = p("/sys/bus/scsi/drivers/sd")?.join(&hctl)?.join("rescan")?;
        tracing::info!(device = dev, path = %rescan, "rescanning device size");
        host.write_control(&rescan, "1")?;
        size = Some(scsi.size_bytes(&dev_node(dev)?)?);
    }
    if let Some(dm) = scsi.find_multipath_dm(&devices) {
        let dm_path = dev_node(&dm)?;
        crate::multipath::Multipath::new(host).resize_map(dm_path.as_str())?;
        size = Some(scsi.size_bytes(&dm_path)?);
    }
    size.ok_or_else(|| ConnectorError::ExtendFailed {
        reason: format!("no SCSI device to rescan among {devices:?}"),
    })
}

/// SCSI operations on one host.
#[derive(Clone, Copy)]
pub(crate) struct Scsi<'h> {
    host: &'h dyn Host,
    fs: HostFs<'h>,
}

impl fmt::Debug for Scsi<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scsi")
            .field("root", &self.fs.root())
            .finish()
    }
}

impl<'h> Scsi<'h> {
    pub(crate) fn new(host: &'h dyn Host) -> Self {
        Self {
            host,
            fs: HostFs::of(host),
        }
    }

    // ---------------------------------------------------------------- identities

    /// The udev-form WWID of `dev` from `/sys/block/<dev>/device/wwid`.
    pub(crate) fn sysfs_wwid_of(&self, dev: &str) -> Result<Option<Wwid>, ConnectorError> {
        let attr = sys_block(dev)?.join("device")?.join("wwid")?;
        match self.fs.read_attr(&attr)? {
            Some(text) if !text.is_empty() => Ok(Some(Wwid::from_sysfs(&text)?)),
            _ => Ok(None),
        }
    }

    /// The first readable sysfs WWID among `devs` (os-brick `get_sysfs_wwid`).
    pub(crate) fn sysfs_wwid(&self, devs: &[String]) -> Option<Wwid> {
        devs.iter().find_map(|d| match self.sysfs_wwid_of(d) {
            Ok(w) => w,
            Err(e) => {
                tracing::debug!(dev = d, error = %e, "unreadable wwid");
                None
            }
        })
    }

    /// The multipath WWID of a dm device from `/sys/block/<dm>/dm/uuid` (`mpath-<wwid>`).
    pub(crate) fn dm_wwid(&self, dm: &str) -> Result<Option<Wwid>, ConnectorError> {
        let attr = sys_block(dm)?.join("dm")?.join("uuid")?;
        match self.fs.read_attr(&attr)? {
            Some(text) if !text.is_empty() => Ok(Some(Wwid::from_dm_uuid(&text)?)),
            _ => Ok(None),
        }
    }

    /// The identity of the device a volume path resolves to, for a `VolumePath` report: `None`
    /// with a diagnostic on `path` when the device is not directly under `/dev`, has no sysfs
    /// identity, or cannot be read.
    pub(crate) fn path_identity(
        &self,
        path: &HostPath,
        device: &HostPath,
        diagnostics: &mut Vec<crate::connector::Diagnostic>,
    ) -> Option<Wwid> {
        use crate::connector::Diagnostic;
        let Some(dev) = device
            .as_str()
            .strip_prefix("/dev/")
            .filter(|d| !d.contains('/'))
        else {
            diagnostics.push(Diagnostic::at(
                path,
                format!("{device} is not a device directly under /dev"),
            ));
            return None;
        };
        match self.device_identity(dev) {
            Ok(Some(w)) => Some(w),
            Ok(None) => {
                diagnostics.push(Diagnostic::at(
                    path,
                    format!("no sysfs identity for {device}"),
                ));
                None
            }
            Err(e) => {
                diagnostics.push(Diagnostic::at(path, format!("identity of {device}: {e}")));
                None
            }
        }
    }

    /// The identity of any block device: `dm/uuid` for `dm-*`, `device/wwid` otherwise.
    pub(crate) fn device_identity(&self, dev: &str) -> Result<Option<Wwid>, ConnectorError> {
        if dev.starts_with("dm-") {
            self.dm_wwid(dev)
        } else {
            self.sysfs_wwid_of(dev)
        }
    }

    /// os-brick `get_sysfs_wwn`: the dm's uuid if a dm is known; else the sysfs WWID if a
    /// `scsi-<wwid>` link exists; else the suffix of any `scsi-*` link that resolves to one
    /// of `devs` or to a dm whose slaves include one of them (arrays with several designators).
    pub(crate) fn sysfs_wwn(&self, devs: &[String], mpath: Option<&str>) -> Option<Wwid> {
        if let Some(dm) = mpath {
            match self.dm_wwid(dm) {
                Ok(Some(w)) => return Some(w),
                Ok(None) => {}
                Err(e) => tracing::warn!(dm, error = %e, "failed to read the dm uuid"),
            }
        }
        let wwid = self.sysfs_wwid(devs);
        let by_id = p("/dev/disk/by-id").ok()?;
        let links = self.fs.read_dir(&by_id).unwrap_or_default();
        #[cfg(feature = "mutants")]
        let direct_only = crate::mutants::active(crate::mutants::Mutant::DirectScsiLinksOnly);
        #[cfg(not(feature = "mutants"))]
        let direct_only = false;
        if let Some(w) = &wwid
            && links.iter().any(|l| l == &format!("scsi-{}", w.as_str()))
            && !direct_only
        {
            return wwid;
        }
        let wanted: BTreeSet<&str> = devs.iter().map(String::as_str).collect();
        for link in links.iter().filter(|l| l.starts_with("scsi-")) {
            let Ok(link_path) = by_id.join(link) else {
                continue;
            };
            if !self.fs.is_link(&link_path) || !self.fs.exists(&link_path) {
                continue;
            }
            let Ok(real) = self.fs.realpath(&link_path) else {
                continue;
            };
            let Some(name) = real.as_str().strip_prefix("/dev/") else {
                continue;
            };
            let hit = if name.starts_with("dm-") && direct_only {
                false
            } else if name.starts_with("dm-") {
                self.dm_slaves(name)
                    .iter()
                    .any(|s| wanted.contains(s.as_str()))
            } else {
                wanted.contains(name)
            };
            if hit {
                return Wwid::new(link.trim_start_matches("scsi-")).ok();
            }
        }
        None
    }

    /// The first `dm-*` holder of any of `devs` (os-brick `find_sysfs_multipath_dm`).
    pub(crate) fn find_multipath_dm(&self, devs: &[String]) -> Option<String> {
        for dev in devs {
            let Ok(holders) = sys_block(dev).and_then(|b| Ok(b.join("holders")?)) else {
                continue;
            };
            if let Some(dm) = self
                .fs
                .read_dir(&holders)
                .unwrap_or_default()
                .into_iter()
                .find(|h| h.starts_with("dm-"))
            {
                return Some(dm);
            }
        }
        None
    }

    /// `/sys/block/<dm>/dm/name`, `None` if unreadable or empty.
    pub(crate) fn dm_name(&self, dm: &str) -> Option<String> {
        let attr = sys_block(dm).ok()?.join("dm").ok()?.join("name").ok()?;
        self.fs
            .read_attr(&attr)
            .ok()
            .flatten()
            .filter(|n| !n.is_empty())
    }

    /// The slaves of a dm device (`/sys/class/block/<dm>/slaves`).
    pub(crate) fn dm_slaves(&self, dm: &str) -> Vec<String> {
        p("/sys/class/block")
            .and_then(|b| Ok(b.join(dm)?.join("slaves")?))
            .map(|s| self.fs.read_dir(&s).unwrap_or_default())
            .unwrap_or_default()
    }

    // ---------------------------------------------------------------- session tree

    /// os-brick `get_hctl(session, lun)`: finds the SCSI host of session `sid` under
    /// `/sys/class/iscsi_host/host*/device/session<sid>` and its `targetH:C:T` directory.
    /// Without a target directory yet, channel and target are unknown (`-`).
    pub(crate) fn get_hctl(&self, sid: u32, lun: u64) -> Result<Option<Hctl>, ConnectorError> {
        let class = p("/sys/class/iscsi_host")?;
        let session = format!("session{sid}");
        for host_name in self.fs.read_dir(&class)? {
            let Some(host_no) = host_name
                .strip_prefix("host")
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let sess_dir = class.join(&host_name)?.join("device")?.join(&session)?;
            if !self.fs.is_dir(&sess_dir) {
                continue;
            }
            let target = self
                .fs
                .read_dir(&sess_dir)?
                .iter()
                .find_map(|n| parse_target_dir(n));
            return Ok(Some(match target {
                Some((_, c, t)) => Hctl {
                    host: host_no,
                    channel: Some(c),
                    target: Some(t),
                    lun,
                },
                None => Hctl {
                    host: host_no,
                    channel: None,
                    target: None,
                    lun,
                },
            }));
        }
        Ok(None)
    }

    /// Writes `C T L` to `/sys/class/scsi_host/host<H>/scan`.
    pub(crate) fn scan(&self, hctl: &Hctl) -> Result<(), ConnectorError> {
        let scan = p("/sys/class/scsi_host")?
            .join(&format!("host{}", hctl.host))?
            .join("scan")?;
        let text = hctl.scan_text();
        #[cfg(feature = "mutants")]
        let text = if crate::mutants::active(crate::mutants::Mutant::WildcardScan) {
            "- - -".to_owned()
        } else {
            text
        };
        #[cfg(feature = "mutants")]
        let text = if crate::mutants::active(crate::mutants::Mutant::FcScanEveryLun) {
            format!("{} -", text.rsplit_once(' ').map_or("- -", |(ct, _)| ct))
        } else {
            text
        };
        tracing::info!(path = %scan, content = text, "scanning for LUN");
        self.host.write_control(&scan, &text)?;
        Ok(())
    }

    /// os-brick `device_name_by_hctl`: the block device at `hctl` in session `sid`,
    /// `/sys/class/scsi_host/host<H>/device/session<S>/target<H>:<C>:<T>/<H>:<C>:<T>:<L>/block/*`
    /// (unknown channel/target match any). Sorted, first (so `sda` beats `sda1`).
    pub(crate) fn device_by_hctl(
        &self,
        sid: u32,
        hctl: &Hctl,
    ) -> Result<Option<String>, ConnectorError> {
        let sess_dir = p("/sys/class/scsi_host")?
            .join(&format!("host{}", hctl.host))?
            .join("device")?
            .join(&format!("session{sid}"))?;
        let mut found = Vec::new();
        for tdir in self.fs.read_dir(&sess_dir)? {
            let Some((h, c, t)) = parse_target_dir(&tdir) else {
                continue;
            };
            if h != hctl.host
                || hctl.channel.is_some_and(|x| x != c)
                || hctl.target.is_some_and(|x| x != t)
            {
                continue;
            }
            let lun_dir = sess_dir
                .join(&tdir)?
                .join(&format!("{h}:{c}:{t}:{}", hctl.lun))?;
            #[cfg(feature = "mutants")]
            if crate::mutants::active(crate::mutants::Mutant::FirstDeviceOfSession) {
                for l in self
                    .fs
                    .read_dir(&sess_dir.join(&tdir)?)?
                    .iter()
                    .filter(|l| parse_hctl(l).is_some())
                {
                    found.extend(
                        self.fs
                            .read_dir(&sess_dir.join(&tdir)?.join(l)?.join("block")?)?,
                    );
                }
            }
            found.extend(self.fs.read_dir(&lun_dir.join("block")?)?);
        }
        found.sort();
        Ok(found.into_iter().next())
    }

    /// Every block device of session `sid` with its LUN: the glob
    /// `/sys/class/scsi_host/host*/device/session<S>/target*/*:*:*:*/block/*`, partitions
    /// folded into their disk.
    pub(crate) fn session_devices(&self, sid: u32) -> Result<Vec<(u64, String)>, ConnectorError> {
        let class = p("/sys/class/scsi_host")?;
        let session = format!("session{sid}");
        let mut out: BTreeSet<(u64, String)> = BTreeSet::new();
        for host_name in self.fs.read_dir(&class)? {
            if !host_name.starts_with("host") {
                continue;
            }
            let sess_dir = class.join(&host_name)?.join("device")?.join(&session)?;
            for tdir in self.fs.read_dir(&sess_dir)? {
                if !tdir.starts_with("target") {
                    continue;
                }
                let tpath = sess_dir.join(&tdir)?;
                for lun_name in self.fs.read_dir(&tpath)? {
                    let Some((_, _, _, lun)) = parse_hctl(&lun_name) else {
                        continue;
                    };
                    let block = tpath.join(&lun_name)?.join("block")?;
                    for dev in self.fs.read_dir(&block)? {
                        let disk = whole_disk(&dev);
                        if !disk.is_empty() {
                            out.insert((lun, disk.to_owned()));
                        }
                    }
                }
            }
        }
        Ok(out.into_iter().collect())
    }

    /// The `H:C:T:L` of a SCSI disk, from `/sys/block/<dev>/device` (resolved in-root).
    pub(crate) fn hctl_of_device(&self, dev: &str) -> Option<String> {
        let real = self
            .fs
            .realpath(&sys_block(dev).ok()?.join("device").ok()?)
            .ok()?;
        let name = real.file_name();
        parse_hctl(name).map(|_| name.to_owned())
    }

    // ---------------------------------------------------------------- removal

    /// `blockdev --flushbufs /dev/<dev>` if the node exists (3 attempts, 10 s apart, doubling).
    pub(crate) fn flush_device_io(&self, dev: &str) -> Result<(), ConnectorError> {
        let node = dev_node(dev)?;
        if !self.fs.exists(&node) {
            return Ok(());
        }
        tracing::debug!(device = %node, "flushing IO buffers");
        let cmd = Cmd::new("blockdev").args(["--flushbufs", node.as_str()]);
        run_with_retries(self.host, &cmd, 3, Duration::from_secs(10))
            .map(|_| ())
            .map_err(|e| match e {
                ConnectorError::CommandFailed {
                    stdout,
                    stderr,
                    status,
                    ..
                } => ConnectorError::DeviceFlushFailed {
                    device: node.to_string(),
                    output: format!("exit {status}: {stderr}{stdout}"),
                },
                other => other,
            })
    }

    /// os-brick `remove_scsi_device`: if `/sys/block/<dev>/device/delete` exists, optionally
    /// flush, then write `1` to it; each step under `force`.
    pub(crate) fn remove_scsi_device(
        &self,
        dev: &str,
        force: bool,
        chain: &mut ErrorChain,
        flush: bool,
    ) -> Result<(), ConnectorError> {
        let delete = sys_block(dev)?.join("device")?.join("delete")?;
        if self.fs.kind(&delete).is_none() {
            tracing::debug!(device = dev, "no delete attribute; device already gone");
            return Ok(());
        }
        let flush_force = force;
        #[cfg(feature = "mutants")]
        let flush_force =
            flush_force || crate::mutants::active(crate::mutants::Mutant::IgnoreDeviceFlushFailure);
        if flush {
            chain.step(flush_force, &format!("flushing /dev/{dev}"), || {
                self.flush_device_io(dev)
            })?;
        }
        tracing::info!(device = dev, path = %delete, "removing SCSI device");
        chain.step(force, &format!("removing /dev/{dev}"), || {
            Ok(self.host.write_control(&delete, "1")?)
        })?;
        Ok(())
    }

    /// Waits up to ~30 s (61 checks, 0.5 s apart, on the host clock) for `/dev/<name>` to vanish.
    pub(crate) fn wait_for_removal(&self, names: &[String]) -> Result<(), ConnectorError> {
        let mut remaining: Vec<String> = names.to_vec();
        for i in 0..61 {
            remaining.retain(|n| dev_node(n).is_ok_and(|node| self.fs.exists(&node)));
            if remaining.is_empty() {
                tracing::debug!(devices = ?names, "device nodes removed");
                return Ok(());
            }
            if i < 60 {
                self.host.sleep(Duration::from_millis(500));
            }
        }
        Err(ConnectorError::VolumePathNotRemoved { devices: remaining })
    }

    /// Unlinks every `/dev/disk/by-id/scsi-*` whose in-root realpath is `/dev/<name>` of one of
    /// `names` (errors are logged and ignored, as os-brick does).
    pub(crate) fn remove_scsi_symlinks(&self, names: &[String]) {
        let Ok(by_id) = p("/dev/disk/by-id") else {
            return;
        };
        let targets: BTreeSet<String> = names.iter().map(|n| format!("/dev/{n}")).collect();
        for link in self.fs.read_dir(&by_id).unwrap_or_default() {
            if !link.starts_with("scsi-") {
                continue;
            }
            let Ok(path) = by_id.join(&link) else {
                continue;
            };
            let Ok(real) = self.fs.realpath(&path) else {
                continue;
            };
            if targets.contains(real.as_str()) {
                tracing::info!(link = %path, device = %real, "removing stale by-id link");
                if let Err(e) = self.host.remove(&path) {
                    tracing::debug!(link = %path, error = %e, "could not remove link");
                }
            }
        }
    }

    /// `blockdev --getsize64 <path>`.
    pub(crate) fn size_bytes(&self, path: &HostPath) -> Result<u64, ConnectorError> {
        let cmd = Cmd::new("blockdev").args(["--getsize64", path.as_str()]);
        let out = run_checked(self.host, &cmd, &[0])?;
        out.stdout
            .trim()
            .parse()
            .map_err(|_| ConnectorError::ExtendFailed {
                reason: format!(
                    "blockdev --getsize64 {path} printed {:?}",
                    out.stdout.trim()
                ),
            })
    }
}

/// os-brick `requires_flush`: flush a single device only if it is the path that was used for
/// I/O, or if a non-multipath mapping above it (encryption) was used.
pub(crate) fn requires_flush(
    fs: &HostFs<'_>,
    dev_path: &HostPath,
    path_used: Option<&HostPath>,
    was_multipath: bool,
) -> bool {
    let Some(used) = path_used else {
        return false;
    };
    let (Ok(real_dev), Ok(real_used)) = (fs.realpath(dev_path), fs.realpath(used)) else {
        return false;
    };
    if real_dev == real_used {
        return true;
    }
    !was_multipath
        && real_used
            .parent()
            .is_none_or(|parent| parent.as_str() != "/dev")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hctl_text_and_parsing() {
        let h = Hctl {
            host: 3,
            channel: Some(4),
            target: Some(5),
            lun: 2,
        };
        assert_eq!(h.scan_text(), "4 5 2");
        assert_eq!(h.to_string(), "3:4:5:2");
        let w = Hctl {
            channel: None,
            target: None,
            ..h
        };
        assert_eq!(w.scan_text(), "- - 2");
        assert_eq!(parse_hctl("0:0:0:16640"), Some((0, 0, 0, 16640)));
        assert_eq!(parse_hctl("0:0:0"), None);
        assert_eq!(parse_hctl("a:0:0:1"), None);
        assert_eq!(parse_target_dir("target3:4:5"), Some((3, 4, 5)));
        assert_eq!(parse_target_dir("target6"), None);
        assert_eq!(whole_disk("sde1"), "sde");
        assert_eq!(whole_disk("sdaa"), "sdaa");
    }
}
