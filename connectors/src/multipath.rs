//! dm-multipath helpers (os-brick `linuxscsi` multipath half): `multipath` / `multipathd`
//! commands with os-brick's retries, and parsers of their output.
//!
//! Retries wait on the host clock ([`Host::sleep`]), never on real time.

use std::time::Duration;

use crate::error::ConnectorError;
use crate::fs::HostFs;
use crate::host::{Cmd, Host, HostPath};
use crate::iscsiadm::run_checked;

/// One map as `multipath -l` / `-ll` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipathMap {
    /// The map name (the WWID, or a friendly name such as `mpath6`).
    pub name: String,
    /// The WWID when shown in parentheses (friendly names on), else `None`.
    pub wwid: Option<String>,
    /// The dm device (`dm-3`), if shown.
    pub dm: Option<String>,
    /// The paths, in order.
    pub paths: Vec<MultipathPath>,
}

/// One path line of `multipath -l`: `|- 0:0:0:1 sde 8:64 active undef running`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipathPath {
    /// `H:C:T:L`.
    pub hctl: String,
    /// The device name (`sde`).
    pub device: String,
}

/// Whether `line` is a multipath log line (`Oct 13 10:24:01 | ...`).
fn is_log_line(line: &str) -> bool {
    let mut tok = line.split_whitespace();
    let (Some(month), Some(day), Some(time), Some(bar)) =
        (tok.next(), tok.next(), tok.next(), tok.next())
    else {
        return false;
    };
    month.len() == 3
        && month.chars().all(|c| c.is_ascii_alphabetic())
        && day.chars().all(|c| c.is_ascii_digit())
        && time.len() == 8
        && time.split(':').count() == 3
        && time
            .split(':')
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_digit()))
        && bar == "|"
}

fn is_hctl(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 4
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

/// Parses `multipath -l <dev>` / `multipath -ll` output (first map only); log lines such as
/// `Oct 13 10:24:01 | /lib/udev/scsi_id exited with 1` and action prefixes (`create:`) are skipped.
pub fn parse_multipath_l(out: &str) -> Option<MultipathMap> {
    let mut lines = out
        .lines()
        .filter(|l| !l.trim().is_empty() && !is_log_line(l));
    let header = lines.next()?;
    let mut tok: Vec<&str> = header.split_whitespace().collect();
    if tok.first().is_some_and(|t| t.ends_with(':')) {
        tok.remove(0);
    }
    let name = (*tok.first()?).to_owned();
    let mut wwid = None;
    let mut dm = None;
    for t in tok.iter().skip(1) {
        if let Some(w) = t.strip_prefix('(').and_then(|t| t.strip_suffix(')')) {
            wwid = Some(w.to_owned());
        } else if t.starts_with("dm-") && dm.is_none() {
            dm = Some((*t).to_owned());
        }
    }
    let mut paths = Vec::new();
    for line in lines {
        let tok: Vec<&str> = line.split_whitespace().collect();
        if let Some(i) = tok.iter().position(|t| is_hctl(t))
            && let Some(dev) = tok.get(i + 1)
        {
            paths.push(MultipathPath {
                hctl: tok.get(i).map(|s| (*s).to_owned()).unwrap_or_default(),
                device: (*dev).to_owned(),
            });
        }
    }
    Some(MultipathMap {
        name,
        wwid,
        dm,
        paths,
    })
}

/// Parses `multipathd show paths raw format %d` (or `%d %w`): the device name of each line.
pub fn parse_show_paths(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| !is_log_line(l))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|d| {
            !d.is_empty()
                && d.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':'))
        })
        .map(str::to_owned)
        .collect()
}

/// Runs multipath tools on a host.
#[derive(Clone, Copy)]
pub(crate) struct Multipath<'h> {
    host: &'h dyn Host,
}

impl std::fmt::Debug for Multipath<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Multipath")
    }
}

/// Runs `cmd` up to `attempts` times, sleeping `interval`, `2*interval`, ... between tries
/// (oslo `execute(attempts=3, interval=10)`).
pub(crate) fn run_with_retries(
    host: &dyn Host,
    cmd: &Cmd,
    attempts: u32,
    interval: Duration,
) -> Result<crate::host::CmdOutput, ConnectorError> {
    let mut wait = interval;
    let mut last = None;
    for attempt in 1..=attempts.max(1) {
        match run_checked(host, cmd, &[0]) {
            Ok(out) => return Ok(out),
            Err(e @ ConnectorError::CommandFailed { .. }) => {
                tracing::debug!(%cmd, attempt, error = %e, "retrying");
                last = Some(e);
                if attempt < attempts {
                    host.sleep(wait);
                    wait = wait.saturating_mul(2);
                }
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| ConnectorError::CommandFailed {
        cmd: cmd.to_string(),
        status: -1,
        stdout: String::new(),
        stderr: "not run".to_owned(),
    }))
}

impl<'h> Multipath<'h> {
    pub(crate) fn new(host: &'h dyn Host) -> Self {
        Self { host }
    }

    /// `multipathd show status`: exit 0 and stdout not starting with `error receiving packet`.
    pub(crate) fn status(&self) -> Result<(), String> {
        let cmd = Cmd::new("multipathd").args(["show", "status"]);
        match self.host.run(&cmd) {
            Ok(out) if out.success() && !out.stdout.starts_with("error receiving packet") => Ok(()),
            Ok(out) => Err(format!(
                "exit {}: {}{}",
                out.status,
                out.stdout.trim(),
                out.stderr.trim()
            )),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Whether multipathd is running.
    pub(crate) fn is_running(&self) -> bool {
        self.status().is_ok()
    }

    /// `multipath -f <map name>`, 3 attempts, 10 s then 20 s apart.
    pub(crate) fn flush_map(&self, name: &str) -> Result<(), ConnectorError> {
        tracing::info!(map = name, "flushing multipath map");
        let cmd = Cmd::new("multipath").args(["-f", name]);
        let attempts = 3;
        #[cfg(feature = "mutants")]
        let attempts = if crate::mutants::active(crate::mutants::Mutant::SingleFlushAttempt) {
            1
        } else {
            attempts
        };
        run_with_retries(self.host, &cmd, attempts, Duration::from_secs(10))
            .map(|_| ())
            .map_err(|e| match e {
                ConnectorError::CommandFailed {
                    status,
                    stdout,
                    stderr,
                    ..
                } => ConnectorError::FlushFailed {
                    map: name.to_owned(),
                    output: format!("exit {status}: {}", join_out(&stdout, &stderr)),
                },
                other => other,
            })
    }

    /// `multipath -a <wwid>`; true iff it printed exactly `wwid '<wwid>' added`.
    pub(crate) fn add_wwid(&self, wwid: &str) -> bool {
        let cmd = Cmd::new("multipath").args(["-a", wwid]);
        match self.host.run(&cmd) {
            Ok(out) => {
                let ok = out.stdout.trim() == format!("wwid '{wwid}' added");
                tracing::debug!(wwid, ok, "multipath -a");
                ok
            }
            Err(e) => {
                tracing::warn!(wwid, error = %e, "multipath -a failed");
                false
            }
        }
    }

    /// `multipathd add path /dev/<dev>`; true iff it printed `ok`.
    pub(crate) fn add_path(&self, dev: &str) -> bool {
        let cmd = Cmd::new("multipathd").args(["add", "path", &format!("/dev/{dev}")]);
        self.host
            .run(&cmd)
            .map(|o| o.stdout.trim() == "ok")
            .unwrap_or(false)
    }

    /// `multipathd del path /dev/<dev>`; true iff it printed `ok`.
    pub(crate) fn del_path(&self, dev: &str) -> bool {
        let cmd = Cmd::new("multipathd").args(["del", "path", &format!("/dev/{dev}")]);
        self.host
            .run(&cmd)
            .map(|o| o.stdout.trim() == "ok")
            .unwrap_or(false)
    }

    /// `multipath -C <dm>` until it succeeds (`attempts`, exponential from `interval`).
    pub(crate) fn wait_ready(
        &self,
        dm: &str,
        attempts: u32,
        interval: Duration,
    ) -> Result<(), ConnectorError> {
        let cmd = Cmd::new("multipath").args(["-C", dm]);
        run_with_retries(self.host, &cmd, attempts, interval).map(|_| ())
    }

    /// `multipathd show paths raw format %d`: the device names multipathd still monitors.
    pub(crate) fn show_paths(&self) -> Result<Vec<String>, ConnectorError> {
        let cmd = Cmd::new("multipathd").args(["show", "paths", "raw", "format", "%d"]);
        let out = run_checked(self.host, &cmd, &[0])?;
        Ok(parse_show_paths(&out.stdout))
    }

    /// Waits (3 tries, 1 s then 2 s) for multipathd to stop listing `names`; falls back to
    /// `multipathd del path` for each one still listed. Returns the names still listed after that.
    pub(crate) fn wait_paths_removed(&self, names: &[String]) -> Vec<String> {
        let mut wait = Duration::from_secs(1);
        let mut remaining: Vec<String> = names.to_vec();
        for attempt in 1..=3 {
            match self.show_paths() {
                Ok(listed) => {
                    remaining.retain(|n| listed.contains(n));
                    if remaining.is_empty() {
                        return remaining;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "multipathd show paths failed");
                }
            }
            if attempt < 3 {
                self.host.sleep(wait);
                wait = wait.saturating_mul(2);
            }
        }
        tracing::info!(paths = ?remaining, "multipathd did not drop paths; deleting them");
        for dev in &remaining {
            self.del_path(dev);
        }
        match self.show_paths() {
            Ok(listed) => remaining.retain(|n| listed.contains(n)),
            Err(_) => remaining.clear(),
        }
        remaining
    }

    /// `multipathd del map <map name>` for the dm device `dm` whose map is `name`, then checks
    /// that `/sys/block/<dm>/dm/name` is gone (3 tries). This passes the *map name* to
    /// multipathd and the *dm device* to the check (os-brick's iSCSI path mixes them up).
    pub(crate) fn del_map(&self, dm: &str, name: &str) -> Result<(), ConnectorError> {
        let fs = HostFs::of(self.host);
        let name_attr = HostPath::new("/sys/block")?
            .join(dm)?
            .join("dm")?
            .join("name")?;
        let mut wait = Duration::from_secs(1);
        let mut last_output = String::new();
        for attempt in 1..=3 {
            let current = fs.read_attr(&name_attr).ok().flatten();
            if current.as_deref() != Some(name) {
                tracing::debug!(dm, name, "multipath map no longer present");
                return Ok(());
            }
            let cmd = Cmd::new("multipathd").args(["del", "map", name]);
            match self.host.run(&cmd) {
                Ok(out) => last_output = join_out(out.stdout.trim(), out.stderr.trim()),
                Err(e) => last_output = e.to_string(),
            }
            if fs.read_attr(&name_attr).ok().flatten().as_deref() != Some(name) {
                return Ok(());
            }
            if attempt < 3 {
                self.host.sleep(wait);
                wait = wait.saturating_mul(2);
            }
        }
        Err(ConnectorError::MapNotRemoved {
            map: name.to_owned(),
            output: last_output,
        })
    }

    /// `multipathd reconfigure` then `multipathd resize map <dm>`; `fail`/`timeout` in the
    /// output is an error (timeouts retried up to 120 s on the host clock).
    pub(crate) fn resize_map(&self, dm_path: &str) -> Result<(), ConnectorError> {
        let reconf = Cmd::new("multipathd").arg("reconfigure");
        if let Err(e) = run_checked(self.host, &reconf, &[0]) {
            tracing::warn!(error = %e, "multipathd reconfigure failed");
        }
        let cmd = Cmd::new("multipathd").args(["resize", "map", dm_path]);
        let start = self.host.now();
        loop {
            let out = run_checked(self.host, &cmd, &[0])?;
            let text = out.stdout.trim().to_owned();
            if text.contains("timeout") && self.host.now() - start < Duration::from_secs(120) {
                self.host.sleep(Duration::from_secs(10));
                continue;
            }
            if text.contains("fail") || text.contains("timeout") {
                return Err(ConnectorError::ExtendFailed {
                    reason: format!("multipathd resize map {dm_path}: {text}"),
                });
            }
            return Ok(());
        }
    }
}

fn join_out(stdout: &str, stderr: &str) -> String {
    match (stdout.is_empty(), stderr.is_empty()) {
        (true, true) => "no output".to_owned(),
        (false, true) => stdout.to_owned(),
        (true, false) => stderr.to_owned(),
        (false, false) => format!("{stdout} {stderr}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipath_ll_from_real_capture() {
        let out = "360000000000000000e00000000010001 dm-0 IET,VIRTUAL-DISK\n\
size=32M features='0' hwhandler='0' wp=rw\n\
|-+- policy='service-time 0' prio=1 status=active\n\
| `- 0:0:0:1 sda 8:0  active ready running\n\
`-+- policy='service-time 0' prio=1 status=enabled\n\
  `- 1:0:0:1 sdb 8:16 active ready running\n";
        let m = parse_multipath_l(out).unwrap();
        assert_eq!(m.name, "360000000000000000e00000000010001");
        assert_eq!(m.wwid, None);
        assert_eq!(m.dm.as_deref(), Some("dm-0"));
        let devs: Vec<&str> = m.paths.iter().map(|p| p.device.as_str()).collect();
        assert_eq!(devs, ["sda", "sdb"]);
        assert_eq!(m.paths[1].hctl, "1:0:0:1");
    }

    #[test]
    fn multipath_l_friendly_names_log_noise_and_action_prefix() {
        let out = "Oct 13 10:24:01 | /lib/udev/scsi_id exited with 1\n\
Jun 21 04:39:26 | 8:160: path wwid appears to have changed. Using old wwid.\n\
mpath6 (350002ac20398383d) dm-3 3PARdata,VV\n\
size=2.0G features='0' hwhandler='0' wp=rw\n\
`-+- policy='round-robin 0' prio=-1 status=active\n\
  |- 0:0:0:1 sde 8:64 active undef running\n\
  `- 2:0:0:1 sdf 8:80 active undef running\n";
        let m = parse_multipath_l(out).unwrap();
        assert_eq!(m.name, "mpath6");
        assert_eq!(m.wwid.as_deref(), Some("350002ac20398383d"));
        assert_eq!(m.dm.as_deref(), Some("dm-3"));
        assert_eq!(m.paths.len(), 2);
        let created =
            parse_multipath_l("create: 36005076303ffc48e0000000000000101 dm-2 IBM,2107900\n")
                .unwrap();
        assert_eq!(created.name, "36005076303ffc48e0000000000000101");
        assert_eq!(created.dm.as_deref(), Some("dm-2"));
        assert!(parse_multipath_l("").is_none());
        assert!(parse_multipath_l("Oct 13 10:24:01 | only noise\n").is_none());
    }

    #[test]
    fn show_paths_lists_device_names() {
        let out = "sda 360000000000000000e00000000010001\nsdb 360000000000000000e00000000010001\n";
        assert_eq!(parse_show_paths(out), ["sda", "sdb"]);
        assert!(parse_show_paths("").is_empty());
        assert_eq!(parse_show_paths("sdc\n../evil\n"), ["sdc"]);
    }
}
