//! # brick-connectors
//!
//! Host-side volume connectors for Linux: iSCSI (and later Fibre Channel, NVMe-oF and local
//! devices), with os-brick's path-validation API (`get_volume_paths`, `get_search_path`,
//! `get_all_available_volumes`) next to connect, disconnect and extend.
//!
//! What this crate owns:
//! - validated identifiers ([`ids`]) and typed connection properties parsed once, at the edge,
//!   from the JSON that Cinder drivers emit ([`props`]);
//! - the [`host::Host`] port and [`host::RealHost`]: every side effect goes through it, every
//!   read is a file under the host root;
//! - the [`Connector`] trait and the connectors themselves.
//!
//! What it must not know: the simulator, the harness, scenario files, HTTP. It depends on no
//! other crate of the workspace, so a naming rule written here is checked against the
//! simulator's independent copy of the kernel's and udev's rules, never against itself.

pub mod connector;
pub mod error;
pub mod fc;
pub mod fs;
pub mod host;
pub mod hostinfo;
pub mod ids;
pub mod iscsi;
pub mod iscsiadm;
pub mod local;
pub mod multipath;
#[cfg(feature = "mutants")]
pub mod mutants;
pub mod naming;
pub mod nvmeof;
pub mod orphans;
pub mod props;
pub mod scsi;
#[cfg(test)]
mod testhost;

pub use connector::{
    Connector, ConnectorConfig, DeviceInfo, Diagnostic, DisconnectOptions, VolumePath, VolumePaths,
    connector_for,
};
pub use error::ConnectorError;
pub use fc::{FcConnector, FcHba};
pub use fs::{FsError, HostFs, HostView, ViewEntry};
pub use host::{Cmd, CmdOutput, Host, HostError, HostPath, RealHost};
pub use hostinfo::{HostConnectorProperties, connector_properties};
pub use ids::{
    AddressingMode, IdError, IdKind, Iqn, Lun, Nguid, Nqn, NvmeUuid, Portal, Wwid, Wwpn,
};
pub use iscsi::IscsiConnector;
pub use local::LocalConnector;
pub use nvmeof::NvmeofConnector;
pub use orphans::{IscsiRef, Orphan, OrphanKind, OrphanReason, OrphanReport, find_orphans};
pub use props::{
    AccessMode, Chap, ConnectionProperties, FcProperties, IscsiProperties, IscsiTarget,
    IscsiTransport, LocalProperties, NvmeofProperties, PropsError, Protocol,
};
