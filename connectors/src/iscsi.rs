//! The iSCSI connector: os-brick's converged `ISCSIConnector` behaviour (login with manual
//! scans, targeted `C T L` scans, device lookup through the session's sysfs tree, single and
//! multipath attach, shared-target-aware detach with force semantics), run sequentially on
//! the [`Host`] port.
//!
//! Deliberate differences from os-brick (fixes of its latent bugs):
//! - LUNs are integers end to end (no string/int mismatch on detach);
//! - after a failed multipath flush with `force`, `multipathd del map` gets the *map name*
//!   and the check uses the *dm device* (os-brick passes the name where a dm is expected);
//! - the login loop is bounded (os-brick loops while `--login` "succeeds" without a session);
//! - `get_volume_paths` reads sessions from sysfs (no process) and reports each path's device
//!   and identity; dangling links become diagnostics instead of paths.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::connector::{
    Connector, ConnectorConfig, DeviceInfo, Diagnostic, DisconnectOptions, VolumePath, VolumePaths,
};
use crate::error::{ConnectorError, ErrorChain};
use crate::fs::HostFs;
use crate::host::{Cmd, Host, HostPath};
use crate::ids::{AddressingMode, Iqn, Lun, Portal, Wwid};
use crate::iscsiadm::{
    self, DiscoveryDbEntry, Iscsiadm, NodeEntry, SessionEntry, discoverydb_portals, node_cmd,
};
use crate::multipath::Multipath;
use crate::naming;
use crate::props::{ConnectionProperties, IscsiProperties, IscsiTransport, Protocol};
use crate::scsi::{Scsi, dev_node, requires_flush};

/// Logins tried per portal before giving up when `--login` succeeds but no session shows.
const MAX_LOGIN_ATTEMPTS: u32 = 3;
/// Attempts of the whole single/multipath connect on `VolumeDeviceNotFound` (os-brick `retry`).
const CONNECT_ATTEMPTS: u32 = 3;
/// Seconds given to the dm to appear after every portal was tried (os-brick: 10 s).
const MPATH_GRACE: Duration = Duration::from_secs(10);

/// One (portal, IQN, LUN) of a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    portal: Portal,
    iqn: Iqn,
    lun: Lun,
}

impl Target {
    fn describe(&self) -> String {
        format!("{} {} lun {}", self.portal, self.iqn, self.lun)
    }
}

/// CHAP settings for `iscsiadm` updates.
#[derive(Debug, Clone)]
struct Auth {
    method: String,
    username: String,
    password: String,
}

/// The iSCSI properties in the shape the connector works with.
#[derive(Debug, Clone)]
struct Volume {
    targets: Vec<Target>,
    primary: Target,
    /// Whether the properties listed portals and IQNs (plural keys): no discovery needed.
    explicit_targets: bool,
    /// Whether the properties listed IQNs per portal (`target_iqns`).
    explicit_iqns: bool,
    auth: Option<Auth>,
    discovery_auth: Option<Auth>,
    mode: AddressingMode,
    device_path: Option<HostPath>,
    /// The iface for node creation and discovery: `default` or `iser`.
    iface: &'static str,
}

impl Volume {
    /// The LUN number as the kernel sees it (after the addressing mode).
    fn kernel_lun(&self, t: &Target) -> u64 {
        t.lun.for_addressing(self.mode)
    }
}

/// The iSCSI connector. Built by [`crate::connector_for`] or [`IscsiConnector::new`].
pub struct IscsiConnector<'h> {
    host: &'h dyn Host,
    config: ConnectorConfig,
}

impl std::fmt::Debug for IscsiConnector<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IscsiConnector")
            .field("root", &self.host.root())
            .field("config", &self.config)
            .finish()
    }
}

/// What one portal's connection attempt left.
#[derive(Debug, Default)]
struct PortalOutcome {
    device: Option<String>,
}

impl<'h> IscsiConnector<'h> {
    /// An iSCSI connector acting on `host`.
    pub fn new(host: &'h dyn Host, config: ConnectorConfig) -> Self {
        Self { host, config }
    }

    fn adm(&self) -> Iscsiadm<'h> {
        Iscsiadm::new(self.host)
    }

    fn scsi(&self) -> Scsi<'h> {
        Scsi::new(self.host)
    }

    fn mp(&self) -> Multipath<'h> {
        Multipath::new(self.host)
    }

    fn fs(&self) -> HostFs<'h> {
        HostFs::of(self.host)
    }

    fn volume(&self, props: &ConnectionProperties) -> Result<Volume, ConnectorError> {
        match props {
            ConnectionProperties::Iscsi(p) => Ok(volume_from(p, &self.config)),
            other => Err(ConnectorError::WrongProtocol {
                connector: Protocol::Iscsi.to_string(),
                given: other.protocol().to_string(),
            }),
        }
    }

    /// os-brick `check_multipath`: with `use_multipath`, multipathd must run (error if
    /// enforced, warning otherwise).
    fn check_multipath(&self) -> Result<(), ConnectorError> {
        if !self.config.use_multipath {
            return Ok(());
        }
        if let Err(reason) = self.mp().status() {
            if self.config.enforce_multipath {
                return Err(ConnectorError::MultipathRequired { reason });
            }
            tracing::warn!(reason, "multipath requested but multipathd is not running");
        }
        Ok(())
    }

    // ------------------------------------------------------------------ login

    /// Runs a node-scoped iscsiadm command.
    fn node(
        &self,
        t: &Target,
        args: &[&str],
        ok: &[i32],
    ) -> Result<crate::host::CmdOutput, ConnectorError> {
        self.adm()
            .run(&node_cmd(t.iqn.as_str(), t.portal.as_str(), args), ok)
    }

    fn node_update(
        &self,
        t: &Target,
        key: &str,
        value: &str,
        ok: &[i32],
    ) -> Result<crate::host::CmdOutput, ConnectorError> {
        self.node(t, &["--op", "update", "-n", key, "-v", value], ok)
    }

    /// os-brick `_connect_to_iscsi_portal`: node record, manual scan, CHAP, login; returns
    /// the session id and whether manual scans are in effect, or `None` if login failed.
    fn login(&self, vol: &Volume, t: &Target) -> Result<Option<(u32, bool)>, ConnectorError> {
        tracing::info!(portal = %t.portal, iqn = %t.iqn, "connecting to iSCSI portal");
        let probe = self.node(t, &[], &[0, 21, 255])?;
        if !probe.stderr.trim().is_empty() {
            tracing::debug!(portal = %t.portal, iqn = %t.iqn, "creating node record");
            let mut attempt = 1u32;
            loop {
                let out = self.node(t, &["--interface", vol.iface, "--op", "new"], &[0, 6])?;
                if out.stderr.trim().is_empty() || attempt >= 3 {
                    break;
                }
                tracing::debug!(
                    stderr = out.stderr.trim(),
                    attempt,
                    "node creation reported an error; retrying"
                );
                self.host.sleep(Duration::from_secs(1));
                attempt += 1;
            }
        }
        // Manual scan mode on every connect: discovery may have re-created the node with
        // automatic scans (os-brick d310e06).
        let scan_mode = "manual";
        #[cfg(feature = "mutants")]
        let scan_mode = if crate::mutants::active(crate::mutants::Mutant::NoManualScan) {
            "auto"
        } else {
            scan_mode
        };
        let scan = self
            .node_update(t, "node.session.scan", scan_mode, &[])
            .or_else(|e| match e {
                ConnectorError::CommandFailed { stderr, .. } => Ok(crate::host::CmdOutput {
                    status: 1,
                    stdout: String::new(),
                    stderr,
                }),
                other => Err(other),
            })?;
        let manual_scan = scan.stderr.trim().is_empty();
        if let Some(auth) = &vol.auth {
            self.node_update(t, "node.session.auth.authmethod", &auth.method, &[0])?;
            self.node_update(t, "node.session.auth.username", &auth.username, &[0])?;
            self.node_update(t, "node.session.auth.password", &auth.password, &[0])?;
        }
        for _ in 0..MAX_LOGIN_ATTEMPTS {
            if let Some(sid) = self.find_session(t)? {
                tracing::debug!(portal = %t.portal, sid, "session found");
                return Ok(Some((sid, manual_scan)));
            }
            if let Err(e) = self.node(t, &["--login"], &[0, 15, 255]) {
                tracing::warn!(portal = %t.portal, iqn = %t.iqn, error = %e, "login failed");
                return Ok(None);
            }
            self.node_update(t, "node.startup", "automatic", &[0])?;
        }
        let sid = self.find_session(t)?;
        if sid.is_none() {
            tracing::warn!(portal = %t.portal, iqn = %t.iqn, "no session after login");
        }
        Ok(sid.map(|s| (s, manual_scan)))
    }

    /// The session to `t` in `iscsiadm -m session` (portal compared case-insensitively).
    fn find_session(&self, t: &Target) -> Result<Option<u32>, ConnectorError> {
        Ok(self
            .adm()
            .sessions()?
            .iter()
            .find(|s| session_matches(s, &t.portal, &t.iqn))
            .map(|s| s.sid))
    }

    /// os-brick `_connect_vol`: login, then scan for the LUN and look it up by HCTL in the
    /// session's sysfs tree, once a second, rescanning after 4, 9, 16 s.
    fn connect_vol(&self, vol: &Volume, t: &Target) -> PortalOutcome {
        let login = match self.login(vol, t) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(portal = %t.portal, error = %e, "exception connecting to portal");
                None
            }
        };
        let Some((sid, manual_scan)) = login else {
            tracing::warn!(portal = %t.portal, "failed to connect to iSCSI portal");
            return PortalOutcome::default();
        };
        let rescans = i64::from(self.config.device_scan_attempts);
        let lun = vol.kernel_lun(t);
        #[cfg(feature = "mutants")]
        let lun = if crate::mutants::active(crate::mutants::Mutant::ScanIgnoresAddressing) {
            t.lun.get()
        } else {
            lun
        };
        let (mut num_rescans, mut next_scan): (i64, i64) =
            if manual_scan { (-1, 0) } else { (0, 4) };
        let mut do_scans = rescans > 0 || manual_scan;
        let mut hctl = None;
        let mut device = None;
        // os-brick loops forever if the session never shows in sysfs (no HCTL, so no rescan is
        // ever counted); bound the loop by the full rescan schedule instead.
        let budget: i64 = 5 + (0..=rescans.max(0)).map(|n| (n + 2).pow(2)).sum::<i64>();
        let mut iterations: i64 = 0;
        while do_scans {
            iterations += 1;
            let step = (|| -> Result<(), ConnectorError> {
                if hctl.is_none() {
                    hctl = self.scsi().get_hctl(sid, lun)?;
                }
                if let Some(h) = &hctl {
                    if next_scan <= 0 {
                        num_rescans += 1;
                        self.scsi().scan(h)?;
                        next_scan = (num_rescans + 2).pow(2);
                    }
                    device = self.scsi().device_by_hctl(sid, h)?;
                }
                Ok(())
            })();
            if let Err(e) = step {
                tracing::warn!(portal = %t.portal, error = %e, "exception scanning");
            }
            do_scans = num_rescans <= rescans && device.is_none() && iterations < budget;
            if do_scans {
                self.host.sleep(Duration::from_secs(1));
                next_scan -= 1;
            }
        }
        match &device {
            Some(d) => tracing::info!(portal = %t.portal, lun, device = d, "device found"),
            None => tracing::warn!(portal = %t.portal, lun, "LUN not found in sysfs after login"),
        }
        PortalOutcome { device }
    }

    // ------------------------------------------------------------------ connect

    fn connect_single(&self, vol: &Volume) -> Result<DeviceInfo, ConnectorError> {
        for t in &vol.targets {
            let outcome = self.connect_vol(vol, t);
            if let Some(dev) = outcome.device {
                let found = vec![dev.clone()];
                let mut wwn = None;
                for i in 0..10 {
                    wwn = self.scsi().sysfs_wwn(&found, None);
                    if wwn.is_some() {
                        break;
                    }
                    if i < 9 {
                        self.host.sleep(Duration::from_secs(1));
                    }
                }
                if wwn.is_none() {
                    tracing::debug!(device = dev, "could not find the WWN");
                }
                return Ok(DeviceInfo::block(dev_node(&dev)?, wwn, None));
            }
            // A failed portal must not leave its node, session or devices behind.
            tracing::info!(target = t.describe(), "cleaning up failed portal");
            if let Err(e) = self.cleanup(
                vol,
                Some(vec![t.clone()]),
                DisconnectOptions {
                    force: true,
                    ignore_errors: true,
                },
                None,
                false,
            ) {
                tracing::warn!(error = %e, "cleanup of failed portal");
            }
        }
        Err(ConnectorError::VolumeDeviceNotFound {
            what: describe_targets(&vol.targets),
        })
    }

    fn connect_multipath(&self, vol: &Volume) -> Result<DeviceInfo, ConnectorError> {
        let targets = self.ips_iqns_luns(vol, true, false)?;
        let mut found: Vec<String> = Vec::new();
        let mut just_added: Vec<String> = Vec::new();
        let mut wwn: Option<Wwid> = None;
        let mut mpath: Option<String> = None;
        let mut wwn_added = false;
        let scsi = self.scsi();
        let mp = self.mp();
        let mut progress = |found: &[String],
                            just_added: &mut Vec<String>,
                            wwn: &mut Option<Wwid>,
                            mpath: &mut Option<String>| {
            if found.is_empty() {
                return;
            }
            if wwn.is_none() {
                *wwn = scsi.sysfs_wwn(found, mpath.as_deref());
            }
            if mpath.is_none() {
                *mpath = scsi.find_multipath_dm(found);
                if let Some(w) = wwn.as_ref()
                    && mpath.is_none()
                    && !wwn_added
                {
                    wwn_added = mp.add_wwid(w.as_str());
                    while mpath.is_none() && !just_added.is_empty() {
                        let dev = just_added.remove(0);
                        tracing::debug!(device = dev, "asking multipathd to add path");
                        mp.add_path(&dev);
                        *mpath = scsi.find_multipath_dm(found);
                    }
                }
            }
        };
        for t in &targets {
            let outcome = self.connect_vol(vol, t);
            if let Some(dev) = outcome.device
                && !found.contains(&dev)
            {
                found.push(dev.clone());
                just_added.push(dev);
            }
            progress(&found, &mut just_added, &mut wwn, &mut mpath);
        }
        #[cfg(feature = "mutants")]
        if crate::mutants::active(crate::mutants::Mutant::NoMultipathGrace)
            && mpath.is_none()
            && let Some(first) = found.first()
        {
            return Ok(DeviceInfo::block(dev_node(first)?, wwn, None));
        }
        if !found.is_empty() && mpath.is_none() {
            tracing::debug!("all portals tried, giving the dm 10 seconds to appear");
            let deadline = self.host.now() + MPATH_GRACE;
            while mpath.is_none() && self.host.now() < deadline {
                self.host.sleep(Duration::from_secs(1));
                progress(&found, &mut just_added, &mut wwn, &mut mpath);
            }
        }
        let Some(first) = found.first() else {
            return Err(ConnectorError::VolumeDeviceNotFound {
                what: describe_targets(&targets),
            });
        };
        let Some(dm) = mpath else {
            tracing::warn!("no dm was created, connection to volume is probably bad");
            return Ok(DeviceInfo::block(dev_node(first)?, wwn, None));
        };
        if let Err(e) = mp.wait_ready(
            &dm,
            self.config.wait_mpath_device_attempts,
            self.config.wait_mpath_device_interval,
        ) {
            tracing::warn!(dm, error = %e, "multipath -C did not report the map ready");
        }
        let wwn = scsi.sysfs_wwn(&found, Some(&dm)).or(wwn);
        Ok(DeviceInfo::block(dev_node(&dm)?, wwn.clone(), wwn))
    }

    // ------------------------------------------------------------------ targets

    /// os-brick `_get_ips_iqns_luns`: explicit targets; else sendtargets discovery (connect)
    /// or the discoverydb (cleanup), falling back to the properties on a user disconnect.
    fn ips_iqns_luns(
        &self,
        vol: &Volume,
        discover: bool,
        is_disconnect: bool,
    ) -> Result<Vec<Target>, ConnectorError> {
        #[cfg(feature = "mutants")]
        let vol =
            &if discover && crate::mutants::active(crate::mutants::Mutant::ConnectAllDiscovered) {
                Volume {
                    explicit_targets: false,
                    explicit_iqns: false,
                    ..vol.clone()
                }
            } else {
                vol.clone()
            };
        if vol.explicit_targets {
            return Ok(vol.targets.clone());
        }
        let found = if discover {
            self.discover_portals(vol)
        } else {
            self.discoverydb_targets(vol)
        };
        let mut targets = match found {
            Ok(t) if !t.is_empty() => t,
            Ok(_) | Err(_) if is_disconnect => {
                tracing::debug!("no discovery information; using the properties' targets");
                return Ok(vol.targets.clone());
            }
            Ok(_) => {
                return Err(ConnectorError::TargetPortalsNotFound {
                    portal: vol.primary.portal.to_string(),
                    reason: "discovery returned no targets".to_owned(),
                });
            }
            Err(e) => {
                return Err(ConnectorError::TargetPortalsNotFound {
                    portal: vol.primary.portal.to_string(),
                    reason: e.to_string(),
                });
            }
        };
        if !vol.explicit_iqns {
            // Shared-IQN arrays: if every discovered (portal, lun) also appears with the main
            // IQN, use the main IQN everywhere.
            let main = &vol.primary.iqn;
            let all: BTreeSet<(String, u64)> = targets
                .iter()
                .map(|t| (t.portal.to_string(), t.lun.get()))
                .collect();
            let with_main: BTreeSet<(String, u64)> = targets
                .iter()
                .filter(|t| &t.iqn == main)
                .map(|t| (t.portal.to_string(), t.lun.get()))
                .collect();
            if all.len() == with_main.len() {
                let mut seen = BTreeSet::new();
                targets = targets
                    .into_iter()
                    .filter(|t| seen.insert((t.portal.to_string(), t.lun.get())))
                    .map(|t| Target {
                        iqn: main.clone(),
                        ..t
                    })
                    .collect();
            }
        }
        Ok(targets)
    }

    /// Pairs discovered `(portal, iqn)`s with LUNs: the properties' LUNs in order, or the
    /// primary LUN for each.
    fn with_luns(&self, vol: &Volume, pairs: Vec<(String, String)>) -> Vec<Target> {
        let luns: Vec<Lun> = if vol.targets.len() > 1 {
            vol.targets.iter().map(|t| t.lun).collect()
        } else {
            Vec::new()
        };
        pairs
            .into_iter()
            .enumerate()
            .filter_map(|(i, (portal, iqn))| {
                let portal = Portal::new(&portal)
                    .inspect_err(|e| tracing::warn!(error = %e, "skipping discovered portal"))
                    .ok()?;
                let iqn = Iqn::new_lenient(&iqn)
                    .inspect_err(|e| tracing::warn!(error = %e, "skipping discovered IQN"))
                    .ok()?;
                let lun = luns.get(i).copied().unwrap_or(vol.primary.lun);
                Some(Target { portal, iqn, lun })
            })
            .collect()
    }

    fn discoverydb_targets(&self, vol: &Volume) -> Result<Vec<Target>, ConnectorError> {
        let entries: Vec<DiscoveryDbEntry> = self.adm().discoverydb()?;
        let pairs = discoverydb_portals(&entries, vol.primary.portal.as_str(), vol.iface);
        Ok(self.with_luns(vol, pairs))
    }

    /// Sendtargets discovery on the primary portal, restoring `node.startup` values the
    /// discovery reset (os-brick bug 1670237).
    fn discover_portals(&self, vol: &Volume) -> Result<Vec<Target>, ConnectorError> {
        let portal = vol.primary.portal.as_str();
        let iface = vol.iface;
        let before = self.node_startups(portal);
        let out = if let Some(auth) = &vol.discovery_auth {
            let update = Cmd::new("iscsiadm")
                .args([
                    "-m",
                    "discoverydb",
                    "-t",
                    "sendtargets",
                    "-I",
                    iface,
                    "-p",
                    portal,
                ])
                .args(["--op", "update"])
                .args([
                    "-n",
                    "discovery.sendtargets.auth.authmethod",
                    "-v",
                    &auth.method,
                ])
                .args([
                    "-n",
                    "discovery.sendtargets.auth.username",
                    "-v",
                    &auth.username,
                ])
                .args([
                    "-n",
                    "discovery.sendtargets.auth.password",
                    "-v",
                    &auth.password,
                ]);
            match self.adm().run(&update, &[0]) {
                Ok(_) => {}
                Err(ConnectorError::CommandFailed { status: 6, .. }) => {
                    let new = Cmd::new("iscsiadm").args([
                        "-m",
                        "discoverydb",
                        "-t",
                        "sendtargets",
                        "-p",
                        portal,
                        "-I",
                        iface,
                        "--op",
                        "new",
                    ]);
                    self.adm().run(&new, &[0, 255])?;
                    self.adm().run(&update, &[0])?;
                }
                Err(e) => return Err(e),
            }
            let discover = Cmd::new("iscsiadm").args([
                "-m",
                "discoverydb",
                "-t",
                "sendtargets",
                "-I",
                iface,
                "-p",
                portal,
                "--discover",
            ]);
            self.adm().run(&discover, &[0, 255])?
        } else {
            let discover = Cmd::new("iscsiadm").args([
                "-m",
                "discovery",
                "-t",
                "sendtargets",
                "-I",
                iface,
                "-p",
                portal,
            ]);
            self.adm().run(&discover, &[0, 255])?
        };
        self.restore_node_startups(vol, portal, &before);
        let pairs = iscsiadm::parse_sendtargets(&out.stdout)
            .into_iter()
            .map(|d| (d.portal, d.iqn))
            .collect();
        Ok(self.with_luns(vol, pairs))
    }

    fn node_startups(&self, portal: &str) -> BTreeMap<String, String> {
        let cmd = Cmd::new("iscsiadm").args(["-m", "node", "--op", "show", "-p", portal]);
        self.adm()
            .run(&cmd, &[0, 21])
            .map(|o| iscsiadm::parse_node_startups(&o.stdout))
            .unwrap_or_default()
    }

    fn restore_node_startups(&self, vol: &Volume, portal: &str, before: &BTreeMap<String, String>) {
        for (iqn, now) in self.node_startups(portal) {
            if let Some(old) = before.get(&iqn)
                && *old != now
            {
                let Ok(iqn) = Iqn::new_lenient(&iqn) else {
                    continue;
                };
                let t = Target {
                    portal: vol.primary.portal.clone(),
                    iqn,
                    lun: vol.primary.lun,
                };
                if let Err(e) = self.node_update(&t, "node.startup", old, &[0]) {
                    tracing::warn!(error = %e, "could not restore node.startup");
                }
            }
        }
    }

    // ------------------------------------------------------------------ disconnect

    /// os-brick `_cleanup_connection`.
    fn cleanup(
        &self,
        vol: &Volume,
        targets: Option<Vec<Target>>,
        opts: DisconnectOptions,
        device_info: Option<&DeviceInfo>,
        is_disconnect: bool,
    ) -> Result<(), ConnectorError> {
        let force = opts.force;
        #[cfg(feature = "mutants")]
        let force = force && !crate::mutants::active(crate::mutants::Mutant::ForceIgnored);
        let mut chain = ErrorChain::new();
        let targets = match targets {
            Some(t) => t,
            None => match self.ips_iqns_luns(vol, false, is_disconnect) {
                Ok(t) => t,
                Err(e) => {
                    tracing::debug!(error = %e, "skipping cleanup: no target information");
                    return Ok(());
                }
            },
        };
        let devices_map = self.connection_devices(vol, &targets)?;
        let mut remove: BTreeSet<String> = BTreeSet::new();
        for ConnDevices { belong, .. } in &devices_map {
            remove.extend(belong.iter().cloned());
        }
        #[cfg(feature = "mutants")]
        if crate::mutants::active(crate::mutants::Mutant::OnlyDeviceInfoDevices) {
            remove.retain(|d| device_info.is_some_and(|i| i.path.file_name() == d));
        }
        let remove: Vec<String> = remove.into_iter().collect();
        let path_used = device_info
            .map(|d| d.path.clone())
            .or_else(|| vol.device_path.clone());
        let was_multipath = path_used
            .as_ref()
            .is_some_and(|p| p.as_str().starts_with("/dev/dm-") || p.as_str().contains("mpath"));
        tracing::info!(devices = ?remove, ?path_used, was_multipath, force, "removing connection");
        let failed_map = self.remove_connection(
            &remove,
            force,
            &mut chain,
            path_used.as_ref(),
            was_multipath,
        )?;
        for ConnDevices {
            portal,
            iqn,
            others,
            ..
        } in &devices_map
        {
            #[cfg(feature = "mutants")]
            if crate::mutants::active(crate::mutants::Mutant::NoLogout) {
                continue;
            }
            #[cfg(feature = "mutants")]
            let others = if crate::mutants::active(crate::mutants::Mutant::LogoutWithOthers) {
                &BTreeSet::new()
            } else {
                others
            };
            if !others.is_empty() {
                tracing::info!(%portal, %iqn, others = ?others, "session carries other LUNs; staying logged in");
                continue;
            }
            chain.step(force, &format!("disconnect from {portal} {iqn}"), || {
                self.logout(portal, iqn)
            })?;
        }
        if let Some((dm, name)) = failed_map {
            tracing::info!(dm, map = name, "removing the unflushed map from multipathd");
            chain.step(force, &format!("multipathd del map {name}"), || {
                self.mp().del_map(&dm, &name)
            })?;
        }
        #[cfg(feature = "mutants")]
        let opts = DisconnectOptions {
            ignore_errors: opts.ignore_errors
                || (force && crate::mutants::active(crate::mutants::Mutant::ForceSwallowsErrors)),
            ..opts
        };
        chain.finish(opts.ignore_errors, &format!("{remove:?}"))
    }

    /// os-brick `_get_connection_devices`: `(portal, iqn) → (belong, others)` device sets,
    /// from the sessions' sysfs trees; nodes without a session map to empty sets.
    fn connection_devices(
        &self,
        vol: &Volume,
        targets: &[Target],
    ) -> Result<Vec<ConnDevices>, ConnectorError> {
        let nodes: Vec<NodeEntry> = self.adm().nodes()?;
        let sessions: Vec<SessionEntry> = self
            .adm()
            .sessions()?
            .into_iter()
            .filter(SessionEntry::is_valid)
            .collect();
        let mut map: Vec<ConnDevices> = Vec::new();
        for t in targets {
            let matching: Vec<&SessionEntry> = sessions
                .iter()
                .filter(|s| session_matches(s, &t.portal, &t.iqn))
                .collect();
            if matching.is_empty() {
                if nodes
                    .iter()
                    .any(|n| portal_text_matches(&n.portal, &t.portal) && n.iqn == t.iqn.as_str())
                {
                    entry_for(&mut map, t);
                }
                continue;
            }
            let lun = vol.kernel_lun(t);
            #[cfg(feature = "mutants")]
            let lun = if crate::mutants::active(crate::mutants::Mutant::DetachIgnoresAddressing) {
                t.lun.get()
            } else {
                lun
            };
            let entry = entry_for(&mut map, t);
            for s in matching {
                #[cfg(feature = "mutants")]
                if crate::mutants::active(crate::mutants::Mutant::RescanOnDetach)
                    && let Ok(Some(h)) = self.scsi().get_hctl(s.sid, 0)
                    && let Ok(scan) =
                        HostPath::new(format!("/sys/class/scsi_host/host{}/scan", h.host))
                {
                    let _ = self.host.write_control(&scan, "- - -");
                }
                for (dev_lun, dev) in self.scsi().session_devices(s.sid)? {
                    #[cfg(feature = "mutants")]
                    if crate::mutants::active(crate::mutants::Mutant::DevicesFromByPath)
                        && !self.by_path_leads_to(vol, t, dev_lun, &dev)
                    {
                        continue;
                    }
                    #[cfg(feature = "mutants")]
                    let dev_lun = if crate::mutants::active(
                        crate::mutants::Mutant::RemoveAllSessionDevices,
                    ) {
                        lun
                    } else {
                        dev_lun
                    };
                    if dev_lun == lun {
                        entry.belong.insert(dev);
                    } else {
                        entry.others.insert(dev);
                    }
                }
            }
        }
        // A device that belongs to one target is not "another LUN" of a shared session.
        let belong_all: BTreeSet<String> =
            map.iter().flat_map(|c| c.belong.iter().cloned()).collect();
        for c in &mut map {
            c.others.retain(|d| !belong_all.contains(d));
        }
        tracing::debug!(?map, "connection devices");
        Ok(map)
    }

    /// os-brick `linuxscsi.remove_connection`; returns `(dm, map name)` if the map flush
    /// failed (only possible with `force`).
    fn remove_connection(
        &self,
        devices: &[String],
        force: bool,
        chain: &mut ErrorChain,
        path_used: Option<&HostPath>,
        was_multipath: bool,
    ) -> Result<Option<(String, String)>, ConnectorError> {
        if devices.is_empty() {
            return Ok(None);
        }
        let scsi = self.scsi();
        let mp = self.mp();
        let dm = scsi.find_multipath_dm(devices);
        #[cfg(feature = "mutants")]
        let dm = if crate::mutants::active(crate::mutants::Mutant::BranchOnUseMultipath)
            && !self.config.use_multipath
        {
            None
        } else {
            dm
        };
        let name = dm.as_deref().and_then(|d| scsi.dm_name(d));
        let mut failed = None;
        let remove_paths = |chain: &mut ErrorChain| -> Result<(), ConnectorError> {
            for dev in devices {
                let node = dev_node(dev)?;
                let flush = requires_flush(&self.fs(), &node, path_used, was_multipath);
                #[cfg(feature = "mutants")]
                let flush = flush || crate::mutants::active(crate::mutants::Mutant::FlushEveryPath);
                scsi.remove_scsi_device(dev, force, chain, flush)?;
            }
            Ok(())
        };
        #[cfg(feature = "mutants")]
        if crate::mutants::active(crate::mutants::Mutant::DeletePathsBeforeMapFlush) {
            remove_paths(chain)?;
        }
        let multipath_running = if let (Some(dm), Some(name)) = (&dm, &name) {
            tracing::info!(dm, map = name, devices = ?devices, "removing multipathed devices");
            let step_force = force;
            #[cfg(feature = "mutants")]
            let step_force = step_force
                || crate::mutants::active(crate::mutants::Mutant::ContinueAfterFlushFailure);
            let flushed = chain.step(step_force, &format!("flushing {name}"), || {
                mp.flush_map(name)
            })?;
            if flushed.is_none() {
                failed = Some((dm.clone(), name.clone()));
                #[cfg(feature = "mutants")]
                if crate::mutants::active(crate::mutants::Mutant::ReflushOutsideForce) {
                    mp.flush_map(name)?;
                }
            }
            true
        } else {
            tracing::info!(devices = ?devices, "removing single pathed devices");
            mp.is_running()
        };
        #[cfg(feature = "mutants")]
        let paths_removed =
            crate::mutants::active(crate::mutants::Mutant::DeletePathsBeforeMapFlush);
        #[cfg(not(feature = "mutants"))]
        let paths_removed = false;
        if !paths_removed {
            remove_paths(chain)?;
        }
        let waited = scsi.wait_for_removal(devices);
        scsi.remove_scsi_symlinks(devices);
        chain.step(
            force,
            &format!("waiting for removal of {devices:?}"),
            || waited,
        )?;
        #[cfg(feature = "mutants")]
        let multipath_running =
            multipath_running && !crate::mutants::active(crate::mutants::Mutant::NoWaitMultipathd);
        if multipath_running {
            let remaining = mp.wait_paths_removed(devices);
            if !remaining.is_empty() {
                chain.step(force, "multipathd path removal", || {
                    Err::<(), _>(ConnectorError::MultipathdPathsNotRemoved { paths: remaining })
                })?;
            }
        }
        Ok(failed)
    }

    /// os-brick `_disconnect_from_iscsi_portal`.
    fn logout(&self, portal: &Portal, iqn: &Iqn) -> Result<(), ConnectorError> {
        let t = Target {
            portal: portal.clone(),
            iqn: iqn.clone(),
            lun: Lun::new(0),
        };
        tracing::info!(%portal, %iqn, "logging out and deleting the node");
        self.node_update(&t, "node.startup", "manual", &[0, 21, 255])?;
        self.node(&t, &["--logout"], &[0, 21, 255])?;
        let mut last = Ok(());
        for attempt in 1..=5u32 {
            last = self
                .node(&t, &["--op", "delete"], &[0, 21, 255])
                .map(|_| ());
            if last.is_ok() {
                break;
            }
            if attempt < 5 {
                self.host.sleep(Duration::from_secs(1));
            }
        }
        last
    }

    // ------------------------------------------------------------------ paths

    /// `(portal, iqn)` of every session, from sysfs (`/sys/class/iscsi_session`).
    fn sysfs_sessions(&self, diags: &mut Vec<Diagnostic>) -> Vec<(Option<Portal>, String)> {
        let fs = self.fs();
        let mut out = Vec::new();
        let Ok(class) = HostPath::new("/sys/class/iscsi_session") else {
            return out;
        };
        let names = match fs.read_dir(&class) {
            Ok(n) => n,
            Err(e) => {
                diags.push(Diagnostic::at(&class, e.to_string()));
                return out;
            }
        };
        for name in names {
            let Some(sid) = name.strip_prefix("session") else {
                continue;
            };
            let Ok(dir) = class.join(&name) else { continue };
            let iqn = match dir.join("targetname").map(|p| (fs.read_attr(&p), p)) {
                Ok((Ok(Some(v)), _)) => v,
                Ok((Ok(None), _)) => continue,
                Ok((Err(e), p)) => {
                    diags.push(Diagnostic::at(&p, e.to_string()));
                    continue;
                }
                Err(_) => continue,
            };
            let portal = HostPath::new(format!("/sys/class/iscsi_connection/connection{sid}:0"))
                .ok()
                .and_then(|conn| {
                    let addr = fs
                        .read_attr(&conn.join("persistent_address").ok()?)
                        .ok()??;
                    let port = fs.read_attr(&conn.join("persistent_port").ok()?).ok()??;
                    let port: u16 = port.parse().ok()?;
                    Portal::from_parts(&addr, port).ok()
                });
            out.push((portal, iqn));
        }
        out
    }

    /// By-path candidates for `t`: the default name, or for other transports any entry ending
    /// with it (udev prefixes e.g. `pci-0000:00:00.0-`).
    fn by_path_candidates(&self, vol: &Volume, t: &Target) -> Vec<HostPath> {
        let name = naming::iscsi_by_path(&t.portal, &t.iqn, vol.kernel_lun(t));
        let Ok(dir) = HostPath::new("/dev/disk/by-path") else {
            return Vec::new();
        };
        if vol.iface == "default" {
            return dir.join(&name).into_iter().collect();
        }
        self.fs()
            .read_dir(&dir)
            .unwrap_or_default()
            .into_iter()
            .filter(|n| n.ends_with(&name))
            .filter_map(|n| dir.join(&n).ok())
            .collect()
    }

    fn volume_paths(&self, vol: &Volume) -> VolumePaths {
        let fs = self.fs();
        let mut res = VolumePaths::default();
        let targets: Vec<&Target> = if self.config.use_multipath {
            #[cfg(feature = "mutants")]
            if crate::mutants::active(crate::mutants::Mutant::PathsFirstTargetOnly)
                && vol.targets.len() > 1
            {
                return self.volume_paths(&Volume {
                    targets: vol.targets.iter().take(1).cloned().collect(),
                    ..vol.clone()
                });
            }
            vol.targets.iter().collect()
        } else {
            let sessions = self.sysfs_sessions(&mut res.diagnostics);
            vol.targets
                .iter()
                .filter(|t| {
                    sessions.iter().any(|(p, iqn)| {
                        p.as_ref().is_some_and(|p| p.same_endpoint(&t.portal))
                            && iqn == t.iqn.as_str()
                    })
                })
                .collect()
        };
        let mut seen = BTreeSet::new();
        for t in targets {
            for path in self.by_path_candidates(vol, t) {
                if !seen.insert(path.clone()) {
                    continue;
                }
                let is_link = fs.is_link(&path);
                if !is_link && !fs.exists(&path) {
                    continue;
                }
                let device = match fs.realpath(&path) {
                    Ok(d) => d,
                    Err(e) => {
                        res.diagnostics.push(Diagnostic::at(&path, e.to_string()));
                        continue;
                    }
                };
                if !fs.exists(&device) {
                    res.diagnostics.push(Diagnostic::at(
                        &path,
                        format!("dangling link: {device} does not exist"),
                    ));
                    continue;
                }
                let wwid = self
                    .scsi()
                    .path_identity(&path, &device, &mut res.diagnostics);
                res.paths.push(VolumePath {
                    path,
                    device: Some(device),
                    wwid,
                });
            }
        }
        res
    }
}

#[cfg(feature = "mutants")]
impl IscsiConnector<'_> {
    /// Mutant helper: whether the by-path link of `(t.portal, t.iqn, lun)` resolves to `dev`.
    fn by_path_leads_to(&self, vol: &Volume, t: &Target, lun: u64, dev: &str) -> bool {
        let t = Target {
            lun: Lun::new(lun),
            ..t.clone()
        };
        let vol = Volume {
            mode: AddressingMode::Transparent,
            ..vol.clone()
        };
        self.by_path_candidates(&vol, &t)
            .iter()
            .any(|p| self.fs().realpath(p).is_ok_and(|r| r.file_name() == dev))
    }
}

/// The devices of one `(portal, iqn)` connection: ours (`belong`) and other LUNs' (`others`).
#[derive(Debug)]
struct ConnDevices {
    portal: Portal,
    iqn: Iqn,
    belong: BTreeSet<String>,
    others: BTreeSet<String>,
}

/// The entry of `t`'s `(portal, iqn)` in `map`, created empty if missing (insertion order kept).
fn entry_for<'m>(map: &'m mut Vec<ConnDevices>, t: &Target) -> &'m mut ConnDevices {
    let idx = match map
        .iter()
        .position(|c| c.portal == t.portal && c.iqn == t.iqn)
    {
        Some(i) => i,
        None => {
            map.push(ConnDevices {
                portal: t.portal.clone(),
                iqn: t.iqn.clone(),
                belong: BTreeSet::new(),
                others: BTreeSet::new(),
            });
            map.len() - 1
        }
    };
    &mut map[idx]
}

/// Whether an `iscsiadm -m session` line is the session to `portal`/`iqn` (portal compared
/// case-insensitively, os-brick bug 1793627).
fn session_matches(s: &SessionEntry, portal: &Portal, iqn: &Iqn) -> bool {
    s.is_valid() && s.iqn == iqn.as_str() && portal_text_matches(&s.portal, portal)
}

fn portal_text_matches(text: &str, portal: &Portal) -> bool {
    text.eq_ignore_ascii_case(portal.as_str())
        || Portal::new(text).is_ok_and(|p| p.same_endpoint(portal))
}

fn describe_targets(targets: &[Target]) -> String {
    targets
        .iter()
        .map(Target::describe)
        .collect::<Vec<_>>()
        .join(", ")
}

fn volume_from(p: &IscsiProperties, config: &ConnectorConfig) -> Volume {
    let conv = |t: &crate::props::IscsiTarget| Target {
        portal: t.portal.clone(),
        iqn: t.iqn.clone(),
        lun: t.lun,
    };
    let auth = |c: &crate::props::Chap| Auth {
        method: "CHAP".to_owned(),
        username: c.username.clone(),
        password: c.password.clone(),
    };
    let explicit = p.targets.len() != 1 || p.targets.first() != Some(&p.primary);
    let iser = p.transport == IscsiTransport::Iser || config.transport == "iser";
    Volume {
        targets: p.targets.iter().map(conv).collect(),
        primary: conv(&p.primary),
        // The properties keep the plural lists only when they differ from the single target.
        explicit_targets: explicit,
        explicit_iqns: explicit,
        auth: p.auth.as_ref().map(auth),
        discovery_auth: p.discovery_auth.as_ref().map(auth),
        mode: p.addressing_mode,
        device_path: p.device_path.clone(),
        iface: if iser { "iser" } else { "default" },
    }
}

impl Connector for IscsiConnector<'_> {
    fn protocol(&self) -> Protocol {
        Protocol::Iscsi
    }

    fn connect_volume(&self, props: &ConnectionProperties) -> Result<DeviceInfo, ConnectorError> {
        let vol = self.volume(props)?;
        self.check_multipath()?;
        let mut wait = Duration::from_secs(1);
        let mut attempt = 1;
        let result = loop {
            let r = if self.config.use_multipath {
                self.connect_multipath(&vol)
            } else {
                self.connect_single(&vol)
            };
            match r {
                Err(ConnectorError::VolumeDeviceNotFound { .. }) if attempt < CONNECT_ATTEMPTS => {
                    tracing::info!(attempt, "no device found; retrying the connection");
                    self.host.sleep(wait);
                    wait = wait.saturating_mul(2);
                    attempt += 1;
                }
                other => break other,
            }
        };
        match result {
            Ok(info) => {
                tracing::info!(path = %info.path, wwn = ?info.scsi_wwn, "volume connected");
                Ok(info)
            }
            Err(e) => {
                tracing::warn!(error = %e, "connect failed; cleaning up");
                if let Err(ce) = self.cleanup(
                    &vol,
                    None,
                    DisconnectOptions {
                        force: true,
                        ignore_errors: false,
                    },
                    None,
                    false,
                ) {
                    tracing::warn!(error = %ce, "cleanup after failed connect");
                }
                Err(e)
            }
        }
    }

    fn disconnect_volume(
        &self,
        props: &ConnectionProperties,
        device_info: Option<&DeviceInfo>,
        opts: DisconnectOptions,
    ) -> Result<(), ConnectorError> {
        let vol = self.volume(props)?;
        self.cleanup(&vol, None, opts, device_info, true)
    }

    fn get_volume_paths(
        &self,
        props: &ConnectionProperties,
    ) -> Result<VolumePaths, ConnectorError> {
        let vol = self.volume(props)?;
        Ok(self.volume_paths(&vol))
    }

    fn get_search_path(&self) -> Option<HostPath> {
        HostPath::new("/dev/disk/by-path").ok()
    }

    fn get_all_available_volumes(
        &self,
        _props: Option<&ConnectionProperties>,
    ) -> Result<Vec<HostPath>, ConnectorError> {
        crate::connector::search_dir_entries(&self.fs(), self.get_search_path())
    }

    fn extend_volume(&self, props: &ConnectionProperties) -> Result<u64, ConnectorError> {
        let vol = self.volume(props)?;
        let paths = self.volume_paths(&vol);
        if paths.paths.is_empty() {
            return Err(ConnectorError::VolumePathsNotFound {
                what: describe_targets(&vol.targets),
            });
        }
        crate::scsi::extend_devices(self.host, &paths)
    }
}

#[cfg(test)]
#[path = "iscsi_tests.rs"]
mod tests;
