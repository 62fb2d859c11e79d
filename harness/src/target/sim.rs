//! The simulator tier: the [`Lab`] is a [`Target`].

use brick_connectors::{DeviceInfo, DisconnectOptions, Host, VolumePaths};

use super::{Need, Target, TargetError, Tier};
use crate::checks::Violation;
use crate::lab::Lab;
use crate::simhost::lock;

/// The protocols scenario files can run on the simulated lab.
pub(crate) const SIMULATED_PROTOCOLS: &[&str] = &["iscsi", "fc", "nvmeof"];

impl Target for Lab {
    fn tier(&self) -> Tier {
        Tier::Sim
    }

    fn unsupported(&self, need: &Need) -> Option<String> {
        match need {
            Need::Protocol(p) if !SIMULATED_PROTOCOLS.contains(&p.as_str()) => Some(format!(
                "protocol `{p}` is not simulated yet for scenario files (simulated: {})",
                SIMULATED_PROTOCOLS.join(", ")
            )),
            _ => None,
        }
    }

    fn host_names(&self) -> Vec<String> {
        Lab::host_names(self)
    }

    fn create_volume(
        &mut self,
        volume: &str,
        array: &str,
        size_bytes: u64,
    ) -> Result<(), TargetError> {
        Ok(Lab::create_volume(self, volume, array, size_bytes)?)
    }

    fn map(&mut self, volume: &str, host: &str) -> Result<(), TargetError> {
        Ok(Lab::map(self, volume, host)?)
    }

    fn unmap(&mut self, volume: &str, host: &str) -> Result<(), TargetError> {
        Ok(Lab::unmap(self, volume, host)?)
    }

    fn delete(&mut self, volume: &str) -> Result<(), TargetError> {
        Ok(Lab::delete(self, volume)?)
    }

    fn identity(&self, volume: &str) -> Result<String, TargetError> {
        let id = self.volume_id(volume)?;
        lock(self.world())
            .volume_record(id)
            .map(|v| v.wwid.clone())
            .ok_or_else(|| TargetError::Unknown {
                kind: "volume",
                name: volume.to_owned(),
            })
    }

    fn props_json(&self, volume: &str, host: &str) -> Result<serde_json::Value, TargetError> {
        Ok(Lab::props_json(self, volume, host)?)
    }

    fn attach(&mut self, volume: &str, host: &str) -> Result<DeviceInfo, TargetError> {
        Ok(Lab::attach(self, volume, host)?)
    }

    fn detach(
        &mut self,
        volume: &str,
        host: &str,
        opts: DisconnectOptions,
        with_device_info: bool,
    ) -> Result<(), TargetError> {
        Ok(Lab::detach(self, volume, host, opts, with_device_info)?)
    }

    fn volume_paths(&self, volume: &str, host: &str) -> Result<VolumePaths, TargetError> {
        Ok(Lab::volume_paths(self, volume, host)?)
    }

    fn attached_device(&self, volume: &str, host: &str) -> Option<DeviceInfo> {
        self.attachments()
            .get(&(host.to_owned(), volume.to_owned()))
            .map(|a| a.device.clone())
    }

    fn attachments(&self) -> Vec<(String, String)> {
        Lab::attachments(self).keys().cloned().collect()
    }

    fn settle(&mut self) -> Result<(), TargetError> {
        Ok(Lab::settle(self)?)
    }

    fn check(&self) -> Vec<Violation> {
        Lab::check(self)
    }

    fn port(&self, host: &str) -> Result<&dyn Host, TargetError> {
        Ok(self.sim_host(host)?)
    }

    fn journal(&self, host: &str) -> Vec<String> {
        Lab::journal(self, host).unwrap_or_default()
    }

    fn tree_listing(&self, host: &str) -> Option<String> {
        Lab::tree_listing(self, host).ok()
    }

    fn target_sessions(&self, host: &str) -> Option<Result<Vec<String>, TargetError>> {
        let hid = match self.host_id(host) {
            Ok(h) => h,
            Err(e) => return Some(Err(e.into())),
        };
        let sessions = lock(self.world())
            .sessions(hid)
            .into_iter()
            .map(|s| format!("{} {}", s.portal, s.iqn))
            .collect();
        Some(Ok(sessions))
    }

    fn lab_mut(&mut self) -> Option<&mut Lab> {
        Some(self)
    }

    fn lab(&self) -> Option<&Lab> {
        Some(self)
    }
}
