//! # brick-sim-target
//!
//! A deterministic simulator of SAN arrays and of a Linux host's storage stack.
//!
//! What this crate owns: arrays (targets, portals, LUN masking, LUN and IQN reuse, volume
//! identities), each simulated host's kernel view (iSCSI hosts and sessions, SCSI devices,
//! sdX naming, dm-multipath maps, udev links with delays), the userland tools' behaviour and
//! output formats (`iscsiadm`, `multipath`, `multipathd`, `blockdev`), a virtual clock, fault
//! hooks, and materialization of each host's view into a real directory.
//!
//! What it must not know: the connectors. It implements the kernel's and udev's naming rules on
//! its own (by-path names, LUN formatting, wwid prefixes), so a naming bug in a connector cannot
//! hide by living on both sides. It never depends on `brick-connectors`.

pub mod capture;
pub mod tree;
