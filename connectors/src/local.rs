//! The local connector: a block device given directly by `device_path` (os-brick's
//! `LocalConnector`), e.g. a kernel loop device. Nothing is attached or detached: connect
//! checks that the device is there, disconnect touches nothing, and `get_volume_paths`
//! reports the path with its identity from sysfs.
//!
//! Differences from os-brick (which returns `device_path` unchecked):
//! - `connect_volume` requires `device_path` to resolve, inside the host root, to a block
//!   device directly under `/dev` that has a `/sys/class/block/<name>` entry; anything else
//!   (a missing path, a link leading to `/etc/passwd`, a directory) is refused;
//! - `get_volume_paths` reports the device and an identity (see [`LocalConnector::identity`]).

use crate::connector::{
    Connector, ConnectorConfig, DeviceInfo, Diagnostic, DisconnectOptions, VolumePath, VolumePaths,
};
use crate::error::ConnectorError;
use crate::fs::{FileKind, HostFs};
use crate::host::{Host, HostPath};
use crate::ids::{IdError, Wwid};
use crate::props::{ConnectionProperties, LocalProperties, Protocol};
use crate::scsi::Scsi;

/// The identity of a loop device: `loop:` followed by its backing file path, percent-encoded
/// so that it is a valid [`Wwid`] (`%` → `%25`, `/` → `%2F`, a `.` next to another `.` →
/// `%2E`, space and non-printable bytes → `%XX`). For example `/var/lib/vol-a.img` gives
/// `loop:%2Fvar%2Flib%2Fvol-a.img`. Decoding the part after `loop:` gives the path back.
/// Fails only for very long paths (a WWID is at most 256 bytes).
pub fn loop_identity(backing_file: &str) -> Result<Wwid, IdError> {
    let bytes = backing_file.as_bytes();
    let mut out = String::from("loop:");
    for (i, &b) in bytes.iter().enumerate() {
        let dot_run = b == b'.'
            && (bytes.get(i + 1) == Some(&b'.')
                || i.checked_sub(1).and_then(|j| bytes.get(j)) == Some(&b'.'));
        if b == b'%' || b == b'/' || dot_run || !(b.is_ascii_graphic()) {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(char::from(b));
        }
    }
    Wwid::new(&out)
}

/// How [`loop_identity`] encodes the kernel's ` (deleted)` suffix of an unlinked backing file.
const LOOP_DELETED: &str = "%20(deleted)";

/// The local connector. Built by [`crate::connector_for`] or [`LocalConnector::new`].
pub struct LocalConnector<'h> {
    host: &'h dyn Host,
}

impl std::fmt::Debug for LocalConnector<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalConnector")
            .field("root", &self.host.root())
            .finish()
    }
}

impl<'h> LocalConnector<'h> {
    /// A local connector on `host` (the configuration has no effect on it).
    pub fn new(host: &'h dyn Host, _config: ConnectorConfig) -> Self {
        Self { host }
    }

    fn fs(&self) -> HostFs<'h> {
        HostFs::of(self.host)
    }

    fn props<'p>(
        &self,
        props: &'p ConnectionProperties,
    ) -> Result<&'p LocalProperties, ConnectorError> {
        match props {
            ConnectionProperties::Local(p) => Ok(p),
            other => Err(ConnectorError::WrongProtocol {
                connector: Protocol::Local.to_string(),
                given: other.protocol().to_string(),
            }),
        }
    }

    /// Resolves `path` inside the root to a block device `/dev/<name>` with a sysfs entry;
    /// returns the resolved path.
    fn resolve_device(&self, path: &HostPath) -> Result<HostPath, ConnectorError> {
        let fs = self.fs();
        if !fs.exists(path) {
            return Err(ConnectorError::VolumeDeviceNotFound {
                what: format!("local device {path}"),
            });
        }
        let real = fs.realpath(path)?;
        let refuse = |reason: &str| ConnectorError::NotABlockDevice {
            path: path.to_string(),
            reason: format!("resolves to {real}, {reason}"),
        };
        let Some(name) = real.as_str().strip_prefix("/dev/") else {
            return Err(refuse("which is not under /dev"));
        };
        if name.contains('/') {
            return Err(refuse("which is not directly under /dev"));
        }
        if fs.kind(&real) == Some(FileKind::Dir) {
            return Err(refuse("which is a directory"));
        }
        let sys = HostPath::new("/sys/class/block")?.join(name)?;
        if !fs.exists(&sys) {
            return Err(refuse("which has no /sys/class/block entry"));
        }
        Ok(real)
    }

    /// The identity of block device `name` (`sda`, `loop0`, `nvme0n1`, `dm-0`) from sysfs:
    /// loop devices → [`loop_identity`] of `loop/backing_file`; SCSI disks → `device/wwid`
    /// in udev form (`3600...`); NVMe namespaces → `wwid` (`uuid.<uuid>`); multipath maps →
    /// `dm/uuid` without `mpath-`. `Ok(None)` when the kernel shows none (e.g. virtio disks).
    pub fn identity(&self, name: &str) -> Result<Option<Wwid>, ConnectorError> {
        let fs = self.fs();
        let dir = HostPath::new("/sys/class/block")?.join(name)?;
        let scsi = Scsi::new(self.host);
        if name.starts_with("loop") {
            let attr = dir.join("loop")?.join("backing_file")?;
            return match fs.read_attr(&attr)? {
                Some(b) if !b.is_empty() => Ok(Some(loop_identity(&b)?)),
                _ => Ok(None),
            };
        }
        if name.starts_with("dm-") {
            return scsi.dm_wwid(name);
        }
        if name.starts_with("nvme") {
            return match fs.read_attr(&dir.join("wwid")?)? {
                Some(w) if !w.is_empty() => Ok(Some(Wwid::new(&w)?)),
                _ => Ok(None),
            };
        }
        match fs.read_attr(&dir.join("device")?.join("wwid")?)? {
            Some(w) if !w.is_empty() => Ok(Some(Wwid::from_sysfs(&w)?)),
            _ => Ok(None),
        }
    }
}

impl LocalConnector<'_> {
    /// Why `device` has no identity, in words: a loop device that is not attached, a
    /// partition, or a device whose kernel driver shows none.
    fn no_identity_reason(&self, device: &HostPath) -> String {
        let name = device.file_name();
        let fs = self.fs();
        let dir = HostPath::new("/sys/class/block").and_then(|d| d.join(name));
        let has = |attr: &str| {
            dir.as_ref()
                .is_ok_and(|d| d.join(attr).is_ok_and(|a| fs.exists(&a)))
        };
        if has("partition") {
            format!("{device} is a partition: it has no identity of its own")
        } else if name.starts_with("loop") && !has("loop") {
            format!("loop device {device} is not attached (no loop/backing_file)")
        } else {
            format!("no sysfs identity for {device}")
        }
    }
}

impl Connector for LocalConnector<'_> {
    fn protocol(&self) -> Protocol {
        Protocol::Local
    }

    /// Checks that `device_path` is a block device under the root and returns it, as
    /// os-brick does, with type `local`.
    fn connect_volume(&self, props: &ConnectionProperties) -> Result<DeviceInfo, ConnectorError> {
        let p = self.props(props)?;
        self.resolve_device(&p.device_path)?;
        Ok(DeviceInfo {
            kind: "local".to_owned(),
            path: p.device_path.clone(),
            scsi_wwn: None,
            multipath_id: None,
        })
    }

    /// Does nothing: the device is not ours to remove.
    fn disconnect_volume(
        &self,
        props: &ConnectionProperties,
        _device_info: Option<&DeviceInfo>,
        _opts: DisconnectOptions,
    ) -> Result<(), ConnectorError> {
        self.props(props)?;
        Ok(())
    }

    fn get_volume_paths(
        &self,
        props: &ConnectionProperties,
    ) -> Result<VolumePaths, ConnectorError> {
        let p = self.props(props)?;
        let path = &p.device_path;
        let mut res = VolumePaths::default();
        if !self.fs().exists(path) {
            return Ok(res);
        }
        let device = match self.resolve_device(path) {
            Ok(d) => d,
            Err(e) => {
                res.diagnostics.push(Diagnostic::at(path, e.to_string()));
                return Ok(res);
            }
        };
        let wwid = match self.identity(device.file_name()) {
            Ok(Some(w)) => {
                if w.as_str().starts_with("loop:") && w.as_str().ends_with(LOOP_DELETED) {
                    res.diagnostics.push(Diagnostic::at(
                        path,
                        format!(
                            "the backing file of {device} was deleted: it no longer leads to a live volume (leaked detach?)"
                        ),
                    ));
                }
                Some(w)
            }
            Ok(None) => {
                res.diagnostics
                    .push(Diagnostic::at(path, self.no_identity_reason(&device)));
                None
            }
            Err(e) => {
                res.diagnostics
                    .push(Diagnostic::at(path, format!("identity of {device}: {e}")));
                None
            }
        };
        res.paths.push(VolumePath {
            path: path.clone(),
            device: Some(device),
            wwid,
        });
        Ok(res)
    }

    fn get_search_path(&self) -> Option<HostPath> {
        None
    }

    fn get_all_available_volumes(
        &self,
        _props: Option<&ConnectionProperties>,
    ) -> Result<Vec<HostPath>, ConnectorError> {
        Ok(Vec::new())
    }

    fn extend_volume(&self, props: &ConnectionProperties) -> Result<u64, ConnectorError> {
        let p = self.props(props)?;
        Scsi::new(self.host).size_bytes(&p.device_path)
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::symlink;
    use std::path::Path;

    use serde_json::json;

    use super::*;
    use crate::testhost::{FakeHost, materialize};

    const ISCSI_1LUN: &str = include_str!("../testdata/real-kernel/iscsi-1lun.walk");
    const NVME_1CTRL: &str = include_str!("../testdata/real-kernel/nvme-tcp-1ctrl.walk");

    fn write(root: &Path, path: &str, content: &str) {
        let p = root.join(path.trim_start_matches('/'));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }

    fn link(root: &Path, path: &str, target: &str) {
        let p = root.join(path.trim_start_matches('/'));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        symlink(target, p).unwrap();
    }

    /// A host with `/dev/loop0` backed by `/var/lib/brick/vol-a.img`, laid out as the kernel does.
    fn loop_host() -> FakeHost {
        let host = FakeHost::new();
        let root = host.root().to_path_buf();
        let dev = "/sys/devices/virtual/block/loop0";
        write(
            &root,
            &format!("{dev}/loop/backing_file"),
            "/var/lib/brick/vol-a.img\n",
        );
        write(&root, &format!("{dev}/size"), "65536\n");
        link(
            &root,
            "/sys/class/block/loop0",
            "../../devices/virtual/block/loop0",
        );
        link(&root, "/sys/block/loop0", "../devices/virtual/block/loop0");
        write(&root, "/dev/loop0", "");
        link(&root, "/dev/disk/by-id/brick-vol-a", "../../loop0");
        write(&root, "/etc/shadow", "root:*:\n");
        link(
            &root,
            "/dev/disk/by-id/evil",
            "../../../../../../etc/shadow",
        );
        fs::create_dir_all(root.join("dev/mapper")).unwrap();
        host
    }

    fn local(path: &str) -> ConnectionProperties {
        ConnectionProperties::from_json(&json!({"device_path": path}), Some(Protocol::Local))
            .unwrap()
    }

    #[test]
    fn loop_identity_is_a_valid_reversible_wwid() {
        let w = loop_identity("/var/lib/brick/vol-a.img").unwrap();
        assert_eq!(w.as_str(), "loop:%2Fvar%2Flib%2Fbrick%2Fvol-a.img");
        let w = loop_identity("/tmp/a..b/100% x.img (deleted)").unwrap();
        assert_eq!(
            w.as_str(),
            "loop:%2Ftmp%2Fa%2E%2Eb%2F100%25%20x.img%20(deleted)"
        );
        assert!(loop_identity(&format!("/{}", "a".repeat(300))).is_err());
    }

    #[test]
    fn loop_device_path_is_reported_with_its_identity() {
        let host = loop_host();
        let c = LocalConnector::new(&host, ConnectorConfig::default());
        for path in ["/dev/loop0", "/dev/disk/by-id/brick-vol-a"] {
            let props = local(path);
            let info = c.connect_volume(&props).unwrap();
            assert_eq!(
                serde_json::to_value(&info).unwrap(),
                json!({"type": "local", "path": path})
            );
            let paths = c.get_volume_paths(&props).unwrap();
            assert_eq!(paths.paths.len(), 1);
            assert_eq!(paths.paths[0].path.as_str(), path);
            assert_eq!(
                paths.paths[0].device.as_ref().unwrap().as_str(),
                "/dev/loop0"
            );
            assert_eq!(
                paths.paths[0].wwid.as_ref().unwrap().as_str(),
                "loop:%2Fvar%2Flib%2Fbrick%2Fvol-a.img"
            );
            assert!(paths.diagnostics.is_empty());
        }
        assert_eq!(c.get_search_path(), None);
        assert!(c.get_all_available_volumes(None).unwrap().is_empty());
    }

    #[test]
    fn deleted_detached_and_partition_loop_devices_are_explained() {
        let host = loop_host();
        let root = host.root().to_path_buf();
        let c = LocalConnector::new(&host, ConnectorConfig::default());
        // The backing file was unlinked while attached (the kernel appends " (deleted)").
        write(
            &root,
            "/sys/devices/virtual/block/loop0/loop/backing_file",
            "/var/lib/brick/vol-a.img (deleted)\n",
        );
        let paths = c.get_volume_paths(&local("/dev/loop0")).unwrap();
        assert_eq!(
            paths.paths[0].wwid.as_ref().unwrap().as_str(),
            "loop:%2Fvar%2Flib%2Fbrick%2Fvol-a.img%20(deleted)"
        );
        assert_eq!(paths.diagnostics.len(), 1);
        assert!(paths.diagnostics[0].message.contains("was deleted"));
        // A partition of it: no loop/ directory of its own.
        let part = "/sys/devices/virtual/block/loop0/loop0p1";
        write(&root, &format!("{part}/partition"), "1\n");
        link(
            &root,
            "/sys/class/block/loop0p1",
            "../../devices/virtual/block/loop0/loop0p1",
        );
        write(&root, "/dev/loop0p1", "");
        let paths = c.get_volume_paths(&local("/dev/loop0p1")).unwrap();
        assert_eq!(paths.paths[0].wwid, None);
        assert!(
            paths.diagnostics[0].message.contains("is a partition"),
            "{paths:?}"
        );
        // Detached: the kernel removes loop/, /dev/loop0 and /sys/class/block/loop0 stay.
        fs::remove_dir_all(root.join("sys/devices/virtual/block/loop0/loop")).unwrap();
        let paths = c.get_volume_paths(&local("/dev/loop0")).unwrap();
        assert_eq!(paths.paths[0].wwid, None);
        assert!(
            paths.diagnostics[0].message.contains("not attached"),
            "{paths:?}"
        );
    }

    #[test]
    fn disconnect_touches_nothing() {
        let host = loop_host();
        let c = LocalConnector::new(&host, ConnectorConfig::default());
        let forced = DisconnectOptions {
            force: true,
            ignore_errors: false,
        };
        c.disconnect_volume(&local("/dev/loop0"), None, forced)
            .unwrap();
        c.disconnect_volume(&local("/dev/sdq"), None, DisconnectOptions::default())
            .unwrap();
        assert!(host.events().is_empty(), "{:?}", host.events());
        assert!(host.exists("/dev/loop0") && host.exists("/sys/block/loop0"));
    }

    #[test]
    fn hostile_or_missing_device_paths_are_refused() {
        let host = loop_host();
        let c = LocalConnector::new(&host, ConnectorConfig::default());
        for (path, want) in [
            (
                "/dev/disk/by-id/evil",
                "resolves to /etc/shadow, which is not under /dev",
            ),
            ("/etc/shadow", "not under /dev"),
            ("/dev/mapper", "which is a directory"),
        ] {
            let err = c.connect_volume(&local(path)).unwrap_err();
            assert!(
                matches!(err, ConnectorError::NotABlockDevice { .. }),
                "{err}"
            );
            assert!(err.to_string().contains(want), "{err}");
            let paths = c.get_volume_paths(&local(path)).unwrap();
            assert!(paths.paths.is_empty());
            assert_eq!(paths.diagnostics.len(), 1);
        }
        let err = c.connect_volume(&local("/dev/sdq")).unwrap_err();
        assert!(
            matches!(err, ConnectorError::VolumeDeviceNotFound { .. }),
            "{err}"
        );
        assert!(
            c.get_volume_paths(&local("/dev/sdq"))
                .unwrap()
                .paths
                .is_empty()
        );
        // `..` never gets past the properties.
        assert!(
            ConnectionProperties::from_json(
                &json!({"device_path": "/dev/../etc/shadow"}),
                Some(Protocol::Local)
            )
            .is_err()
        );
        assert!(host.events().is_empty());
        let iscsi = ConnectionProperties::from_json(
            &json!({"target_portal": "10.0.2.2:3260", "target_iqn": "iqn.2010-10.org.openstack:v", "target_lun": 1}),
            Some(Protocol::Iscsi),
        )
        .unwrap();
        assert!(matches!(
            c.connect_volume(&iscsi).unwrap_err(),
            ConnectorError::WrongProtocol { .. }
        ));
    }

    #[test]
    fn scsi_and_nvme_identities_from_real_captures() {
        let host = FakeHost::new();
        materialize(host.root(), ISCSI_1LUN, |_| true);
        let c = LocalConnector::new(&host, ConnectorConfig::default());
        let paths = c.get_volume_paths(&local("/dev/sda")).unwrap();
        assert_eq!(
            paths.paths[0].wwid.as_ref().unwrap().as_str(),
            "360000000000000000e00000000010001"
        );
        let host = FakeHost::new();
        materialize(host.root(), NVME_1CTRL, |_| true);
        let c = LocalConnector::new(&host, ConnectorConfig::default());
        let paths = c.get_volume_paths(&local("/dev/nvme0n1")).unwrap();
        assert_eq!(
            paths.paths[0].wwid.as_ref().unwrap().as_str(),
            "uuid.50d85148-5f1d-4d77-9584-21f54a7af531"
        );
    }
}
