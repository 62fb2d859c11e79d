//! The host's own connector properties (os-brick's `get_connector_properties`): what a
//! compute host tells Cinder about itself so the array can export a volume to it.
//!
//! Everything is *read* from files under the host root; nothing runs a command. That makes
//! it usable by the read-only path agent, which must never spawn processes. The price is
//! the `multipath` flag: os-brick runs `multipathd show status`; here it is inferred from
//! multipathd's pid file (`/run/multipathd.pid`, written by multipathd at start and removed
//! at a clean exit), which says "multipathd looks present" rather than "answers requests".

use serde::Serialize;

use crate::connector::Diagnostic;
use crate::fs::{FsError, HostFs};
use crate::host::{Host, HostPath};
use crate::ids::{Iqn, Nqn, Wwpn};
use crate::iscsiadm::parse_initiator_name;

/// Where open-iscsi keeps the initiator name (`InitiatorName=iqn...`).
pub const INITIATOR_NAME_FILE: &str = "/etc/iscsi/initiatorname.iscsi";
/// Where nvme-cli keeps the host NQN.
pub const HOST_NQN_FILE: &str = "/etc/nvme/hostnqn";
/// multipathd's pid file; its presence is what [`HostConnectorProperties::multipath`] reports.
pub const MULTIPATHD_PID_FILE: &str = "/run/multipathd.pid";
/// The Fibre Channel HBAs (`hostN/{port_name,node_name,port_state}`).
pub const FC_HOST_CLASS: &str = "/sys/class/fc_host";

/// What a host reports about itself to Cinder (os-brick's connector properties dict).
///
/// Serialized with os-brick's key names (`initiator`, `wwpns`, `wwnns`, `nqn`, `host`,
/// `multipath`); absent values are left out, as os-brick leaves out keys it cannot fill.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HostConnectorProperties {
    /// The iSCSI initiator IQN from `/etc/iscsi/initiatorname.iscsi`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initiator: Option<Iqn>,
    /// WWPNs of the Fibre Channel ports that are `Online`, lower case without `0x`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub wwpns: Vec<Wwpn>,
    /// WWNNs of the same ports, in the same order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub wwnns: Vec<Wwpn>,
    /// The NVMe host NQN from `/etc/nvme/hostnqn`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nqn: Option<Nqn>,
    /// The host name from `/etc/hostname` (or `/proc/sys/kernel/hostname`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Whether multipathd looks present (its pid file exists and holds a pid). No command is
    /// run to ask it, unlike os-brick's `multipathd show status`.
    pub multipath: bool,
    /// What could not be read or was invalid (never stops the rest).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<Diagnostic>,
}

/// Reads the host's connector properties from files under its root. Never fails: anything
/// unreadable or invalid is left out and explained in `diagnostics`.
pub fn connector_properties(host: &dyn Host) -> HostConnectorProperties {
    let fs = HostFs::of(host);
    let mut out = HostConnectorProperties::default();
    let diags = &mut out.diagnostics;

    if let Some((path, text)) = read_opt(&fs, INITIATOR_NAME_FILE, diags) {
        match parse_initiator_name(&text) {
            Some(name) => match Iqn::new_lenient(&name) {
                Ok(iqn) => out.initiator = Some(iqn),
                Err(e) => diags.push(Diagnostic::at(
                    &path,
                    format!("invalid initiator name: {e}"),
                )),
            },
            None => diags.push(Diagnostic::at(&path, "no `InitiatorName=` line")),
        }
    }

    if let Some((path, text)) = read_opt(&fs, HOST_NQN_FILE, diags) {
        match Nqn::new_lenient(text.trim()) {
            Ok(nqn) => out.nqn = Some(nqn),
            Err(e) => diags.push(Diagnostic::at(&path, format!("invalid host NQN: {e}"))),
        }
    }

    out.host = ["/etc/hostname", "/proc/sys/kernel/hostname"]
        .into_iter()
        .find_map(|p| read_opt(&fs, p, diags))
        .and_then(|(path, text)| {
            let name = text.lines().next().unwrap_or("").trim().to_owned();
            let ok = !name.is_empty()
                && name.len() <= 253
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
            if !ok {
                diags.push(Diagnostic::at(&path, "host name is not a valid DNS name"));
            }
            ok.then_some(name)
        });

    fc_ports(&fs, &mut out);

    out.multipath = match read_opt(&fs, MULTIPATHD_PID_FILE, &mut out.diagnostics) {
        Some((_, text)) => text.trim().parse::<u32>().is_ok_and(|pid| pid > 0),
        None => false,
    };
    out
}

/// Reads `path` if it exists; errors become diagnostics.
fn read_opt(
    fs: &HostFs<'_>,
    path: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<(HostPath, String)> {
    let path = HostPath::new(path).ok()?;
    match fs.read_attr(&path) {
        Ok(Some(text)) => Some((path, text)),
        Ok(None) => None,
        Err(e) => {
            diags.push(Diagnostic::at(&path, e.to_string()));
            None
        }
    }
}

fn fc_ports(fs: &HostFs<'_>, out: &mut HostConnectorProperties) {
    let Ok(class) = HostPath::new(FC_HOST_CLASS) else {
        return;
    };
    let hosts = match fs.read_dir(&class) {
        Ok(h) => h,
        Err(e) => {
            out.diagnostics.push(Diagnostic::at(&class, e.to_string()));
            return;
        }
    };
    for name in hosts {
        let Ok(dir) = class.join(&name) else { continue };
        let read =
            |attr: &str| -> Result<Option<String>, FsError> { fs.read_attr(&dir.join(attr)?) };
        match read("port_state") {
            Ok(Some(state)) if state == "Online" => {}
            Ok(_) => continue,
            Err(e) => {
                out.diagnostics.push(Diagnostic::at(&dir, e.to_string()));
                continue;
            }
        }
        let port = read("port_name").map(|v| v.map(|s| Wwpn::new(&s)));
        let node = read("node_name").map(|v| v.map(|s| Wwpn::new(&s)));
        match (port, node) {
            (Ok(Some(Ok(p))), Ok(Some(Ok(n)))) => {
                out.wwpns.push(p);
                out.wwnns.push(n);
            }
            (p, n) => {
                let why = [("port_name", p), ("node_name", n)]
                    .into_iter()
                    .filter_map(|(attr, v)| match v {
                        Ok(Some(Ok(_))) => None,
                        Ok(None) => Some(format!("{attr} missing")),
                        Ok(Some(Err(e))) => Some(format!("{attr}: {e}")),
                        Err(e) => Some(format!("{attr}: {e}")),
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                out.diagnostics.push(Diagnostic::at(
                    &dir,
                    format!("online FC port skipped: {why}"),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::RealHost;
    use std::path::Path;

    fn write(root: &Path, path: &str, content: &str) {
        let real = root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(real.parent().unwrap()).unwrap();
        std::fs::write(real, content).unwrap();
    }

    fn fc_port(root: &Path, host: &str, port: &str, node: &str, state: &str) {
        write(
            root,
            &format!("/sys/class/fc_host/{host}/port_name"),
            &format!("{port}\n"),
        );
        write(
            root,
            &format!("/sys/class/fc_host/{host}/node_name"),
            &format!("{node}\n"),
        );
        write(
            root,
            &format!("/sys/class/fc_host/{host}/port_state"),
            &format!("{state}\n"),
        );
    }

    #[test]
    fn reads_every_identity_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(
            root,
            INITIATOR_NAME_FILE,
            "## DO NOT EDIT\nInitiatorName=iqn.1993-08.org.debian:01:simguest01\n",
        );
        write(
            root,
            HOST_NQN_FILE,
            "nqn.2014-08.org.nvmexpress:uuid:5b4e7a52-6f1c-4a1e-9d4b-1a2b3c4d5e6f\n",
        );
        write(root, "/etc/hostname", "compute-1\n");
        write(root, MULTIPATHD_PID_FILE, "412\n");
        fc_port(
            root,
            "host5",
            "0x500A098188FE6E8C",
            "0x500a098088fe6e8c",
            "Online",
        );
        fc_port(
            root,
            "host6",
            "0x500a098188fe6e8d",
            "0x500a098088fe6e8d",
            "Linkdown",
        );
        let props = connector_properties(&RealHost::new(root));
        assert_eq!(
            props.initiator.as_ref().map(Iqn::as_str),
            Some("iqn.1993-08.org.debian:01:simguest01")
        );
        assert_eq!(
            props.nqn.as_ref().map(Nqn::as_str),
            Some("nqn.2014-08.org.nvmexpress:uuid:5b4e7a52-6f1c-4a1e-9d4b-1a2b3c4d5e6f")
        );
        assert_eq!(props.host.as_deref(), Some("compute-1"));
        assert!(props.multipath);
        let json = serde_json::to_value(&props).unwrap();
        assert_eq!(json["wwpns"], serde_json::json!(["500a098188fe6e8c"]));
        assert_eq!(json["wwnns"], serde_json::json!(["500a098088fe6e8c"]));
        assert!(props.diagnostics.is_empty(), "{:?}", props.diagnostics);
    }

    #[test]
    fn empty_root_gives_empty_properties() {
        let dir = tempfile::tempdir().unwrap();
        let props = connector_properties(&RealHost::new(dir.path()));
        assert_eq!(props, HostConnectorProperties::default());
        assert_eq!(
            serde_json::to_value(&props).unwrap(),
            serde_json::json!({"multipath": false})
        );
    }

    #[test]
    fn garbage_is_diagnosed_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(
            root,
            INITIATOR_NAME_FILE,
            "InitiatorName=../../etc/passwd\n",
        );
        write(root, HOST_NQN_FILE, "\u{0}\u{1}garbage/..\n");
        write(root, MULTIPATHD_PID_FILE, "not a pid");
        fc_port(root, "host5", "zz", "0x500a098088fe6e8c", "Online");
        let real = root.join("etc/hostname");
        std::fs::write(real, [0xff, 0xfe]).unwrap();
        let props = connector_properties(&RealHost::new(root));
        assert_eq!(props.initiator, None);
        assert_eq!(props.nqn, None);
        assert_eq!(props.host, None);
        assert!(props.wwpns.is_empty() && props.wwnns.is_empty());
        assert!(!props.multipath);
        let text = format!("{:?}", props.diagnostics);
        for needle in ["initiatorname.iscsi", "hostnqn", "hostname", "port_name"] {
            assert!(text.contains(needle), "{needle} not diagnosed: {text}");
        }
    }
}
