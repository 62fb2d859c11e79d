//! The system under test: a [`Lab`] (the simulator behind the real connectors) driven by the
//! model's transitions, and the comparison of what happened with what the model expects.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use brick_connectors::{DeviceInfo, DisconnectOptions, find_orphans};
use brick_sim_target::{
    ArraySpec, Fault, FcHbaSpec, FcPortState, FcTargetPort, HostId, IdentityPolicy, IqnMode, Times,
    UdevAction,
};

use crate::agent::fixture::sd_name;
use crate::checks::PropertyKind;
use crate::lab::{Lab, LabHostSpec};
use crate::machine::model::{
    AttachFault, AttachedDev, DetachFault, DevKey, FcLayout, HostKind, ModelState, Outcome, Tgt,
    Transition, host_name, vol_name,
};
use crate::simhost::lock;

/// The array's name in the lab and in scenario files.
pub(crate) const ARRAY: &str = "array-1";
/// IQN of the shared target.
pub(crate) const SHARED_IQN: &str = "iqn.2010-10.org.openstack:shared";
/// Prefix of per-volume target IQNs.
pub(crate) const IQN_PREFIX: &str = "iqn.2010-10.org.openstack:volume-";

/// Portal `i` of the array.
pub(crate) fn portal(i: usize) -> String {
    format!("10.0.{}.2:3260", i + 2)
}

/// WWPN of HBA `i` of host `h`.
pub(crate) fn hba_wwpn(h: usize, i: usize) -> u64 {
    0x2100_0024_ff7c_0000 + ((h as u64) << 8) + i as u64 + 1
}

/// WWPN of the array's FC port `j`.
pub(crate) fn fc_port_wwpn(j: usize) -> u64 {
    0x5006_0160_9020_3181 + ((j as u64) << 32)
}

/// Name of FC fabric `i`.
pub(crate) fn fabric(i: usize) -> String {
    format!("f{i}")
}

/// What one step did, for the trace.
#[derive(Debug, Clone)]
pub(crate) struct StepRecord {
    /// `attach v0 on host-1`.
    pub(crate) what: String,
    /// `ok`, the device, or the error.
    pub(crate) result: String,
    /// The violations the checks reported (expected ones included).
    pub(crate) violations: Vec<String>,
    /// The model's one-line state summary after the step.
    pub(crate) summary: String,
}

/// Why a step broke the machine.
#[derive(Debug, Clone)]
pub(crate) struct StepFailure {
    /// What does not hold.
    pub(crate) message: String,
    /// The connector's side effects during the step, per host.
    pub(crate) journal: Vec<(String, Vec<String>)>,
}

/// The lab plus what the machine remembers about it.
#[derive(Debug)]
pub(crate) struct Sut {
    lab: Lab,
    hosts: Vec<String>,
    portals: Vec<String>,
    flat: bool,
    fc: Option<FcLayout>,
    /// Identity token -> the WWID the simulator gave it, remembered once seen: a volume
    /// mapped on a reuse-on-LUN array takes the LUN's old identity and gives up its own,
    /// which its disks still report.
    idents: BTreeMap<u32, String>,
}

fn sim(e: impl std::fmt::Display) -> String {
    format!("lab: {e}")
}

impl Sut {
    /// A lab for the model's topology.
    pub(crate) fn new(state: &ModelState) -> Result<Self, String> {
        let t = &state.topology;
        let hosts: Vec<String> = (0..t.hosts).map(host_name).collect();
        if let Some(n) = &t.nvme {
            return Ok(Self {
                lab: super::nvme::new_lab(state, n)?,
                hosts,
                portals: Vec::new(),
                flat: false,
                fc: None,
                idents: BTreeMap::new(),
            });
        }
        let mut lab = Lab::new(state.world_seed);
        for h in &hosts {
            let mut spec = match t.host_kind {
                HostKind::Single => LabHostSpec::single(h),
                HostKind::Multipath => LabHostSpec::multipath(h),
                HostKind::MultipathdSingle => {
                    let mut s = LabHostSpec::multipath(h);
                    s.use_multipath = false;
                    s
                }
            };
            spec.sim.udev_delay = Duration::from_millis(50);
            if let Some(fc) = &t.fc {
                let hi = hosts.iter().position(|x| x == h).unwrap_or(0);
                for i in 0..fc.hbas {
                    spec.sim = spec.sim.with_fc_hba(FcHbaSpec::new(
                        hba_wwpn(hi, i),
                        fabric(i),
                        &format!("0000:05:00.{}", i + 2),
                    ));
                }
            }
            lab.add_host(spec).map_err(sim)?;
        }
        if let Some(fc) = t.fc {
            let ports = (0..fc.ports)
                .map(|j| FcTargetPort::new(fc_port_wwpn(j), fabric(fc.port_fabric(j))))
                .collect();
            let mut spec = ArraySpec::fc(ARRAY, ports);
            spec.identity = if t.reuse_identity {
                IdentityPolicy::ReuseOnLun
            } else {
                IdentityPolicy::Fresh
            };
            spec.first_lun = t.first_lun;
            lab.add_array(spec).map_err(sim)?;
            for h in &hosts {
                lab.zone(h, ARRAY).map_err(sim)?;
            }
            return Ok(Self {
                lab,
                hosts,
                portals: Vec::new(),
                flat: false,
                fc: Some(fc),
                idents: BTreeMap::new(),
            });
        }
        let portals: Vec<String> = (0..t.portals).map(portal).collect();
        let mut spec = ArraySpec::new(ARRAY, portals.clone());
        spec.iqn_mode = if t.shared_target {
            IqnMode::Shared {
                iqn: SHARED_IQN.to_owned(),
            }
        } else {
            IqnMode::PerVolume {
                prefix: IQN_PREFIX.to_owned(),
            }
        };
        spec.identity = if t.reuse_identity {
            IdentityPolicy::ReuseOnLun
        } else {
            IdentityPolicy::Fresh
        };
        spec.flat_addressing = t.flat_addressing;
        lab.add_array(spec).map_err(sim)?;
        Ok(Self {
            lab,
            hosts,
            portals,
            flat: t.flat_addressing,
            fc: None,
            idents: BTreeMap::new(),
        })
    }

    /// The lab.
    pub(crate) fn lab(&self) -> &Lab {
        &self.lab
    }

    fn host_id(&self, h: usize) -> HostId {
        self.lab.host_id(&host_name(h)).unwrap_or(HostId(u32::MAX))
    }

    fn arm(&mut self, fault: &Fault) -> Result<(), String> {
        self.lab.inject(fault.clone()).map_err(sim)
    }

    fn disarm(&mut self, fault: &Fault) {
        lock(self.lab.world()).clear_fault(fault);
    }

    fn journal_lens(&self) -> Vec<usize> {
        self.hosts
            .iter()
            .map(|h| self.lab.journal(h).map(|j| j.len()).unwrap_or(0))
            .collect()
    }

    fn journal_since(&self, lens: &[usize]) -> Vec<(String, Vec<String>)> {
        self.hosts
            .iter()
            .zip(lens)
            .filter_map(|(h, n)| {
                let j = self.lab.journal(h).ok()?;
                let new: Vec<String> = j.into_iter().skip(*n).collect();
                (!new.is_empty()).then(|| (h.clone(), new))
            })
            .collect()
    }

    /// Applies `t`, settles, and checks every invariant against `model` (the state after
    /// `t`). `Err` explains the first broken one.
    #[allow(clippy::result_large_err)] // one per step, never in a hot path
    pub(crate) fn apply(
        &mut self,
        model: &ModelState,
        t: &Transition,
    ) -> Result<StepRecord, (StepRecord, StepFailure)> {
        let lens = self.journal_lens();
        let mut record = StepRecord {
            what: t.to_string(),
            result: String::new(),
            violations: Vec::new(),
            summary: model.summary(),
        };
        let fail = |record: &StepRecord, this: &Self, message: String| {
            (
                record.clone(),
                StepFailure {
                    message,
                    journal: this.journal_since(&lens),
                },
            )
        };
        let outcome = match self.perform(model, t) {
            Ok(o) => o,
            Err(message) => return Err(fail(&record, self, message)),
        };
        self.learn_idents(model);
        record.result = match &outcome.result {
            Ok(Some(d)) => format!(
                "{} (wwid {})",
                d.path,
                d.scsi_wwn.as_ref().map_or("-", |w| w.as_str())
            ),
            Ok(None) => "ok".to_owned(),
            Err(e) => format!("error: {e}"),
        };
        if let Some(m) = outcome.early_failure {
            return Err(fail(&record, self, m));
        }
        if let Err(e) = self.lab.settle() {
            return Err(fail(&record, self, format!("settling failed: {e}")));
        }
        let violations = self.lab.check();
        record.violations = violations.iter().map(ToString::to_string).collect();
        if let Err(m) = self.judge_outcome(model, &outcome) {
            return Err(fail(&record, self, m));
        }
        let got: BTreeSet<(PropertyKind, String, Option<String>)> = violations
            .iter()
            .map(|v| (v.kind, v.host.clone(), v.volume.clone()))
            .collect();
        let want = model.expected_violations();
        if got != want {
            return Err(fail(
                &record,
                self,
                format!(
                    "the checks reported {} but the model expects {}",
                    describe(&got),
                    describe(&want)
                ),
            ));
        }
        if let Err(m) = self.compare_state(model) {
            return Err(fail(&record, self, m));
        }
        if want.is_empty() && model.all_linked() {
            for h in &self.hosts {
                // The port itself: its reads are the tree the directory would hold.
                let Ok(port) = self.lab.sim_host(h) else {
                    continue;
                };
                let report = find_orphans(port);
                if !report.is_clean() {
                    let list: Vec<String> = report
                        .orphans
                        .iter()
                        .map(|o| format!("{} ({:?}: {})", o.path, o.reason, o.detail))
                        .collect();
                    return Err(fail(
                        &record,
                        self,
                        format!(
                            "the orphan report of {h} is not empty after a clean history: {}",
                            list.join("; ")
                        ),
                    ));
                }
            }
        }
        Ok(record)
    }

    /// Runs the transition on the lab.
    fn perform(&mut self, model: &ModelState, t: &Transition) -> Result<Performed, String> {
        let mut out = Performed {
            result: Ok(None),
            early_failure: None,
            previous: None,
            host: 0,
        };
        match *t {
            Transition::Create => {
                let n = self.lab.volume_names().len();
                // With recycled IQNs the array names the volume (hence its target) after
                // the slot the model gave it.
                let slot = model.volumes.get(n).map_or(n, |v| v.slot);
                self.lab
                    .create_volume_as(&vol_name(n), &vol_name(slot), ARRAY, 1 << 30)
                    .map_err(sim)?;
            }
            Transition::Map { vol, host } => {
                self.lab
                    .map(&vol_name(vol), &host_name(host))
                    .map_err(sim)?;
            }
            Transition::Unmap { vol, host } => {
                self.lab
                    .unmap(&vol_name(vol), &host_name(host))
                    .map_err(sim)?;
            }
            Transition::Delete { vol } => self.lab.delete(&vol_name(vol)).map_err(sim)?,
            Transition::Attach { vol, host, fault } => {
                out.host = host;
                let hid = self.host_id(host);
                let f = match fault {
                    None => None,
                    Some(AttachFault::UdevLate) => Some(Fault::UdevLate {
                        host: hid,
                        extra: Duration::from_secs(30),
                    }),
                    Some(AttachFault::UdevLost) => Some(Fault::UdevLost {
                        host: hid,
                        action: UdevAction::Add,
                        times: Times::Always,
                    }),
                    Some(AttachFault::NamespaceAppears { vol: other }) => {
                        Some(Fault::NamespaceAppears {
                            host: hid,
                            volume: self.lab.volume_id(&vol_name(other)).map_err(sim)?,
                        })
                    }
                };
                if let Some(f) = &f {
                    self.arm(f)?;
                }
                out.previous = self
                    .lab
                    .attachments()
                    .get(&(host_name(host), vol_name(vol)))
                    .map(|a| a.device.clone());
                let r = self.lab.attach(&vol_name(vol), &host_name(host));
                if let Some(f) = &f {
                    self.disarm(f);
                }
                out.result = r.map(Some).map_err(|e| e.to_string());
            }
            Transition::Detach {
                vol,
                host,
                force,
                device_info,
                fault,
            } => {
                let hid = self.host_id(host);
                let opts = DisconnectOptions {
                    force,
                    ignore_errors: false,
                };
                let f = fault.map(|f| match f {
                    DetachFault::MapFlushFails { persistent } => Fault::MultipathFlushFails {
                        host: hid,
                        times: if persistent {
                            Times::Always
                        } else {
                            Times::Count(1)
                        },
                    },
                    DetachFault::DeviceFlushFails => Fault::BlockdevFlushFails {
                        host: hid,
                        times: Times::Always,
                    },
                    DetachFault::DeleteBusy => Fault::DeviceDeleteBusy {
                        host: hid,
                        device: None,
                        times: Times::Always,
                    },
                    DetachFault::UdevLate => Fault::UdevLate {
                        host: hid,
                        extra: Duration::from_secs(30),
                    },
                    DetachFault::UdevLostRemove => Fault::UdevLost {
                        host: hid,
                        action: UdevAction::Remove,
                        times: Times::Always,
                    },
                    DetachFault::MultipathdSlow => Fault::MultipathdSlowRemove {
                        host: hid,
                        extra: Duration::from_secs(5),
                    },
                    DetachFault::Crash { after } => Fault::Crash {
                        host: hid,
                        after: u32::from(after),
                    },
                });
                if let Some(f) = &f {
                    self.arm(f)?;
                }
                let (v, h) = (vol_name(vol), host_name(host));
                let mut r = self.lab.detach(&v, &h, opts, device_info);
                if let Some(f) = &f {
                    self.disarm(f);
                }
                if let Some(DetachFault::Crash { .. }) = fault {
                    // The process restarted: the detach is retried.
                    r = self.lab.detach(&v, &h, opts, device_info);
                }
                if r.is_ok() || force {
                    out.early_failure = self.multipathd_forgot_removed(hid, &h);
                }
                out.result = r.map(|()| None).map_err(|e| e.to_string());
            }
            Transition::PathDown { host, portal } if self.fc.is_some() => {
                self.lab
                    .set_hba_port_state(
                        &host_name(host),
                        hba_wwpn(host, portal),
                        FcPortState::Linkdown,
                    )
                    .map_err(sim)?;
            }
            Transition::PathUp { host, portal } if self.fc.is_some() => {
                self.lab
                    .set_hba_port_state(
                        &host_name(host),
                        hba_wwpn(host, portal),
                        FcPortState::Online,
                    )
                    .map_err(sim)?;
            }
            Transition::PathDown { host, portal } => {
                let f = self.portal_fault(model, host, portal);
                self.arm(&f)?;
            }
            Transition::PathUp { host, portal } => {
                let f = self.portal_fault(model, host, portal);
                self.disarm(&f);
            }
            Transition::Wait => {
                lock(self.lab.world()).advance(Duration::from_secs(60));
            }
        }
        Ok(out)
    }

    fn portal_fault(&self, model: &ModelState, host: usize, p: usize) -> Fault {
        if model.is_nvme() {
            return super::nvme::port_fault(self.host_id(host), p);
        }
        Fault::PortalDown {
            host: self.host_id(host),
            portal: self.portals.get(p).cloned().unwrap_or_default(),
        }
    }

    /// After a detach returned (before udev and multipathd catch up): multipathd's path
    /// table must not list devices that no longer exist (os-brick d3f4f3b).
    fn multipathd_forgot_removed(&self, hid: HostId, h: &str) -> Option<String> {
        let w = lock(self.lab.world());
        let existing: BTreeSet<String> = w.host_devices(hid).into_iter().map(|d| d.name).collect();
        let stale: Vec<String> = w
            .multipathd_paths(hid)
            .into_iter()
            .filter(|p| !existing.contains(p))
            .collect();
        (!stale.is_empty()).then(|| {
            format!(
                "the detach returned while multipathd on {h} still lists removed paths {stale:?}"
            )
        })
    }

    fn judge_outcome(&self, model: &ModelState, out: &Performed) -> Result<(), String> {
        match (model.outcome, &out.result) {
            (Outcome::Any, _) => Ok(()),
            (Outcome::Ok, Ok(_)) | (Outcome::Err, Err(_)) => Ok(()),
            (Outcome::Ok, Err(e)) => Err(format!("the connector failed but should succeed: {e}")),
            (Outcome::Err, Ok(_)) => Err("the connector succeeded but should fail".to_owned()),
            (Outcome::NvmeAttached { dev, .. }, Ok(info)) => {
                super::nvme::judge_attach(dev, info.as_ref())
            }
            (Outcome::Attached { .. } | Outcome::NvmeAttached { .. }, Err(e)) => {
                Err(format!("the attach failed but should succeed: {e}"))
            }
            (Outcome::Attached { dev, wwn, again }, Ok(info)) => {
                let Some(info) = info else {
                    return Err("the attach returned no device".to_owned());
                };
                self.judge_attach(
                    model,
                    out.host,
                    dev,
                    wwn,
                    again,
                    info,
                    out.previous.as_ref(),
                )
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn judge_attach(
        &self,
        model: &ModelState,
        host: usize,
        dev: AttachedDev,
        wwn: Option<u32>,
        again: bool,
        info: &DeviceInfo,
        previous: Option<&DeviceInfo>,
    ) -> Result<(), String> {
        let wwid_of = |ident: u32| -> Option<String> { self.wwid_of_ident(model, ident) };
        let want_path = match dev {
            AttachedDev::Sd(k) => self.device_name_at(&k).map(|n| format!("/dev/{n}")),
            AttachedDev::Dm(ident) => {
                let h = host;
                let hid = self.host_id(h);
                let w = wwid_of(ident);
                lock(self.lab.world())
                    .host_devices(hid)
                    .into_iter()
                    .find(|d| d.name.starts_with("dm-") && Some(&d.reported_wwid) == w.as_ref())
                    .map(|d| format!("/dev/{}", d.name))
            }
        };
        let got_path = self.resolve(host, info.path.as_str());
        if want_path.as_deref() != Some(got_path.as_str()) {
            return Err(format!(
                "attach returned {} but the model expects {} ({})",
                info.path,
                want_path
                    .as_deref()
                    .unwrap_or("a device that does not exist"),
                match dev {
                    AttachedDev::Sd(_) => "a single path",
                    AttachedDev::Dm(_) => "the multipath map",
                }
            ));
        }
        let got = info.scsi_wwn.as_ref().map(|w| w.as_str().to_owned());
        match wwn {
            Some(ident) => {
                let want = wwid_of(ident);
                if got != want {
                    return Err(format!(
                        "attach returned wwid {} but the device must report {} ({})",
                        got.as_deref().unwrap_or("(none)"),
                        want.as_deref().unwrap_or("?"),
                        model
                            .name_of_ident(ident)
                            .map_or_else(|| "no volume".to_owned(), vol_name)
                    ));
                }
            }
            None => {
                // udev was late or lost: no wwid is fine, a wrong one is not.
                let own = match dev {
                    AttachedDev::Sd(k) => model.devices.get(&k).and_then(|d| wwid_of(d.ident)),
                    AttachedDev::Dm(i) => wwid_of(i),
                };
                if got.is_some() && got != own {
                    return Err(format!(
                        "attach returned wwid {} but the device reports {}",
                        got.as_deref().unwrap_or("?"),
                        own.as_deref().unwrap_or("?")
                    ));
                }
            }
        }
        if again
            && let Some(prev) = previous
            && prev.path != info.path
        {
            return Err(format!(
                "attaching again returned {} but the first attach returned {}",
                info.path, prev.path
            ));
        }
        Ok(())
    }

    /// `/dev/disk/...` links (the FC connector returns its by-path link) resolved to the
    /// `/dev/<name>` they point at on host `h`.
    fn resolve(&self, h: usize, path: &str) -> String {
        if !path.starts_with("/dev/disk/") {
            return path.to_owned();
        }
        let Ok(root) = self.lab.root(&host_name(h)) else {
            return path.to_owned();
        };
        match std::fs::read_link(root.join(path.trim_start_matches('/'))) {
            Ok(t) => t
                .file_name()
                .map(|n| format!("/dev/{}", n.to_string_lossy()))
                .unwrap_or_else(|| path.to_owned()),
            Err(_) => path.to_owned(),
        }
    }

    /// Remembers the WWID of every volume's current identity token.
    fn learn_idents(&mut self, model: &ModelState) {
        let w = lock(self.lab.world());
        for (i, v) in model.volumes.iter().enumerate() {
            if self.idents.contains_key(&v.ident) {
                continue;
            }
            let Ok(id) = self.lab.volume_id(&vol_name(i)) else {
                continue;
            };
            if let Some(r) = w.volume_record(id) {
                self.idents.insert(v.ident, r.wwid.clone());
            }
        }
    }

    fn wwid_of_ident(&self, model: &ModelState, ident: u32) -> Option<String> {
        if let Some(w) = self.idents.get(&ident) {
            return Some(w.clone());
        }
        let v = model.volumes.iter().position(|x| x.ident == ident)?;
        let id = self.lab.volume_id(&vol_name(v)).ok()?;
        lock(self.lab.world())
            .volume_record(id)
            .map(|r| r.wwid.clone())
    }

    /// Parses a target IQN back to the model's target.
    fn tgt_of_iqn(&self, iqn: &str) -> Option<Tgt> {
        if iqn == SHARED_IQN {
            return Some(None);
        }
        let name = iqn.strip_prefix(IQN_PREFIX)?;
        let n: usize = name.strip_prefix('v')?.parse().ok()?;
        Some(Some(n))
    }

    fn array_lun(&self, klun: u64) -> u64 {
        if self.flat {
            klun.saturating_sub(16384)
        } else {
            klun
        }
    }

    /// Every sd device of host `h` keyed as the model keys them: (key -> (name, wwid)).
    fn world_devices(&self, h: usize) -> BTreeMap<DevKey, (String, String)> {
        let hid = self.host_id(h);
        let w = lock(self.lab.world());
        if let Some(fc) = &self.fc {
            let paths = fc.paths();
            let hbas = w.hbas(hid);
            let mut out = BTreeMap::new();
            for d in w.host_devices(hid) {
                let Some(hctl) = &d.hctl else { continue };
                let parts: Vec<&str> = hctl.split(':').collect();
                let [hn, _, t, l] = parts.as_slice() else {
                    continue;
                };
                let (Ok(hn), Ok(t), Ok(l)) =
                    (hn.parse::<u32>(), t.parse::<i64>(), l.parse::<u64>())
                else {
                    continue;
                };
                let Some(hba) = hbas.iter().find(|b| b.host_no == hn) else {
                    continue;
                };
                let Some(i) = (0..fc.hbas).find(|i| hba_wwpn(h, *i) == hba.wwpn) else {
                    continue;
                };
                let Some(r) = hba.rports.iter().find(|r| r.scsi_target_id == t) else {
                    continue;
                };
                let Some(j) = (0..fc.ports).find(|j| fc_port_wwpn(*j) == r.wwpn) else {
                    continue;
                };
                let Some(p) = paths.iter().position(|x| *x == (i, j)) else {
                    continue;
                };
                out.insert(
                    DevKey {
                        host: h,
                        tgt: None,
                        portal: p,
                        lun: l,
                    },
                    (d.name.clone(), d.reported_wwid.clone()),
                );
            }
            return out;
        }
        let sessions = w.sessions(hid);
        let mut out = BTreeMap::new();
        for d in w.host_devices(hid) {
            let Some(hctl) = &d.hctl else { continue };
            let mut it = hctl.split(':');
            let (Some(hn), Some(l)) = (it.next(), it.nth(2)) else {
                continue;
            };
            let (Ok(hn), Ok(l)) = (hn.parse::<u32>(), l.parse::<u64>()) else {
                continue;
            };
            let Some(s) = sessions.iter().find(|s| s.host_no == hn) else {
                continue;
            };
            let Some(p) = self.portals.iter().position(|x| *x == s.portal) else {
                continue;
            };
            let Some(tgt) = self.tgt_of_iqn(&s.iqn) else {
                continue;
            };
            out.insert(
                DevKey {
                    host: h,
                    tgt,
                    portal: p,
                    lun: self.array_lun(l),
                },
                (d.name.clone(), d.reported_wwid.clone()),
            );
        }
        out
    }

    fn device_name_at(&self, k: &DevKey) -> Option<String> {
        self.world_devices(k.host).remove(k).map(|(n, _)| n)
    }

    /// The hosts hold exactly the disks, maps and sessions the model says.
    fn compare_state(&self, model: &ModelState) -> Result<(), String> {
        if model.is_nvme() {
            return super::nvme::compare_state(&self.lab, model);
        }
        for h in 0..model.topology.hosts {
            let hn = host_name(h);
            let hid = self.host_id(h);
            let named = self.world_devices(h);
            let world: BTreeMap<DevKey, String> =
                named.iter().map(|(k, (_, w))| (*k, w.clone())).collect();
            let want: BTreeMap<DevKey, String> = model
                .devices
                .iter()
                .filter(|(k, _)| k.host == h)
                .map(|(k, d)| {
                    (
                        *k,
                        self.wwid_of_ident(model, d.ident)
                            .unwrap_or_else(|| "?".to_owned()),
                    )
                })
                .collect();
            if world != want {
                return Err(format!(
                    "{hn} holds disks {} but the model expects {}",
                    describe_devices(model, &world),
                    describe_devices(model, &want)
                ));
            }
            // The kernel names follow the lowest-free rule (lost `remove` events leave links
            // on names, so the model tracks them).
            for (k, d) in model.devices.iter().filter(|(k, _)| k.host == h) {
                let got = named.get(k).map(|(n, _)| n.as_str());
                let expected = sd_name(d.name as usize);
                if got != Some(expected.as_str()) {
                    return Err(format!(
                        "{hn}: the disk at {} is {} but the kernel's lowest-free rule names it {expected}",
                        describe_key(k),
                        got.unwrap_or("missing")
                    ));
                }
            }
            let (sessions, dms) = {
                let w = lock(self.lab.world());
                let sessions: BTreeSet<(Tgt, usize)> = w
                    .sessions(hid)
                    .iter()
                    .filter_map(|s| {
                        Some((
                            self.tgt_of_iqn(&s.iqn)?,
                            self.portals.iter().position(|x| *x == s.portal)?,
                        ))
                    })
                    .collect();
                let dms: BTreeSet<(String, String)> = w
                    .host_devices(hid)
                    .into_iter()
                    .filter(|d| d.name.starts_with("dm-"))
                    .map(|d| (d.reported_wwid, d.name))
                    .collect();
                (sessions, dms)
            };
            let want_sessions: BTreeSet<(Tgt, usize)> = model
                .sessions
                .iter()
                .filter(|s| s.0 == h)
                .map(|s| (s.1, s.2))
                .collect();
            if sessions != want_sessions {
                return Err(format!(
                    "{hn} has sessions {} but the model expects {}",
                    describe_sessions(&sessions),
                    describe_sessions(&want_sessions)
                ));
            }
            // Every map by WWID, on the minor the kernel's lowest-free rule gives it.
            let want_dms: BTreeSet<(String, String)> = model
                .dms
                .iter()
                .filter(|d| d.0 == h)
                .filter_map(|d| {
                    let minor = model.dm_minor.get(d)?;
                    Some((self.wwid_of_ident(model, d.1)?, format!("dm-{minor}")))
                })
                .collect();
            if dms != want_dms {
                return Err(format!(
                    "{hn} has multipath maps for {dms:?} but the model expects {want_dms:?}"
                ));
            }
        }
        Ok(())
    }
}

/// What running a transition produced.
#[derive(Debug)]
struct Performed {
    /// Connector result: the attach's device, or the error text.
    result: Result<Option<DeviceInfo>, String>,
    /// A check that must run before the settle failed.
    early_failure: Option<String>,
    /// The attachment's device before an attach.
    previous: Option<DeviceInfo>,
    /// The host of an attach.
    host: usize,
}

fn describe_key(k: &DevKey) -> String {
    format!("{} portal {} LUN {}", tgt_text(k.tgt), k.portal, k.lun)
}

fn describe(set: &BTreeSet<(PropertyKind, String, Option<String>)>) -> String {
    if set.is_empty() {
        return "no violation".to_owned();
    }
    let items: Vec<String> = set
        .iter()
        .map(|(k, h, v)| match v {
            Some(v) => format!("{k} on {h} for {v}"),
            None => format!("{k} on {h}"),
        })
        .collect();
    format!("[{}]", items.join(", "))
}

fn tgt_text(t: Tgt) -> String {
    t.map_or_else(|| "shared".to_owned(), vol_name)
}

fn describe_devices(model: &ModelState, m: &BTreeMap<DevKey, String>) -> String {
    let _ = model;
    let items: Vec<String> = m
        .iter()
        .map(|(k, w)| {
            format!(
                "target {} portal {} lun {} = {}",
                tgt_text(k.tgt),
                k.portal,
                k.lun,
                w.get(w.len().saturating_sub(8)..).unwrap_or(w)
            )
        })
        .collect();
    format!("[{}]", items.join("; "))
}

fn describe_sessions(s: &BTreeSet<(Tgt, usize)>) -> String {
    let items: Vec<String> = s
        .iter()
        .map(|(t, p)| format!("target {} portal {p}", tgt_text(*t)))
        .collect();
    format!("[{}]", items.join("; "))
}
