//! Control-file writes: the sysfs files whose writes are actions (`scan`, `delete`,
//! `rescan`, `recovery_tmo`). Paths are resolved through the simulator's own links, so
//! `/sys/block/sda/device/delete`, `/sys/class/scsi_device/H:C:T:L/device/delete` and the
//! `/sys/devices/...` real path all reach the same device.

use crate::faults::Fault;
use crate::ids::{ControlError, Errno, HostId};
use crate::naming::Hctl;
use crate::tree::Node;
use crate::world::World;

/// One parsed `scan` field: a number or the `-` wildcard.
fn scan_field(s: &str, max_len: usize) -> Result<Option<u64>, ()> {
    if s == "-" {
        return Ok(None);
    }
    if s.len() > max_len {
        return Err(());
    }
    // simple_strtoull with base 0: 0x.. hex, 0.. octal, else decimal; trailing junk rejected.
    let v = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(h, 16)
    } else if s.len() > 1 && s.starts_with('0') {
        u64::from_str_radix(&s[1..], 8)
    } else {
        s.parse()
    };
    v.map(Some).map_err(|_| ())
}

/// Channel, target and LUN of a scan request (`None` = wildcard).
pub(crate) type ScanRequest = (Option<u64>, Option<u64>, Option<u64>);

/// Parses `C T L` as the kernel's `store_scan` does (`%3s %3s %20s`, exactly three fields).
pub(crate) fn parse_scan(content: &str) -> Result<ScanRequest, ()> {
    let fields: Vec<&str> = content.split_whitespace().collect();
    let [c, t, l] = fields.as_slice() else {
        return Err(());
    };
    Ok((scan_field(c, 3)?, scan_field(t, 3)?, scan_field(l, 20)?))
}

impl World {
    /// Writes `content` to a control file of the host's sysfs, as root would.
    pub fn write_control(
        &mut self,
        host: HostId,
        path: &str,
        content: &str,
    ) -> Result<(), ControlError> {
        let result = self.write_control_now(host, path, content);
        // It resolved `path` in the cached tree (if any) before changing anything.
        self.model_changed();
        result
    }

    fn write_control_now(
        &mut self,
        host: HostId,
        path: &str,
        content: &str,
    ) -> Result<(), ControlError> {
        if !path.starts_with('/') || path.contains('\0') {
            return Err(ControlError::new(
                Errno::ENOENT,
                path,
                "not an absolute path",
            ));
        }
        if self.faults.crashed(host) {
            return Err(ControlError::new(Errno::EIO, path, "crash fault"));
        }
        let tree = self.tree_shared(host);
        let Some(real) = tree.resolve(path) else {
            return Err(ControlError::new(Errno::ENOENT, path, "no such file"));
        };
        let mode = match tree.get(&real) {
            Some(Node::File { mode, .. }) | Some(Node::Unreadable { mode, .. }) => *mode,
            Some(Node::Dir { .. }) => {
                return Err(ControlError::new(Errno::EISDIR, path, "is a directory"));
            }
            // Writing raw data to a device node: accepted, nothing in the model changes.
            Some(Node::Block { .. }) | Some(Node::Char { .. }) => return Ok(()),
            Some(Node::Link { .. }) | None => {
                return Err(ControlError::new(Errno::ENOENT, path, "dangling link"));
            }
        };
        if mode & 0o200 == 0 {
            return Err(ControlError::new(
                Errno::EACCES,
                path,
                "read-only attribute",
            ));
        }
        tracing::debug!(%host, path, real = %real, content, "control write");
        let parts: Vec<&str> = real.trim_start_matches('/').split('/').collect();
        match parts.as_slice() {
            ["sys", "devices", "platform", h, "scsi_host", h2, "scan"] if h == h2 => {
                let host_no: u32 = h
                    .strip_prefix("host")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(u32::MAX);
                let (c, t, l) = parse_scan(content).map_err(|()| {
                    ControlError::new(
                        Errno::EINVAL,
                        path,
                        format!("malformed scan request {content:?}"),
                    )
                })?;
                let Some(sid) = self.host_ref(host).kernel.shosts.get(&host_no).copied() else {
                    return Err(ControlError::new(Errno::ENOENT, path, "no such SCSI host"));
                };
                // iscsi_user_scan: channel and id must match 0 (or be wildcards), else no-op.
                if c.is_none_or(|c| c == 0) && t.is_none_or(|t| t == 0) {
                    self.scan_session(host, sid, l);
                }
                Ok(())
            }
            ["sys", "devices", "platform", _, _, _, hctl, "delete"] => {
                let hctl = Hctl::parse(hctl)
                    .ok_or_else(|| ControlError::new(Errno::ENOENT, path, "no such device"))?;
                self.delete_scsi_device(host, path, hctl)
            }
            ["sys", "devices", "platform", _, _, _, hctl, "rescan"] => {
                let hctl = Hctl::parse(hctl)
                    .ok_or_else(|| ControlError::new(Errno::ENOENT, path, "no such device"))?;
                self.rescan_device(host, hctl);
                Ok(())
            }
            [
                "sys",
                "devices",
                "platform",
                _,
                sess,
                "iscsi_session",
                _,
                "recovery_tmo",
            ] => {
                let v: u32 = content
                    .trim()
                    .parse()
                    .map_err(|_| ControlError::new(Errno::EINVAL, path, "not a number"))?;
                let sid: u32 = sess
                    .strip_prefix("session")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(u32::MAX);
                if let Some(s) = self.host_mut(host).kernel.sessions.get_mut(&sid) {
                    s.recovery_tmo = v;
                }
                Ok(())
            }
            // FC hosts: `/sys/devices/<pci path>/hostH/scsi_host/hostH/scan`.
            ["sys", "devices", .., h, "scsi_host", h2, "scan"] if h == h2 => {
                let host_no: u32 = h
                    .strip_prefix("host")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(u32::MAX);
                let (c, t, l) = parse_scan(content).map_err(|()| {
                    ControlError::new(
                        Errno::EINVAL,
                        path,
                        format!("malformed scan request {content:?}"),
                    )
                })?;
                if self
                    .host_ref(host)
                    .kernel
                    .fc
                    .hba_by_host_no(host_no)
                    .is_none()
                {
                    return Err(ControlError::new(Errno::ENOENT, path, "no such SCSI host"));
                }
                self.fc_scan(host, host_no, c, t, l);
                Ok(())
            }
            // FC LUNs: `.../rport-H:0-N/targetH:0:T/H:0:T:L/{delete,rescan}`.
            ["sys", "devices", .., hctl, "delete"] if Hctl::parse(hctl).is_some() => {
                let hctl = Hctl::parse(hctl)
                    .ok_or_else(|| ControlError::new(Errno::ENOENT, path, "no such device"))?;
                self.delete_scsi_device(host, path, hctl)
            }
            ["sys", "devices", .., hctl, "rescan"] if Hctl::parse(hctl).is_some() => {
                let hctl = Hctl::parse(hctl)
                    .ok_or_else(|| ControlError::new(Errno::ENOENT, path, "no such device"))?;
                self.rescan_device(host, hctl);
                Ok(())
            }
            [
                "sys",
                "devices",
                "virtual",
                "nvme-fabrics",
                "ctl",
                ctrl,
                attr,
            ] => self.nvme_control(host, path, ctrl, attr, content),
            // Other writable attributes accept the write; the model does not track them.
            _ => Ok(()),
        }
    }

    /// `echo 1 > .../H:C:T:L/delete` (EBUSY with the fault armed).
    fn delete_scsi_device(
        &mut self,
        host: HostId,
        path: &str,
        hctl: Hctl,
    ) -> Result<(), ControlError> {
        let name = self
            .host_ref(host)
            .kernel
            .devices
            .get(&hctl)
            .and_then(|d| d.sd_name());
        let busy = self.faults.fire(|f| match f {
            Fault::DeviceDeleteBusy {
                host: h, device, ..
            } => {
                *h == host
                    && device
                        .as_deref()
                        .is_none_or(|d| d == hctl.to_string() || Some(d) == name.as_deref())
            }
            _ => false,
        });
        if busy {
            return Err(ControlError::new(Errno::EBUSY, path, "device busy (fault)"));
        }
        self.remove_scsi_device(host, hctl);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_parsing_matches_the_kernel() {
        assert_eq!(parse_scan("0 0 2"), Ok((Some(0), Some(0), Some(2))));
        assert_eq!(parse_scan("- - -\n"), Ok((None, None, None)));
        assert_eq!(parse_scan("0 0 0x10"), Ok((Some(0), Some(0), Some(16))));
        assert!(parse_scan("0 0 x").is_err());
        assert!(parse_scan("0 0").is_err());
        assert!(parse_scan("0 0 1 2").is_err());
        assert!(parse_scan("0000 0 1").is_err());
        assert!(parse_scan("").is_err());
        assert!(parse_scan("0 0 99999999999999999999999").is_err());
    }
}
