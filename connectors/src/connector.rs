//! The [`Connector`] trait (os-brick's `InitiatorConnector`), its result types and the factory.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::ConnectorError;
use crate::host::{Host, HostPath};
use crate::ids::Wwid;
use crate::props::{ConnectionProperties, Protocol};

/// Attaches, detaches and inspects volumes of one protocol on one host.
///
/// Object safe: `Box<dyn Connector>` is what [`connector_for`] returns. Every read goes to
/// the host's root, every side effect through its [`Host`] port.
pub trait Connector {
    /// The protocol this connector handles.
    fn protocol(&self) -> Protocol;

    /// Attaches the volume and returns the block device to use.
    fn connect_volume(&self, props: &ConnectionProperties) -> Result<DeviceInfo, ConnectorError>;

    /// Detaches the volume: flushes and removes its devices, logs out of sessions nothing
    /// else uses. `device_info` is what [`Connector::connect_volume`] returned, if known.
    fn disconnect_volume(
        &self,
        props: &ConnectionProperties,
        device_info: Option<&DeviceInfo>,
        opts: DisconnectOptions,
    ) -> Result<(), ConnectorError>;

    /// The paths that already exist on the host for this volume (never logs in).
    fn get_volume_paths(&self, props: &ConnectionProperties)
    -> Result<VolumePaths, ConnectorError>;

    /// The directory this connector looks for devices in, if any.
    fn get_search_path(&self) -> Option<HostPath>;

    /// Every entry of the search directory (os-brick's path-validation API).
    fn get_all_available_volumes(
        &self,
        props: Option<&ConnectionProperties>,
    ) -> Result<Vec<HostPath>, ConnectorError>;

    /// Refreshes the kernel's idea of the volume size after an array-side extend; returns
    /// the new size in bytes.
    fn extend_volume(&self, props: &ConnectionProperties) -> Result<u64, ConnectorError>;
}

/// The result of an attach: os-brick's `device_info` dict
/// (`{"type": "block", "path": "/dev/sda", "scsi_wwn": "3600...", "multipath_id": "3600..."}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// Always `"block"` for the SCSI connectors.
    #[serde(rename = "type")]
    pub kind: String,
    /// The device to use: `/dev/sdX` (single path) or `/dev/dm-N` (multipath).
    pub path: HostPath,
    /// The volume's WWID as read from sysfs, if it could be read (os-brick writes `''`).
    #[serde(
        default,
        deserialize_with = "empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub scsi_wwn: Option<Wwid>,
    /// The multipath map's WWID when `path` is a dm device.
    #[serde(
        default,
        deserialize_with = "empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub multipath_id: Option<Wwid>,
}

impl DeviceInfo {
    /// A block device result.
    pub fn block(path: HostPath, scsi_wwn: Option<Wwid>, multipath_id: Option<Wwid>) -> Self {
        Self {
            kind: "block".to_owned(),
            path,
            scsi_wwn,
            multipath_id,
        }
    }
}

fn empty_as_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Wwid>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    match s.as_deref() {
        None | Some("") => Ok(None),
        Some(w) => Wwid::new(w).map(Some).map_err(serde::de::Error::custom),
    }
}

/// How hard a disconnect tries (os-brick's `force` and `ignore_errors`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DisconnectOptions {
    /// Keep going past failures (a failed flush included: data loss accepted) and report them all.
    pub force: bool,
    /// With `force`: do not return the collected errors, only log them.
    pub ignore_errors: bool,
}

/// The existing paths of a volume, plus what could not be read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VolumePaths {
    /// Paths that exist and lead to a device.
    pub paths: Vec<VolumePath>,
    /// What was skipped and why (dangling links, unreadable attributes).
    pub diagnostics: Vec<Diagnostic>,
}

impl VolumePaths {
    /// Just the path names, as os-brick's `get_volume_paths` list.
    pub fn path_names(&self) -> Vec<&HostPath> {
        self.paths.iter().map(|p| &p.path).collect()
    }
}

/// One existing path of a volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumePath {
    /// The path, e.g. `/dev/disk/by-path/ip-10.0.2.2:3260-iscsi-iqn...-lun-1`.
    pub path: HostPath,
    /// What it resolves to (`/dev/sda`), inside the host root.
    pub device: Option<HostPath>,
    /// That device's identity from sysfs (`device/wwid`, or `dm/uuid` for a dm device).
    pub wwid: Option<Wwid>,
}

/// Something discovery could not read or chose to skip; never hides the rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// The path concerned, if any.
    pub path: Option<HostPath>,
    /// What happened.
    pub message: String,
}

impl Diagnostic {
    /// A diagnostic about `path`.
    pub fn at(path: &HostPath, message: impl Into<String>) -> Self {
        Self {
            path: Some(path.clone()),
            message: message.into(),
        }
    }
}

/// Settings of a connector (os-brick's factory arguments and `[os_brick]` options).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorConfig {
    /// Attach through dm-multipath (all portals, `/dev/dm-N` result).
    pub use_multipath: bool,
    /// Rescans per portal before giving up on a device (os-brick default 3).
    pub device_scan_attempts: u32,
    /// Fail instead of warning when `use_multipath` is set but multipathd is not running.
    pub enforce_multipath: bool,
    /// The iSCSI iface/transport: `default` (tcp) or `iser`.
    pub transport: String,
    /// Attempts of `multipath -C` while waiting for a map to be ready (os-brick 4).
    pub wait_mpath_device_attempts: u32,
    /// First interval between those attempts, doubled each time (os-brick 1 s).
    pub wait_mpath_device_interval: Duration,
}

impl Default for ConnectorConfig {
    fn default() -> Self {
        Self {
            use_multipath: false,
            device_scan_attempts: 3,
            enforce_multipath: false,
            transport: "default".to_owned(),
            wait_mpath_device_attempts: 4,
            wait_mpath_device_interval: Duration::from_secs(1),
        }
    }
}

/// The connector for `protocol` on `host` (every [`Protocol`] has one; the `Result` is kept
/// for protocols that may be added without a connector).
pub fn connector_for<'h>(
    protocol: Protocol,
    host: &'h dyn Host,
    config: ConnectorConfig,
) -> Result<Box<dyn Connector + 'h>, ConnectorError> {
    Ok(match protocol {
        Protocol::Iscsi => Box::new(crate::iscsi::IscsiConnector::new(host, config)),
        Protocol::FibreChannel => Box::new(crate::fc::FcConnector::new(host, config)),
        Protocol::Nvmeof => Box::new(crate::nvmeof::NvmeofConnector::new(host, config)),
        Protocol::Local => Box::new(crate::local::LocalConnector::new(host, config)),
    })
}

/// os-brick's generic `get_all_available_volumes`: every entry of the search directory, as host
/// paths; nothing when there is no search path or it is not a directory.
pub(crate) fn search_dir_entries(
    fs: &crate::fs::HostFs<'_>,
    dir: Option<HostPath>,
) -> Result<Vec<HostPath>, ConnectorError> {
    let Some(dir) = dir else {
        return Ok(Vec::new());
    };
    if !fs.is_dir(&dir) {
        return Ok(Vec::new());
    }
    Ok(fs
        .read_dir(&dir)?
        .iter()
        .filter_map(|n| dir.join(n).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_info_round_trips_os_brick_dicts() {
        let single: DeviceInfo = serde_json::from_str(
            r#"{"type": "block", "scsi_wwn": "360000000000000000e00000000010001", "path": "/dev/sda"}"#,
        )
        .unwrap();
        assert_eq!(single.path.as_str(), "/dev/sda");
        assert_eq!(
            single.scsi_wwn.as_ref().map(Wwid::as_str),
            Some("360000000000000000e00000000010001")
        );
        assert_eq!(single.multipath_id, None);
        let empty: DeviceInfo =
            serde_json::from_str(r#"{"type": "block", "scsi_wwn": "", "path": "/dev/sdb"}"#)
                .unwrap();
        assert_eq!(empty.scsi_wwn, None);
        let mp = DeviceInfo::block(
            HostPath::new("/dev/dm-0").unwrap(),
            Some(Wwid::new("3600a").unwrap()),
            Some(Wwid::new("3600a").unwrap()),
        );
        let json = serde_json::to_value(&mp).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type": "block", "path": "/dev/dm-0", "scsi_wwn": "3600a", "multipath_id": "3600a"})
        );
        let bad = serde_json::from_str::<DeviceInfo>(r#"{"type": "block", "path": "/dev/../etc"}"#);
        assert!(bad.is_err());
    }

    #[test]
    fn volume_paths_serialize_with_device_and_wwid() {
        let vp = VolumePaths {
            paths: vec![VolumePath {
                path: HostPath::new("/dev/disk/by-path/ip-1.2.3.4:3260-iscsi-iqn.x:y-lun-1")
                    .unwrap(),
                device: Some(HostPath::new("/dev/sda").unwrap()),
                wwid: Some(Wwid::new("3600").unwrap()),
            }],
            diagnostics: vec![],
        };
        let json = serde_json::to_value(&vp).unwrap();
        assert_eq!(json["paths"][0]["device"], "/dev/sda");
        assert_eq!(json["paths"][0]["wwid"], "3600");
        assert_eq!(vp.path_names().len(), 1);
    }
}
