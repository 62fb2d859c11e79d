//! A real-kernel target: volumes are sparse files attached with the kernel's loop driver.
//!
//! [`LoopTarget`] plays the array *and* the attach step on the machine it runs on: it creates
//! volume files in its own temporary directory, attaches them with `losetup --find --show`
//! (the kernel hands out the lowest free `/dev/loopN`, so a detached volume's device number is
//! soon reused for the next volume, as an array reuses a LUN id) and detaches them with
//! `losetup -d`. The `local` connector then looks at the real `/` through
//! [`RealHost::system`], and [`LoopTarget::check`] compares what it reports, and what
//! `/sys/block/loopN/loop/backing_file` says, with what the target attached.
//!
//! Safety on a shared machine:
//! - only devices this target attached are ever detached, and only after
//!   `/sys/block/loopN/loop/backing_file` was read back and names one of its own files
//!   (possibly with the kernel's ` (deleted)` suffix);
//! - [`Drop`] detaches every device still attached and removes the files, also while a
//!   panicking test unwinds; a process killed outright can leak devices, which
//!   [`LoopTarget::reclaim_stale`] finds later (their temporary directory no longer exists).
//!
//! Attaching needs root (`CAP_SYS_ADMIN`), `/dev/loop-control` and `losetup` (util-linux):
//! [`LoopTarget::unavailable_reason`] says which is missing, for tests to print and skip.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use brick_connectors::local::loop_identity;
use brick_connectors::{
    Cmd, ConnectionProperties, ConnectorConfig, ConnectorError, FsError, Host, HostError, HostFs,
    HostPath, IdError, PropsError, Protocol, RealHost, VolumePaths, Wwid, connector_for,
};
use serde_json::{Value, json};

use crate::checks::{PropertyKind, Violation};

/// The host name used in the violations of a [`LoopTarget`].
pub const LOOP_HOST: &str = "localhost";

/// Prefix of every target's temporary directory (how [`LoopTarget::reclaim_stale`] knows ours).
const DIR_PREFIX: &str = "brick-loop-";

/// What the kernel appends to `backing_file` once the file has been unlinked.
const DELETED_SUFFIX: &str = " (deleted)";

/// How long a detach may take to show in sysfs (a detach while udev still holds the device
/// open is deferred by the kernel until the last close).
const RELEASE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the loop target could not do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoopError {
    /// This machine cannot attach loop devices (not root, no loop driver, no `losetup`).
    #[error("loop devices unavailable: {reason}")]
    Unavailable {
        /// Why, in words a test can print.
        reason: String,
    },
    /// A volume name that cannot be a file name in the target's directory.
    #[error("bad volume name {name:?}: {reason}")]
    BadName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A size the loop driver cannot use.
    #[error("bad volume size {size}: must be a positive multiple of 512 bytes")]
    BadSize {
        /// The size given, in bytes.
        size: u64,
    },
    /// A volume this target does not have.
    #[error("unknown volume `{name}`")]
    Unknown {
        /// The name asked for.
        name: String,
    },
    /// A volume created twice.
    #[error("volume `{name}` already exists")]
    Duplicate {
        /// The repeated name.
        name: String,
    },
    /// Attaching a volume that is attached already.
    #[error("volume `{name}` is already attached at {device}")]
    AlreadyAttached {
        /// The volume.
        name: String,
        /// Its device.
        device: HostPath,
    },
    /// An operation that needs the volume attached (or its file present).
    #[error("volume `{name}` is {state}")]
    NotAttached {
        /// The volume.
        name: String,
        /// `"not attached"` or `"deleted"`.
        state: &'static str,
    },
    /// `losetup` failed.
    #[error("`{cmd}` exited with {status}: {stderr}")]
    Losetup {
        /// The command line.
        cmd: String,
        /// Its exit status.
        status: i32,
        /// Its standard error, trimmed.
        stderr: String,
    },
    /// `losetup --show` printed something that is not `/dev/loopN`.
    #[error("`{cmd}` printed {output:?}, expected a /dev/loopN path")]
    UnexpectedOutput {
        /// The command line.
        cmd: String,
        /// What it printed.
        output: String,
    },
    /// A device this target recorded is now attached to a file that is not the target's:
    /// it was left alone.
    #[error("{device} is attached to {backing:?}, not to {expected}: left alone")]
    NotOurs {
        /// The device.
        device: HostPath,
        /// What its `backing_file` says.
        backing: String,
        /// The file the target attached.
        expected: String,
    },
    /// A file operation in the target's directory failed.
    #[error("{what}: {source}")]
    Io {
        /// What the target was doing.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Reading sysfs failed.
    #[error("reading sysfs: {0}")]
    Fs(#[from] FsError),
    /// Running a command failed.
    #[error(transparent)]
    Host(#[from] HostError),
    /// A backing file path that cannot be an identity (too long for a WWID).
    #[error("identity: {0}")]
    Identity(#[from] IdError),
    /// Connection properties that do not parse.
    #[error("connection properties: {0}")]
    Props(#[from] PropsError),
    /// The local connector failed.
    #[error("local connector: {0}")]
    Connector(#[from] ConnectorError),
}

/// One attached loop device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopDevice {
    /// The device, `/dev/loopN`.
    pub device: HostPath,
    /// The file it is backed by (canonical absolute path, as the kernel reports it).
    pub backing_file: PathBuf,
}

impl LoopDevice {
    /// The kernel name, `loopN`.
    pub fn name(&self) -> &str {
        self.device.file_name()
    }

    /// os-brick's `LOCAL` connection properties for this device:
    /// `{"driver_volume_type": "local", "data": {"device_path": "/dev/loopN"}}`.
    pub fn connection_properties(&self) -> Value {
        json!({
            "driver_volume_type": "local",
            "data": {"device_path": self.device.as_str()},
        })
    }
}

#[derive(Debug)]
struct LoopVolume {
    /// Canonical path of the sparse file, UTF-8.
    file: String,
    /// The device while attached.
    device: Option<LoopDevice>,
    /// Every device the volume was ever attached at (the last one first).
    history: Vec<HostPath>,
    /// The file was deleted (the "array" deleted the volume).
    deleted: bool,
}

/// Volumes as sparse files, attached with the real kernel's loop driver (see the module docs).
pub struct LoopTarget {
    host: RealHost,
    /// Canonical path of the temporary directory (kept UTF-8).
    dir: String,
    volumes: BTreeMap<String, LoopVolume>,
    /// Owns the directory; removed after the devices are detached.
    tmp: Option<tempfile::TempDir>,
}

impl fmt::Debug for LoopTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoopTarget")
            .field("dir", &self.dir)
            .field("volumes", &self.volumes)
            .finish()
    }
}

/// Whether a `backing_file` value names `file`, before or after the file was unlinked.
fn backing_names(backing: &str, file: &str) -> bool {
    backing == file || backing.strip_suffix(DELETED_SUFFIX) == Some(file)
}

/// Parses `losetup --show` output: exactly one `/dev/loopN`.
fn parse_loop_device(output: &str) -> Option<HostPath> {
    let line = output.trim();
    let digits = line.strip_prefix("/dev/loop")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    HostPath::new(line).ok()
}

/// Checks a volume name: 1 to 64 of `A-Z a-z 0-9 . _ -`, not starting with `.`.
fn check_name(name: &str) -> Result<(), LoopError> {
    let bad = |reason| {
        Err(LoopError::BadName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() || name.len() > 64 {
        return bad("must be 1 to 64 characters");
    }
    if name.starts_with('.') {
        return bad("must not start with `.`");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return bad("only letters, digits, `.`, `_` and `-` are allowed");
    }
    Ok(())
}

/// Whether `backing` (a `backing_file` value) is a file of a brick loop target under `tmp`
/// whose directory no longer exists: the device was leaked by a target that is gone.
fn is_stale_backing(backing: &str, tmp: &str) -> bool {
    let path = backing.strip_suffix(DELETED_SUFFIX).unwrap_or(backing);
    let Some(rest) = path.strip_prefix(tmp).and_then(|r| r.strip_prefix('/')) else {
        return false;
    };
    let Some((dir, file)) = rest.split_once('/') else {
        return false;
    };
    if !dir.starts_with(DIR_PREFIX) || file.is_empty() || file.contains('/') {
        return false;
    }
    let dir_path = Path::new(tmp).join(dir);
    matches!(std::fs::symlink_metadata(&dir_path), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
}

/// The canonical system temporary directory, as UTF-8.
fn canonical_temp_dir() -> Result<String, LoopError> {
    let tmp = std::env::temp_dir();
    let canon = std::fs::canonicalize(&tmp).map_err(|source| LoopError::Io {
        what: format!("resolving {}", tmp.display()),
        source,
    })?;
    canon
        .into_os_string()
        .into_string()
        .map_err(|raw| LoopError::Io {
            what: format!("temporary directory {raw:?}"),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8"),
        })
}

/// Every loop device of the real host with its `backing_file` (unattached devices and
/// devices that vanish while being read are left out).
fn attached_loop_devices() -> Vec<(String, String)> {
    let fs = HostFs::new(Path::new("/"));
    let Ok(block) = HostPath::new("/sys/block") else {
        return Vec::new();
    };
    let names = match fs.read_dir(&block) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list /sys/block");
            return Vec::new();
        }
    };
    names
        .into_iter()
        .filter(|n| n.starts_with("loop"))
        .filter_map(|n| match backing_of(&n) {
            Ok(Some(b)) => Some((n, b)),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(device = n, error = %e, "cannot read backing_file");
                None
            }
        })
        .collect()
}

/// `/sys/block/<name>/loop/backing_file` of the real host; `None` when the device is not
/// attached (no `loop` directory, or an empty value while it is being torn down).
fn backing_of(name: &str) -> Result<Option<String>, LoopError> {
    let attr = HostPath::new("/sys/block")?
        .join(name)?
        .join("loop")?
        .join("backing_file")?;
    Ok(HostFs::new(Path::new("/"))
        .read_attr(&attr)?
        .filter(|b| !b.is_empty()))
}

/// Bit of `CAP_SYS_ADMIN` in the capability masks of `/proc/<pid>/status`.
const CAP_SYS_ADMIN_BIT: u32 = 21;

/// Whether the effective capabilities (`CapEff:` of `/proc/self/status`) include
/// `CAP_SYS_ADMIN`; `None` when they cannot be read.
fn has_cap_sys_admin() -> Option<bool> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    cap_eff_has(&status, CAP_SYS_ADMIN_BIT)
}

/// Whether the `CapEff:` line of a `/proc/<pid>/status` text has capability `bit`.
fn cap_eff_has(status: &str, bit: u32) -> Option<bool> {
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))?
        .trim();
    let mask = u64::from_str_radix(hex, 16).ok()?;
    Some(mask & (1u64 << bit) != 0)
}

fn losetup_error(cmd: &Cmd, out: &brick_connectors::CmdOutput) -> LoopError {
    LoopError::Losetup {
        cmd: cmd.to_string(),
        status: out.status,
        stderr: out.stderr.trim().to_owned(),
    }
}

impl LoopTarget {
    /// Why loop devices cannot be used here, or `None` when they can: not Linux, not root,
    /// no `/dev/loop-control`, or no `losetup` on `PATH`.
    pub fn unavailable_reason() -> Option<String> {
        if !cfg!(target_os = "linux") {
            return Some("loop devices need Linux".to_owned());
        }
        let euid = nix::unistd::geteuid();
        if !euid.is_root() {
            return Some(format!(
                "not root (euid {euid}): attaching loop devices needs CAP_SYS_ADMIN"
            ));
        }
        if let Some(false) = has_cap_sys_admin() {
            return Some(
                "root without CAP_SYS_ADMIN (a container?): the loop driver refuses to attach"
                    .to_owned(),
            );
        }
        let control = Path::new("/dev/loop-control");
        if !control.exists() {
            return Some("no /dev/loop-control: the loop driver is not loaded".to_owned());
        }
        // Opening has no side effect; it fails in containers without access to the device.
        if let Err(e) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(control)
        {
            return Some(format!("cannot open /dev/loop-control: {e}"));
        }
        match RealHost::system().run(&Cmd::new("losetup").arg("--version")) {
            Ok(out) if out.success() => None,
            Ok(out) => Some(format!(
                "`losetup --version` exited with {}: {}",
                out.status,
                out.stderr.trim()
            )),
            Err(e) => Some(format!("losetup (util-linux) not usable: {e}")),
        }
    }

    /// A target with an empty temporary directory, or [`LoopError::Unavailable`] with the
    /// reason of [`LoopTarget::unavailable_reason`].
    pub fn new() -> Result<Self, LoopError> {
        if let Some(reason) = Self::unavailable_reason() {
            return Err(LoopError::Unavailable { reason });
        }
        let tmp = tempfile::Builder::new()
            .prefix(DIR_PREFIX)
            .tempdir_in(canonical_temp_dir()?)
            .map_err(|source| LoopError::Io {
                what: "creating the target's temporary directory".to_owned(),
                source,
            })?;
        let dir = tmp
            .path()
            .to_str()
            .ok_or_else(|| LoopError::Io {
                what: format!("temporary directory {}", tmp.path().display()),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8"),
            })?
            .to_owned();
        tracing::debug!(dir, "loop target created");
        Ok(Self {
            host: RealHost::system(),
            dir,
            volumes: BTreeMap::new(),
            tmp: Some(tmp),
        })
    }

    /// The directory holding the volume files.
    pub fn dir(&self) -> &Path {
        Path::new(&self.dir)
    }

    fn volume(&self, name: &str) -> Result<&LoopVolume, LoopError> {
        self.volumes.get(name).ok_or_else(|| LoopError::Unknown {
            name: name.to_owned(),
        })
    }

    fn volume_mut(&mut self, name: &str) -> Result<&mut LoopVolume, LoopError> {
        self.volumes
            .get_mut(name)
            .ok_or_else(|| LoopError::Unknown {
                name: name.to_owned(),
            })
    }

    /// Creates volume `name` as a sparse file of `size_bytes` (a positive multiple of 512)
    /// and returns the file's path.
    pub fn create_volume(&mut self, name: &str, size_bytes: u64) -> Result<PathBuf, LoopError> {
        check_name(name)?;
        if size_bytes == 0 || !size_bytes.is_multiple_of(512) {
            return Err(LoopError::BadSize { size: size_bytes });
        }
        if self.volumes.contains_key(name) {
            return Err(LoopError::Duplicate {
                name: name.to_owned(),
            });
        }
        let file = format!("{}/{name}.img", self.dir);
        let io = |what: &str| {
            let what = format!("{what} {file}");
            move |source| LoopError::Io { what, source }
        };
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&file)
            .map_err(io("creating"))?;
        f.set_len(size_bytes).map_err(io("sizing"))?;
        self.volumes.insert(
            name.to_owned(),
            LoopVolume {
                file: file.clone(),
                device: None,
                history: Vec::new(),
                deleted: false,
            },
        );
        Ok(PathBuf::from(file))
    }

    /// Attaches volume `name` at the lowest free loop device (`losetup --find --show FILE`).
    pub fn attach(&mut self, name: &str) -> Result<LoopDevice, LoopError> {
        let vol = self.volume(name)?;
        if let Some(dev) = &vol.device {
            return Err(LoopError::AlreadyAttached {
                name: name.to_owned(),
                device: dev.device.clone(),
            });
        }
        if vol.deleted {
            return Err(LoopError::NotAttached {
                name: name.to_owned(),
                state: "deleted",
            });
        }
        let cmd = Cmd::new("losetup").args(["--find", "--show", vol.file.as_str()]);
        let out = self.host.run(&cmd)?;
        if !out.success() {
            return Err(losetup_error(&cmd, &out));
        }
        let Some(device) = parse_loop_device(&out.stdout) else {
            // Something may be attached that we cannot name: detach whatever holds our file.
            let file = vol.file.clone();
            let find = Cmd::new("losetup").args(["-j", file.as_str()]);
            if let Ok(found) = self.host.run(&find) {
                for line in found.stdout.lines() {
                    let dev = line.split(':').next().and_then(parse_loop_device);
                    if let Some(dev) = dev
                        && let Err(e) = release(&self.host, &dev, &file)
                    {
                        tracing::warn!(device = %dev, error = %e, "could not detach");
                    }
                }
            }
            return Err(LoopError::UnexpectedOutput {
                cmd: cmd.to_string(),
                output: out.stdout,
            });
        };
        let dev = LoopDevice {
            device,
            backing_file: PathBuf::from(&vol.file),
        };
        tracing::info!(volume = name, device = %dev.device, "attached");
        let vol = self.volume_mut(name)?;
        vol.history.insert(0, dev.device.clone());
        vol.device = Some(dev.clone());
        Ok(dev)
    }

    /// Detaches volume `name` (`losetup -d /dev/loopN`), after checking that the device is
    /// still backed by the volume's file, and waits (up to 2 s) until sysfs shows it.
    /// A device that was already detached by someone else is forgotten without error.
    pub fn detach(&mut self, name: &str) -> Result<(), LoopError> {
        let vol = self.volume(name)?;
        let Some(dev) = vol.device.clone() else {
            return Err(LoopError::NotAttached {
                name: name.to_owned(),
                state: "not attached",
            });
        };
        let result = release(&self.host, &dev.device, &vol.file);
        // Keep the record when losetup failed, so that Drop tries again.
        if !matches!(result, Err(LoopError::Losetup { .. } | LoopError::Host(_))) {
            self.volume_mut(name)?.device = None;
        }
        tracing::info!(volume = name, device = %dev.device, ok = result.is_ok(), "detached");
        result
    }

    /// Deletes volume `name`'s file, as an array deletes a volume. If the volume is still
    /// attached the device stays attached to the unlinked file (the kernel then reports
    /// `backing_file` with a ` (deleted)` suffix): the shape of a leaked detach, which
    /// [`LoopTarget::check`] reports. [`Drop`] still detaches it.
    pub fn delete_volume(&mut self, name: &str) -> Result<(), LoopError> {
        let vol = self.volume_mut(name)?;
        if vol.deleted {
            return Ok(());
        }
        std::fs::remove_file(&vol.file).map_err(|source| LoopError::Io {
            what: format!("deleting {}", vol.file),
            source,
        })?;
        vol.deleted = true;
        Ok(())
    }

    /// The device of volume `name` while it is attached.
    pub fn device(&self, name: &str) -> Option<&LoopDevice> {
        self.volumes.get(name).and_then(|v| v.device.as_ref())
    }

    /// The path of volume `name`'s file (which may have been deleted).
    pub fn backing_file(&self, name: &str) -> Result<&Path, LoopError> {
        Ok(Path::new(&self.volume(name)?.file))
    }

    /// Volume `name`'s identity: its backing file path, in the form the local connector
    /// reports it ([`loop_identity`]).
    pub fn identity(&self, name: &str) -> Result<Wwid, LoopError> {
        Ok(loop_identity(&self.volume(name)?.file)?)
    }

    /// os-brick's `LOCAL` connection properties of attached volume `name`
    /// (`{"driver_volume_type": "local", "data": {"device_path": "/dev/loopN"}}`).
    pub fn connection_properties(&self, name: &str) -> Result<Value, LoopError> {
        self.volume(name)?
            .device
            .as_ref()
            .map(LoopDevice::connection_properties)
            .ok_or_else(|| LoopError::NotAttached {
                name: name.to_owned(),
                state: "not attached",
            })
    }

    /// What the local connector reports on the real `/` for `props` (os-brick `LOCAL`
    /// properties, wrapped or bare).
    pub fn volume_paths(&self, props: &Value) -> Result<VolumePaths, LoopError> {
        let props = ConnectionProperties::from_json(props, Some(Protocol::Local))?;
        let connector = connector_for(Protocol::Local, &self.host, ConnectorConfig::default())?;
        Ok(connector.get_volume_paths(&props)?)
    }

    /// Checks the real host against the target's record, read-only:
    /// - an attached volume: `/sys/block/loopN/loop/backing_file` names its file and the local
    ///   connector reports `/dev/loopN` with its identity (another volume's identity is
    ///   cross-talk, anything else a truth violation);
    /// - a detached or deleted volume: no loop device is backed by its file any more (with or
    ///   without ` (deleted)`), and the local connector reports its identity on none of the
    ///   devices it had (leftovers).
    pub fn check(&self) -> Vec<Violation> {
        let attached = attached_loop_devices();
        let mut out = Vec::new();
        let violation = |kind, volume: &str, detail: String| Violation {
            kind,
            host: LOOP_HOST.to_owned(),
            volume: Some(volume.to_owned()),
            detail,
        };
        for (name, vol) in &self.volumes {
            let backed: Vec<&(String, String)> = attached
                .iter()
                .filter(|(_, b)| backing_names(b, &vol.file))
                .collect();
            match (&vol.device, vol.deleted) {
                (Some(dev), false) => {
                    match attached.iter().find(|(d, _)| d == dev.name()) {
                        Some((_, b)) if *b == vol.file => {}
                        other => out.push(violation(
                            PropertyKind::Truth,
                            name,
                            format!(
                                "{} should be attached to {} but its backing_file is {:?}",
                                dev.device,
                                vol.file,
                                other.map(|(_, b)| b.as_str()).unwrap_or("(none)")
                            ),
                        )),
                    }
                    for (d, b) in backed.iter().filter(|(d, _)| d != dev.name()) {
                        out.push(violation(
                            PropertyKind::Leftover,
                            name,
                            format!("/dev/{d} is also attached to {b:?}"),
                        ));
                    }
                    if let Some(v) = self.check_reported(name, dev) {
                        out.push(v);
                    }
                }
                (device, deleted) => {
                    let state = if deleted { "deleted" } else { "detached" };
                    for (d, b) in &backed {
                        out.push(violation(
                            PropertyKind::Leftover,
                            name,
                            format!("volume is {state} but /dev/{d} is still attached to {b:?}"),
                        ));
                    }
                    let Ok(own) = loop_identity(&vol.file) else {
                        continue;
                    };
                    let current = device.as_ref().map(|d| &d.device);
                    for dev in vol.history.iter().filter(|d| Some(*d) != current) {
                        let props = json!({"device_path": dev.as_str()});
                        if let Ok(paths) = self.volume_paths(&props)
                            && paths.paths.iter().any(|p| p.wwid.as_ref() == Some(&own))
                        {
                            out.push(violation(
                                PropertyKind::Leftover,
                                name,
                                format!("the local connector still reports {dev} with the volume's identity {own}"),
                            ));
                        }
                    }
                }
            }
        }
        out
    }

    /// The connector's report for attached volume `name` at `dev`, compared with its identity.
    fn check_reported(&self, name: &str, dev: &LoopDevice) -> Option<Violation> {
        let own = loop_identity(&self.volumes.get(name)?.file).ok()?;
        let violation = |kind, detail| {
            Some(Violation {
                kind,
                host: LOOP_HOST.to_owned(),
                volume: Some(name.to_owned()),
                detail,
            })
        };
        let paths = match self.volume_paths(&dev.connection_properties()) {
            Ok(p) => p,
            Err(e) => {
                return violation(
                    PropertyKind::Truth,
                    format!("get_volume_paths for {} failed: {e}", dev.device),
                );
            }
        };
        let reported: Vec<String> = paths
            .paths
            .iter()
            .map(|p| {
                format!(
                    "{} -> {} ({})",
                    p.path,
                    p.device.as_ref().map_or("?", HostPath::as_str),
                    p.wwid.as_ref().map_or("no identity", Wwid::as_str)
                )
            })
            .collect();
        let good = paths.paths.len() == 1
            && paths
                .paths
                .iter()
                .all(|p| p.device.as_ref() == Some(&dev.device) && p.wwid.as_ref() == Some(&own));
        if good {
            return None;
        }
        let other = paths.paths.iter().find_map(|p| {
            let w = p.wwid.as_ref()?;
            self.volumes
                .iter()
                .find(|(n, v)| *n != name && loop_identity(&v.file).ok().as_ref() == Some(w))
                .map(|(n, _)| n.clone())
        });
        match other {
            Some(o) => violation(
                PropertyKind::CrossTalk,
                format!(
                    "get_volume_paths for {} reports volume `{o}`'s identity: {reported:?}",
                    dev.device
                ),
            ),
            None => violation(
                PropertyKind::Truth,
                format!(
                    "get_volume_paths for {} should report it with identity {own}, got {reported:?} (diagnostics: {:?})",
                    dev.device,
                    paths
                        .diagnostics
                        .iter()
                        .map(|d| d.message.as_str())
                        .collect::<Vec<_>>()
                ),
            ),
        }
    }

    /// Detaches loop devices leaked by loop targets that are gone (a test process killed
    /// before its [`Drop`] ran): devices whose `backing_file` lies in a `brick-loop-*`
    /// directory of the system temporary directory that no longer exists. A live target
    /// removes its directory only after detaching its devices, so these are never in use by
    /// one. Returns the devices detached.
    pub fn reclaim_stale() -> Result<Vec<HostPath>, LoopError> {
        if let Some(reason) = Self::unavailable_reason() {
            return Err(LoopError::Unavailable { reason });
        }
        let tmp = canonical_temp_dir()?;
        let host = RealHost::system();
        let mut done = Vec::new();
        for (name, backing) in attached_loop_devices() {
            if !is_stale_backing(&backing, &tmp) {
                continue;
            }
            let device = HostPath::new("/dev")?.join(&name)?;
            let file = backing.strip_suffix(DELETED_SUFFIX).unwrap_or(&backing);
            match release(&host, &device, file) {
                Ok(()) => {
                    tracing::warn!(%device, backing, "reclaimed a leaked loop device");
                    done.push(device);
                }
                Err(e) => tracing::warn!(%device, error = %e, "could not reclaim"),
            }
        }
        Ok(done)
    }
}

/// Detaches `device` if (and only if) it is still backed by `file`; then waits for sysfs to
/// show the detach. `Ok` when it was already detached.
fn release(host: &RealHost, device: &HostPath, file: &str) -> Result<(), LoopError> {
    let name = device.file_name();
    match backing_of(name)? {
        None => return Ok(()),
        Some(b) if backing_names(&b, file) => {}
        Some(b) => {
            return Err(LoopError::NotOurs {
                device: device.clone(),
                backing: b,
                expected: file.to_owned(),
            });
        }
    }
    let cmd = Cmd::new("losetup").args(["-d", device.as_str()]);
    let out = host.run(&cmd)?;
    if !out.success() {
        return Err(losetup_error(&cmd, &out));
    }
    // The kernel defers a detach while the device is open (udev probing it): wait briefly.
    let start = Instant::now();
    loop {
        match backing_of(name) {
            Ok(Some(b)) if backing_names(&b, file) => {}
            _ => return Ok(()),
        }
        if start.elapsed() > RELEASE_TIMEOUT {
            tracing::warn!(%device, "still attached after losetup -d");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Drop for LoopTarget {
    /// Detaches every device still attached (only after checking it is backed by one of the
    /// target's files), then removes the directory and the files.
    fn drop(&mut self) {
        for (name, vol) in &mut self.volumes {
            if let Some(dev) = vol.device.take()
                && let Err(e) = release(&self.host, &dev.device, &vol.file)
            {
                tracing::warn!(volume = name, device = %dev.device, error = %e, "cleanup: detach failed");
            }
        }
        if let Some(tmp) = self.tmp.take()
            && let Err(e) = tmp.close()
        {
            tracing::warn!(dir = self.dir, error = %e, "cleanup: removing the directory failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn losetup_output_must_be_one_loop_device() {
        assert_eq!(
            parse_loop_device("/dev/loop12\n").unwrap().as_str(),
            "/dev/loop12"
        );
        for bad in [
            "",
            "/dev/loop",
            "/dev/loopx",
            "/dev/sda\n",
            "/dev/loop1\n/dev/loop2\n",
            "/dev/loop1/../sda",
            "loop1",
        ] {
            assert!(parse_loop_device(bad).is_none(), "{bad:?} accepted");
        }
    }

    #[test]
    fn volume_names_are_plain_file_names() {
        for good in ["a", "vol-1.x_y", &"v".repeat(64)] {
            assert!(check_name(good).is_ok(), "{good:?} refused");
        }
        for bad in [
            "",
            ".hidden",
            "..",
            "a/b",
            "../etc",
            "a b",
            "a\0b",
            &"v".repeat(65),
        ] {
            let err = check_name(bad).unwrap_err();
            assert!(matches!(err, LoopError::BadName { .. }), "{bad:?}: {err}");
        }
    }

    #[test]
    fn cap_sys_admin_is_read_from_cap_eff() {
        let root = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001fffeffffff\n";
        assert_eq!(cap_eff_has(root, CAP_SYS_ADMIN_BIT), Some(true));
        let docker = "CapEff:\t00000000a80425fb\n";
        assert_eq!(cap_eff_has(docker, CAP_SYS_ADMIN_BIT), Some(false));
        assert_eq!(cap_eff_has("CapEff:\tzz\n", CAP_SYS_ADMIN_BIT), None);
        assert_eq!(cap_eff_has("", CAP_SYS_ADMIN_BIT), None);
    }

    #[test]
    fn backing_file_matches_with_and_without_deleted_suffix() {
        let f = "/tmp/brick-loop-x/a.img";
        assert!(backing_names(f, f));
        assert!(backing_names("/tmp/brick-loop-x/a.img (deleted)", f));
        assert!(!backing_names("/tmp/brick-loop-x/a.img2", f));
        assert!(!backing_names("/tmp/brick-loop-x/b.img (deleted)", f));
        assert!(!backing_names("", f));
    }

    #[test]
    fn only_files_of_vanished_brick_dirs_are_stale() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_str().unwrap();
        let live = tmp.path().join("brick-loop-live");
        std::fs::create_dir(&live).unwrap();
        let gone = format!("{root}/brick-loop-gone/a.img");
        assert!(is_stale_backing(&gone, root));
        assert!(is_stale_backing(&format!("{gone} (deleted)"), root));
        for not_stale in [
            format!("{root}/brick-loop-live/a.img (deleted)"),
            format!("{root}/other-dir/a.img"),
            format!("{root}/brick-loop-gone/sub/a.img"),
            format!("{root}/brick-loop-gone/"),
            "/var/lib/images/a.img".to_owned(),
            format!("{root}brick-loop-gone/a.img"),
        ] {
            assert!(!is_stale_backing(&not_stale, root), "{not_stale}");
        }
    }

    #[test]
    fn device_properties_are_os_brick_local() {
        let dev = LoopDevice {
            device: HostPath::new("/dev/loop3").unwrap(),
            backing_file: PathBuf::from("/tmp/x/a.img"),
        };
        assert_eq!(dev.name(), "loop3");
        assert_eq!(
            dev.connection_properties(),
            json!({"driver_volume_type": "local", "data": {"device_path": "/dev/loop3"}})
        );
        let parsed =
            ConnectionProperties::from_json(&dev.connection_properties(), Some(Protocol::Local))
                .unwrap();
        assert_eq!(parsed.protocol(), Protocol::Local);
    }

    #[test]
    fn unavailable_reason_agrees_with_new() {
        match (LoopTarget::unavailable_reason(), LoopTarget::new()) {
            (None, Ok(t)) => assert!(t.dir().is_dir()),
            (Some(reason), Err(LoopError::Unavailable { reason: r })) => assert_eq!(reason, r),
            (reason, other) => panic!("reason {reason:?} but new() gave {other:?}"),
        }
    }
}
