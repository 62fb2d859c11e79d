//! Files under `/etc` that connectors read.

use std::fmt::Write as _;

use crate::ids::HostId;
use crate::tree::Tree;
use crate::world::World;

impl World {
    pub(crate) fn render_etc(&self, host: HostId, t: &mut Tree) {
        let h = self.host_ref(host);
        t.file(
            "/etc/iscsi/initiatorname.iscsi",
            0o600,
            format!(
                "## DO NOT EDIT OR REMOVE THIS FILE!\n## If you remove this file, the iSCSI daemon will not start.\n## If you change the InitiatorName, existing access control lists\n## may reject this initiator.  The InitiatorName must be unique\n## for each iSCSI initiator.  Do NOT duplicate iSCSI InitiatorNames.\nInitiatorName={}\n",
                h.spec.initiator_iqn
            )
            .into_bytes(),
        );
        t.file(
            "/etc/iscsi/iscsid.conf",
            0o600,
            b"node.startup = manual\nnode.session.scan = auto\n".to_vec(),
        );
        if h.mpd.installed {
            t.file(
                "/etc/multipath.conf",
                0o644,
                format!(
                    "defaults {{\n\tuser_friendly_names {}\n\tfind_multipaths {}\n}}\n",
                    if h.spec.user_friendly_names {
                        "yes"
                    } else {
                        "no"
                    },
                    if h.spec.find_multipaths_strict {
                        "strict"
                    } else {
                        "no"
                    },
                )
                .into_bytes(),
            );
            let mut wwids = String::from(
                "# Multipath wwids, Version : 1.0\n# NOTE: This file is automatically maintained by multipath and multipathd.\n# You should not need to edit this file in normal circumstances.\n#\n# Valid WWIDs:\n",
            );
            for w in &h.mpd.wwids {
                let _ = writeln!(wwids, "/{w}/");
            }
            t.file("/etc/multipath/wwids", 0o644, wwids.into_bytes());
            let mut bindings = String::from(
                "# Multipath bindings, Version : 1.0\n# NOTE: this file is automatically maintained by the multipath program.\n# You should not need to edit this file in normal circumstances.\n#\n# Format:\n# alias wwid\n#\n",
            );
            for (a, w) in &h.mpd.bindings {
                let _ = writeln!(bindings, "{a} {w}");
            }
            t.file("/etc/multipath/bindings", 0o644, bindings.into_bytes());
        }
    }
}
