//! Identifiers and error types shared by every part of the simulator.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct $name(pub u32);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

id_type!(
    /// A simulated host (one Linux machine with its kernel, udev and tools).
    HostId,
    "host#"
);
id_type!(
    /// A simulated storage array.
    ArrayId,
    "array#"
);
id_type!(
    /// A volume on a simulated array. Ids are never reused, even after deletion.
    VolumeId,
    "volume#"
);

/// Errors of the world-level (array and topology) API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    /// No host with that id.
    #[error("unknown host {0}")]
    UnknownHost(HostId),
    /// No array with that id.
    #[error("unknown array {0}")]
    UnknownArray(ArrayId),
    /// No volume with that id (never created, or deleted).
    #[error("unknown volume {0}")]
    UnknownVolume(VolumeId),
    /// The volume is not mapped to that host.
    #[error("volume {vol} is not mapped to host {host}")]
    NotMapped {
        /// The volume.
        vol: VolumeId,
        /// The host.
        host: HostId,
    },
    /// A volume of that name already exists on the array.
    #[error("a volume named `{0}` already exists on the array")]
    VolumeExists(String),
    /// The name cannot be used (empty, whitespace or control characters).
    #[error("invalid name `{0}`: {1}")]
    InvalidName(String, &'static str),
    /// The array has no free LUN id left for that host.
    #[error("no free LUN id on target {0}")]
    NoFreeLun(String),
    /// No FC port with that WWPN exists.
    #[error("unknown FC port {0:#018x}")]
    UnknownPort(u64),
    /// The two FC ports sit on different fabrics and cannot be zoned together.
    #[error("FC ports {a:#018x} and {b:#018x} are on different fabrics")]
    FabricMismatch {
        /// One port.
        a: u64,
        /// The other.
        b: u64,
    },
    /// The two FC ports are not zoned together.
    #[error("FC ports {a:#018x} and {b:#018x} are not zoned together")]
    NotZoned {
        /// One port.
        a: u64,
        /// The other.
        b: u64,
    },
    /// The host has no NVMe initiator (no host NQN) to map an NVMe namespace to.
    #[error("host {0} has no NVMe initiator (HostSpec::nvme is None)")]
    NoNvmeInitiator(HostId),
}

/// An errno-like kind of a failed control-file write or removal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[allow(clippy::upper_case_acronyms)]
pub enum Errno {
    /// No such file or directory.
    ENOENT,
    /// Invalid argument (malformed input).
    EINVAL,
    /// Device or resource busy.
    EBUSY,
    /// Input/output error.
    EIO,
    /// Permission denied (e.g. writing a read-only sysfs attribute).
    EACCES,
    /// Is a directory.
    EISDIR,
    /// Not a directory (a path component is a file).
    ENOTDIR,
}

impl Errno {
    /// The raw errno value on Linux.
    pub fn raw(self) -> i32 {
        match self {
            Errno::ENOENT => 2,
            Errno::EIO => 5,
            Errno::EACCES => 13,
            Errno::EBUSY => 16,
            Errno::ENOTDIR => 20,
            Errno::EISDIR => 21,
            Errno::EINVAL => 22,
        }
    }

    /// The C library's message for this errno (`strerror`).
    pub fn strerror(self) -> &'static str {
        match self {
            Errno::ENOENT => "No such file or directory",
            Errno::EIO => "Input/output error",
            Errno::EACCES => "Permission denied",
            Errno::EBUSY => "Device or resource busy",
            Errno::ENOTDIR => "Not a directory",
            Errno::EISDIR => "Is a directory",
            Errno::EINVAL => "Invalid argument",
        }
    }
}

/// A failed control-file write or link removal, with an errno-like kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {} ({message})", kind.strerror())]
pub struct ControlError {
    /// What went wrong, as an errno.
    pub kind: Errno,
    /// The host path that was written or removed.
    pub path: String,
    /// Details.
    pub message: String,
}

impl ControlError {
    pub(crate) fn new(kind: Errno, path: &str, message: impl Into<String>) -> Self {
        Self {
            kind,
            path: path.to_owned(),
            message: message.into(),
        }
    }

    /// The same error as a `std::io::Error` carrying the raw OS errno.
    pub fn into_io(self) -> std::io::Error {
        let raw = std::io::Error::from_raw_os_error(self.kind.raw());
        std::io::Error::new(raw.kind(), self)
    }
}

/// What a simulated command returned.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecOutput {
    /// Exit status (127 for an unknown program).
    pub status: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl ExecOutput {
    pub(crate) fn ok(stdout: impl Into<String>) -> Self {
        Self {
            status: 0,
            stdout: stdout.into(),
            stderr: String::new(),
        }
    }

    pub(crate) fn err(status: i32, stderr: impl Into<String>) -> Self {
        Self {
            status,
            stdout: String::new(),
            stderr: stderr.into(),
        }
    }
}
