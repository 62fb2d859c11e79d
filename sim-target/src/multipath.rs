//! multipathd's state and reactions: path table, wwids file, alias bindings, and map
//! creation / reload / removal driven by udev events and CLI commands.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::faults::Fault;
use crate::ids::HostId;
use crate::naming::mpath_alias;
use crate::world::{Event, World};

/// One path multipathd knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MpPath {
    /// udev-form WWID read when the path was added.
    pub(crate) wwid: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Multipathd {
    pub(crate) installed: bool,
    pub(crate) running: bool,
    /// `/etc/multipath/wwids`.
    pub(crate) wwids: BTreeSet<String>,
    /// `/etc/multipath/bindings`: alias -> wwid, in creation order.
    pub(crate) bindings: Vec<(String, String)>,
    /// Path table: device name -> path.
    pub(crate) paths: BTreeMap<String, MpPath>,
}

impl Multipathd {
    pub(crate) fn new(installed: bool) -> Self {
        Self {
            installed,
            running: installed,
            wwids: BTreeSet::new(),
            bindings: Vec::new(),
            paths: BTreeMap::new(),
        }
    }
}

/// Why a map could not be flushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlushError {
    NoSuchMap,
    InUse,
}

impl World {
    /// Truth: the device names in multipathd's path table (`multipathd show paths`).
    pub fn multipathd_paths(&self, host: HostId) -> Vec<String> {
        self.host_ref(host).mpd.paths.keys().cloned().collect()
    }

    fn mpd_active(&self, host: HostId) -> bool {
        let m = &self.host_ref(host).mpd;
        m.installed && m.running
    }

    /// The map name for `wwid` (alias from the bindings file when friendly names are on).
    fn map_name_for(&mut self, host: HostId, wwid: &str) -> String {
        let h = self.host_mut(host);
        if !h.spec.user_friendly_names {
            return wwid.to_owned();
        }
        if let Some((alias, _)) = h.mpd.bindings.iter().find(|(_, w)| w == wwid) {
            return alias.clone();
        }
        let used: BTreeSet<&str> = h.mpd.bindings.iter().map(|(a, _)| a.as_str()).collect();
        let alias = (0..)
            .map(mpath_alias)
            .find(|a| !used.contains(a.as_str()))
            .unwrap_or_default();
        h.mpd.bindings.push((alias.clone(), wwid.to_owned()));
        alias
    }

    /// multipathd sees a new sd path (udev `add` processed).
    pub(crate) fn mpd_uevent_add(&mut self, host: HostId, dev: &str) {
        if self.mpd_active(host) && dev.starts_with("sd") {
            self.mpd_add_path(host, dev, false);
        }
    }

    /// multipathd sees a path go (udev `remove` processed); slow with the fault armed.
    pub(crate) fn mpd_uevent_remove(&mut self, host: HostId, dev: &str) {
        if !self.mpd_active(host) || !dev.starts_with("sd") {
            return;
        }
        let extra = self.faults.extra(|f| match f {
            Fault::MultipathdSlowRemove { host: h, extra } if *h == host => Some(*extra),
            _ => None,
        });
        if extra > Duration::ZERO {
            self.schedule(
                host,
                extra,
                Event::MpdRemove {
                    host,
                    dev: dev.to_owned(),
                },
            );
        } else {
            self.mpd_remove_path(host, dev);
        }
    }

    /// Adds a path to the table and, if it qualifies, to its map (creating the map).
    /// `forced`: `multipathd add path` from the CLI (multipath it even with strict).
    /// Returns false if the device does not exist.
    pub(crate) fn mpd_add_path(&mut self, host: HostId, dev: &str, forced: bool) -> bool {
        let Some(d) = self.host_ref(host).kernel.disk_by_name(dev).cloned() else {
            return false;
        };
        let wwid = d.identity.udev_wwid();
        let h = self.host_mut(host);
        h.mpd
            .paths
            .insert(dev.to_owned(), MpPath { wwid: wwid.clone() });
        let qualifies = !h.spec.find_multipaths_strict || h.mpd.wwids.contains(&wwid) || forced;
        if !qualifies {
            return true;
        }
        let remembered = h.mpd.wwids.contains(&wwid);
        if !h.spec.find_multipaths_strict {
            h.mpd.wwids.insert(wwid.clone());
        }
        let existing = h
            .kernel
            .dms
            .values()
            .find(|m| m.wwid == wwid)
            .map(|m| m.minor);
        match existing {
            Some(minor) => {
                if let Some(m) = h.kernel.dms.get_mut(&minor)
                    && !m.paths.iter().any(|p| p == dev)
                {
                    m.paths.push(dev.to_owned());
                }
                if let Some(s) = h.kernel.sessions.get_mut(&d.sid) {
                    s.recovery_tmo = 5;
                }
            }
            None => {
                // `adopt_paths`: every path of the table with this WWID that no map holds
                // joins the new map (leftover disks of an earlier attach included), in disk
                // sequence order.
                let k = &self.host_ref(host).kernel;
                let held: BTreeSet<&String> = k.dms.values().flat_map(|m| m.paths.iter()).collect();
                let mut members: Vec<(u64, String)> = self
                    .host_ref(host)
                    .mpd
                    .paths
                    .iter()
                    .filter(|(p, mp)| mp.wwid == wwid && !held.contains(p))
                    .filter_map(|(p, _)| k.disk_by_name(p).map(|d| (d.diskseq, p.clone())))
                    .collect();
                members.sort();
                let paths: Vec<String> = members.into_iter().map(|(_, p)| p).collect();
                let name = self.map_name_for(host, &wwid);
                self.dm_create(host, &name, &wwid, paths);
                // A WWID newly remembered: udev must re-run its rules on the paths it did
                // not classify as multipath members (`trigger_paths_udev_change`).
                if !remembered && !self.host_ref(host).udev.mpath_members.contains(dev) {
                    self.queue_udev(host, crate::udev::Action::Change, dev);
                }
            }
        }
        true
    }

    /// Removes a path from the table and from its map; a map left without paths is removed
    /// (unless it is held open).
    pub(crate) fn mpd_remove_path(&mut self, host: HostId, dev: &str) {
        let h = self.host_mut(host);
        h.mpd.paths.remove(dev);
        let mut emptied = Vec::new();
        for m in h.kernel.dms.values_mut() {
            let before = m.paths.len();
            m.paths.retain(|p| p != dev);
            if before != m.paths.len() && m.paths.is_empty() {
                emptied.push((m.minor, m.name.clone()));
            }
        }
        for (minor, name) in emptied {
            if !self.map_open(host, &name) {
                self.dm_remove(host, minor);
            }
        }
    }

    /// Whether `name` is held open (fault).
    pub(crate) fn map_open(&self, host: HostId, name: &str) -> bool {
        let wwid = self
            .host_ref(host)
            .kernel
            .dms
            .values()
            .find(|m| m.name == name)
            .map(|m| m.wwid.clone());
        self.faults.any(|f| match f {
            Fault::MapOpen { host: h, map } => {
                *h == host
                    && map
                        .as_deref()
                        .is_none_or(|m| m == name || Some(m) == wwid.as_deref())
            }
            _ => false,
        })
    }

    /// Finds a map by name, wwid, `dm-N`, `/dev/dm-N` or `/dev/mapper/<name>`.
    pub(crate) fn find_map(&self, host: HostId, key: &str) -> Option<u32> {
        let key = key
            .strip_prefix("/dev/mapper/")
            .or_else(|| key.strip_prefix("/dev/"))
            .unwrap_or(key);
        let k = &self.host_ref(host).kernel;
        k.dms
            .values()
            .find(|m| m.name == key || m.wwid == key || m.dev_name() == key)
            .map(|m| m.minor)
    }

    /// Flushes (removes) a map: `multipath -f` or `multipathd del map`.
    pub(crate) fn flush_map(&mut self, host: HostId, key: &str) -> Result<(), FlushError> {
        let minor = self.find_map(host, key).ok_or(FlushError::NoSuchMap)?;
        let name = self
            .host_ref(host)
            .kernel
            .dms
            .get(&minor)
            .map(|m| m.name.clone())
            .unwrap_or_default();
        if self.map_open(host, &name) {
            return Err(FlushError::InUse);
        }
        let fired = self
            .faults
            .fire(|f| matches!(f, Fault::MultipathFlushFails { host: h, .. } if *h == host));
        if fired {
            return Err(FlushError::InUse);
        }
        self.dm_remove(host, minor);
        Ok(())
    }
}
