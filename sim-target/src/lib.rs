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
//!
//! One model, many views: [`World`] holds the arrays, the hosts' kernel, udev and daemon
//! state; [`World::tree`] derives sysfs, `/dev` and `/etc` from it; [`World::exec`] derives
//! command output from it; [`World::write_control`] turns sysfs writes into model actions.
//!
//! ```
//! use brick_sim_target::{ArraySpec, HostSpec, World};
//! let mut w = World::new(1);
//! let h = w.add_host(HostSpec::new("h1"));
//! let a = w.add_array(ArraySpec::new("a", vec!["10.0.2.2:3260".into()]));
//! let v = w.create_volume(a, "vol1", 1 << 30).unwrap();
//! let m = w.map_volume(v, h).unwrap();
//! assert_eq!(m.lun, 1);
//! ```

pub mod capture;
pub mod tree;

mod array;
mod clock;
mod control;
mod etc;
mod faults;
mod fc;
mod ids;
mod kernel;
mod materialize;
mod multipath;
mod naming;
mod nvme;
mod render_cache;
mod udev;
mod userland;
mod world;

#[cfg(test)]
mod tests;

pub use array::{ArraySpec, ArrayTransport, IdStyle, IdentityPolicy, IqnMode, Mapping, Volume};
pub use faults::{Fault, Times, UdevAction};
pub use fc::{FcHbaSpec, FcPortState, FcRole, FcTargetPort, HbaTruth, RportTruth};
pub use ids::{ArrayId, ControlError, Errno, ExecOutput, HostId, SimError, VolumeId};
pub use nvme::{
    ControllerTruth, CtrlState, NsIds, NvmeHostSpec, NvmePort, NvmeTargetSpec, NvmeTransport,
};
pub use tree::{Cursor as TreeCursor, Iter as TreeIter, Node, Tree, TreeDiff};
pub use world::{DeviceTruth, HostSpec, SessionTruth, World};
