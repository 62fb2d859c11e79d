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
            Ok(Some(w)) => Some(w),
            Ok(None) => {
                res.diagnostics.push(Diagnostic::at(
                    path,
                    format!("no sysfs identity for {device}"),
                ));
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
