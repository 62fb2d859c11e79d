//! `iscsiadm` (open-iscsi 2.1.8): node database, discovery, login/logout, session listing.
//! Exit codes are open-iscsi's (`include/iscsi_err.h`): 0 success, 6 IDBM, 7 invalid,
//! 8 transport timeout, 15 session exists, 19 fatal login, 21 no objects found,
//! 24 authorization failure.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::ids::{ExecOutput, HostId};
use crate::kernel::{DevKind, LoginError};
use crate::naming::Portal;
use crate::world::World;

/// No records / sessions / portals found.
const ERR_NO_OBJS: i32 = 21;
const ERR_INVAL: i32 = 7;
const ERR_SESS_EXISTS: i32 = 15;

/// Default node record (key, value), in iscsiadm's print order (open-iscsi 2.1.8, Debian).
pub(crate) const NODE_RECORD: &[(&str, &str)] = &[
    ("node.name", "iqn.2010-10.org.openstack:volume-two"),
    ("node.tpgt", "-1"),
    ("node.startup", "manual"),
    ("node.leading_login", "No"),
    ("iface.iscsi_ifacename", "default"),
    ("iface.net_ifacename", "<empty>"),
    ("iface.ipaddress", "<empty>"),
    ("iface.prefix_len", "0"),
    ("iface.hwaddress", "<empty>"),
    ("iface.transport_name", "tcp"),
    ("iface.initiatorname", "<empty>"),
    ("iface.state", "<empty>"),
    ("iface.vlan_id", "0"),
    ("iface.vlan_priority", "0"),
    ("iface.vlan_state", "<empty>"),
    ("iface.iface_num", "0"),
    ("iface.mtu", "0"),
    ("iface.port", "0"),
    ("iface.bootproto", "<empty>"),
    ("iface.subnet_mask", "<empty>"),
    ("iface.gateway", "<empty>"),
    ("iface.dhcp_alt_client_id_state", "<empty>"),
    ("iface.dhcp_alt_client_id", "<empty>"),
    ("iface.dhcp_dns", "<empty>"),
    ("iface.dhcp_learn_iqn", "<empty>"),
    ("iface.dhcp_req_vendor_id_state", "<empty>"),
    ("iface.dhcp_vendor_id_state", "<empty>"),
    ("iface.dhcp_vendor_id", "<empty>"),
    ("iface.dhcp_slp_da", "<empty>"),
    ("iface.fragmentation", "<empty>"),
    ("iface.gratuitous_arp", "<empty>"),
    ("iface.incoming_forwarding", "<empty>"),
    ("iface.tos_state", "<empty>"),
    ("iface.tos", "0"),
    ("iface.ttl", "0"),
    ("iface.delayed_ack", "<empty>"),
    ("iface.tcp_nagle", "<empty>"),
    ("iface.tcp_wsf_state", "<empty>"),
    ("iface.tcp_wsf", "0"),
    ("iface.tcp_timer_scale", "0"),
    ("iface.tcp_timestamp", "<empty>"),
    ("iface.redirect", "<empty>"),
    ("iface.def_task_mgmt_timeout", "0"),
    ("iface.header_digest", "<empty>"),
    ("iface.data_digest", "<empty>"),
    ("iface.immediate_data", "<empty>"),
    ("iface.initial_r2t", "<empty>"),
    ("iface.data_seq_inorder", "<empty>"),
    ("iface.data_pdu_inorder", "<empty>"),
    ("iface.erl", "0"),
    ("iface.max_receive_data_len", "0"),
    ("iface.first_burst_len", "0"),
    ("iface.max_outstanding_r2t", "0"),
    ("iface.max_burst_len", "0"),
    ("iface.chap_auth", "<empty>"),
    ("iface.bidi_chap", "<empty>"),
    ("iface.strict_login_compliance", "<empty>"),
    ("iface.discovery_auth", "<empty>"),
    ("iface.discovery_logout", "<empty>"),
    ("node.discovery_address", "<empty>"),
    ("node.discovery_port", "0"),
    ("node.discovery_type", "static"),
    ("node.session.initial_cmdsn", "0"),
    ("node.session.initial_login_retry_max", "8"),
    ("node.session.xmit_thread_priority", "-20"),
    ("node.session.cmds_max", "128"),
    ("node.session.queue_depth", "32"),
    ("node.session.nr_sessions", "1"),
    ("node.session.auth.authmethod", "None"),
    ("node.session.auth.username", "<empty>"),
    ("node.session.auth.password", "<empty>"),
    ("node.session.auth.username_in", "<empty>"),
    ("node.session.auth.password_in", "<empty>"),
    ("node.session.auth.chap_algs", "MD5"),
    ("node.session.timeo.replacement_timeout", "120"),
    ("node.session.err_timeo.abort_timeout", "15"),
    ("node.session.err_timeo.lu_reset_timeout", "30"),
    ("node.session.err_timeo.tgt_reset_timeout", "30"),
    ("node.session.err_timeo.host_reset_timeout", "60"),
    ("node.session.iscsi.FastAbort", "Yes"),
    ("node.session.iscsi.InitialR2T", "No"),
    ("node.session.iscsi.ImmediateData", "Yes"),
    ("node.session.iscsi.FirstBurstLength", "262144"),
    ("node.session.iscsi.MaxBurstLength", "16776192"),
    ("node.session.iscsi.DefaultTime2Retain", "0"),
    ("node.session.iscsi.DefaultTime2Wait", "2"),
    ("node.session.iscsi.MaxConnections", "1"),
    ("node.session.iscsi.MaxOutstandingR2T", "1"),
    ("node.session.iscsi.ERL", "0"),
    ("node.session.scan", "auto"),
    ("node.session.reopen_max", "0"),
    ("node.conn[0].address", "10.0.2.2"),
    ("node.conn[0].port", "3260"),
    ("node.conn[0].startup", "manual"),
    ("node.conn[0].tcp.window_size", "524288"),
    ("node.conn[0].tcp.type_of_service", "0"),
    ("node.conn[0].timeo.logout_timeout", "15"),
    ("node.conn[0].timeo.login_timeout", "15"),
    ("node.conn[0].timeo.auth_timeout", "45"),
    ("node.conn[0].timeo.noop_out_interval", "5"),
    ("node.conn[0].timeo.noop_out_timeout", "5"),
    ("node.conn[0].iscsi.MaxXmitDataSegmentLength", "0"),
    ("node.conn[0].iscsi.MaxRecvDataSegmentLength", "262144"),
    ("node.conn[0].iscsi.HeaderDigest", "None"),
    ("node.conn[0].iscsi.DataDigest", "None"),
    ("node.conn[0].iscsi.IFMarker", "No"),
    ("node.conn[0].iscsi.OFMarker", "No"),
];

/// One node record (`/etc/iscsi/nodes/<iqn>/<ip>,<port>,<tpgt>/default`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeRecord {
    pub(crate) iqn: String,
    pub(crate) portal: Portal,
    /// -1 for static records (`-o new`), the target's tpgt for discovered ones.
    pub(crate) tpgt: i64,
    /// Values that differ from [`NODE_RECORD`].
    pub(crate) settings: BTreeMap<String, String>,
}

impl NodeRecord {
    fn new(iqn: &str, portal: &Portal, tpgt: i64) -> Self {
        Self {
            iqn: iqn.to_owned(),
            portal: portal.clone(),
            tpgt,
            settings: BTreeMap::new(),
        }
    }

    pub(crate) fn get(&self, key: &str) -> String {
        match key {
            "node.name" => return self.iqn.clone(),
            "node.tpgt" => return self.tpgt.to_string(),
            "node.conn[0].address" => return self.portal.ip.clone(),
            "node.conn[0].port" => return self.portal.port.to_string(),
            _ => {}
        }
        if let Some(v) = self.settings.get(key) {
            return v.clone();
        }
        NODE_RECORD
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| (*v).to_owned())
            .unwrap_or_default()
    }

    pub(crate) fn manual_scan(&self) -> bool {
        self.get("node.session.scan") == "manual"
    }

    fn print(&self, out: &mut String) {
        out.push_str("# BEGIN RECORD 2.1.8\n");
        for (k, _) in NODE_RECORD {
            let mut v = self.get(k);
            if (k.ends_with("password") || k.ends_with("password_in"))
                && v != "<empty>"
                && !v.is_empty()
            {
                v = "********".to_owned();
            }
            if v.is_empty() {
                v = "<empty>".to_owned();
            }
            let _ = writeln!(out, "{k} = {v}");
        }
        out.push_str("# END RECORD\n");
    }

    fn list_line(&self) -> String {
        // iscsiadm prints the tpgt as unsigned: -1 shows as 4294967295.
        let tpgt = if self.tpgt < 0 {
            u64::from(u32::MAX)
        } else {
            self.tpgt.unsigned_abs()
        };
        format!("{},{} {}", self.portal, tpgt, self.iqn)
    }
}

/// iscsid's persistent state: node records and sendtargets discovery records.
#[derive(Debug, Clone, Default)]
pub(crate) struct IscsiDb {
    pub(crate) nodes: BTreeMap<(String, Portal), NodeRecord>,
    /// Discovery address -> targets (portal, iqn) it returned.
    pub(crate) discovery: BTreeMap<Portal, Vec<(Portal, String)>>,
}

#[derive(Debug, Default)]
struct Args {
    mode: Option<String>,
    target: Option<String>,
    portal: Option<String>,
    iface: Option<String>,
    op: Option<String>,
    names: Vec<String>,
    values: Vec<String>,
    typ: Option<String>,
    print: Option<u32>,
    sid: Option<String>,
    login: bool,
    logout: bool,
    rescan: bool,
    discover: bool,
}

fn parse(argv: &[String]) -> Result<Args, String> {
    let mut a = Args::default();
    let mut it = argv.iter().skip(1);
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
            _ => (arg.as_str(), None),
        };
        let mut val = |name: &str| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("option '{name}' requires an argument"))
        };
        match flag {
            "-m" | "--mode" => a.mode = Some(val(flag)?),
            "-T" | "--targetname" => a.target = Some(val(flag)?),
            "-p" | "--portal" => a.portal = Some(val(flag)?),
            "-I" | "--interface" => a.iface = Some(val(flag)?),
            "-o" | "--op" => a.op = Some(val(flag)?),
            "-n" | "--name" => a.names.push(val(flag)?),
            "-v" | "--value" => a.values.push(val(flag)?),
            "-t" | "--type" => a.typ = Some(val(flag)?),
            "-P" | "--print" => {
                a.print = Some(
                    val(flag)?
                        .parse()
                        .map_err(|_| "invalid print level".to_owned())?,
                )
            }
            "-r" | "--sid" => a.sid = Some(val(flag)?),
            "-l" | "--login" => a.login = true,
            "-u" | "--logout" => a.logout = true,
            "-R" | "--rescan" => a.rescan = true,
            "--discover" => a.discover = true,
            "-S" | "--show" => {}
            other => return Err(format!("unrecognized option '{other}'")),
        }
    }
    Ok(a)
}

fn login_msg(iqn: &str, p: &Portal) -> String {
    format!("[iface: default, target: {iqn}, portal: {}]", p.comma())
}

impl World {
    pub(crate) fn iscsiadm(&mut self, host: HostId, argv: &[String]) -> ExecOutput {
        let a = match parse(argv) {
            Ok(a) => a,
            Err(e) => return ExecOutput::err(ERR_INVAL, format!("iscsiadm: {e}\n")),
        };
        match a.mode.as_deref() {
            Some("node") => self.iscsiadm_node(host, &a),
            Some("session") => self.iscsiadm_session(host, &a),
            Some("discovery") => self.iscsiadm_discovery(host, &a),
            Some("discoverydb") => self.iscsiadm_discoverydb(host, &a),
            Some("iface") => iscsiadm_iface(&a),
            Some(m) => ExecOutput::err(ERR_INVAL, format!("iscsiadm: Invalid mode '{m}'\n")),
            None => ExecOutput::err(ERR_INVAL, "iscsiadm: You must specify a mode\n"),
        }
    }

    fn matching_nodes(&self, host: HostId, a: &Args) -> Result<Vec<(String, Portal)>, ExecOutput> {
        let portal = match a.portal.as_deref() {
            Some(p) => Some(Portal::parse(p).ok_or_else(|| {
                ExecOutput::err(ERR_INVAL, format!("iscsiadm: cannot parse portal {p}\n"))
            })?),
            None => None,
        };
        Ok(self
            .host_ref(host)
            .iscsi
            .nodes
            .keys()
            .filter(|(iqn, p)| {
                a.target.as_ref().is_none_or(|t| t == iqn) && portal.as_ref().is_none_or(|q| q == p)
            })
            .cloned()
            .collect())
    }

    fn iscsiadm_node(&mut self, host: HostId, a: &Args) -> ExecOutput {
        if a.op.as_deref() == Some("new") {
            let (Some(iqn), Some(p)) = (a.target.as_deref(), a.portal.as_deref()) else {
                return ExecOutput::err(
                    ERR_INVAL,
                    "iscsiadm: --op new requires --targetname and --portal\n",
                );
            };
            let Some(portal) = Portal::parse(p) else {
                return ExecOutput::err(ERR_INVAL, format!("iscsiadm: cannot parse portal {p}\n"));
            };
            if !iqn.starts_with("iqn.") && !iqn.starts_with("eui.") && !iqn.starts_with("naa.") {
                return ExecOutput::err(
                    ERR_INVAL,
                    format!("iscsiadm: invalid target name {iqn}\n"),
                );
            }
            let rec = NodeRecord::new(iqn, &portal, -1);
            self.host_mut(host)
                .iscsi
                .nodes
                .insert((iqn.to_owned(), portal.clone()), rec);
            return ExecOutput::ok(format!(
                "New iSCSI node [tcp:[hw=,ip=,net_if=,iscsi_if=default] {},-1 {iqn}] added\n",
                portal.comma()
            ));
        }
        let keys = match self.matching_nodes(host, a) {
            Ok(k) => k,
            Err(e) => return e,
        };
        if keys.is_empty() {
            return ExecOutput::err(ERR_NO_OBJS, "iscsiadm: No records found\n");
        }
        if a.login {
            return self.iscsiadm_login(host, &keys);
        }
        if a.logout {
            return self.iscsiadm_logout(host, &keys);
        }
        match a.op.as_deref() {
            Some("update") => {
                if a.names.is_empty() || a.names.len() != a.values.len() {
                    return ExecOutput::err(
                        ERR_INVAL,
                        "iscsiadm: update requires name and value\n",
                    );
                }
                for (n, v) in a.names.iter().zip(&a.values) {
                    if !NODE_RECORD.iter().any(|(k, _)| k == n)
                        || n == "node.name"
                        || n == "node.tpgt"
                    {
                        return ExecOutput::err(
                            ERR_INVAL,
                            format!("iscsiadm: Cannot modify {n}. Invalid param name.\n"),
                        );
                    }
                    for key in &keys {
                        if let Some(rec) = self.host_mut(host).iscsi.nodes.get_mut(key) {
                            rec.settings.insert(n.clone(), v.clone());
                            if n == "node.startup" {
                                rec.settings
                                    .insert("node.conn[0].startup".to_owned(), v.clone());
                            }
                        }
                    }
                }
                ExecOutput::ok("")
            }
            Some("delete") => {
                for key in &keys {
                    self.host_mut(host).iscsi.nodes.remove(key);
                }
                ExecOutput::ok("")
            }
            Some("show") | None => {
                if a.target.is_none() && a.portal.is_none() && a.op.is_none() {
                    let mut out = String::new();
                    for key in &keys {
                        if let Some(r) = self.host_ref(host).iscsi.nodes.get(key) {
                            out.push_str(&r.list_line());
                            out.push('\n');
                        }
                    }
                    return ExecOutput::ok(out);
                }
                let mut out = String::new();
                for key in &keys {
                    if let Some(r) = self.host_ref(host).iscsi.nodes.get(key) {
                        r.print(&mut out);
                    }
                }
                ExecOutput::ok(out)
            }
            Some(op) => ExecOutput::err(ERR_INVAL, format!("iscsiadm: Invalid op '{op}'\n")),
        }
    }

    fn iscsiadm_login(&mut self, host: HostId, keys: &[(String, Portal)]) -> ExecOutput {
        let mut out = ExecOutput::default();
        let mut failed = 0;
        for key in keys {
            let (iqn, portal) = key;
            let exists = self
                .host_ref(host)
                .kernel
                .sessions
                .values()
                .any(|s| &s.iqn == iqn && &s.portal == portal);
            if exists {
                out.stderr
                    .push_str("iscsiadm: default: 1 session requested, but 1 already present.\n");
                if keys.len() == 1 {
                    out.stderr
                        .push_str("iscsiadm: Could not log into all portals\n");
                    out.status = ERR_SESS_EXISTS;
                    return out;
                }
                continue;
            }
            let manual = self
                .host_ref(host)
                .iscsi
                .nodes
                .get(key)
                .is_some_and(NodeRecord::manual_scan);
            let msg = login_msg(iqn, portal);
            let _ = writeln!(out.stdout, "Logging in to {msg}");
            match self.login(host, portal, iqn, !manual) {
                Ok(_) => {
                    let _ = writeln!(out.stdout, "Login to {msg} successful.");
                }
                Err(e) => {
                    let (code, text) = match e {
                        LoginError::Unreachable => (8, "connection timed out"),
                        LoginError::TargetNotFound => {
                            (19, "encountered non-retryable iSCSI login failure")
                        }
                        LoginError::NotAuthorized => {
                            (24, "iSCSI login failed due to authorization failure")
                        }
                    };
                    let _ = writeln!(out.stderr, "iscsiadm: Could not login to {msg}.");
                    let _ = writeln!(
                        out.stderr,
                        "iscsiadm: initiator reported error ({code} - {text})"
                    );
                    out.status = code;
                    failed += 1;
                }
            }
        }
        if failed > 0 {
            out.stderr
                .push_str("iscsiadm: Could not log into all portals\n");
        }
        out
    }

    fn iscsiadm_logout(&mut self, host: HostId, keys: &[(String, Portal)]) -> ExecOutput {
        let sessions: Vec<(u32, String, Portal)> = self
            .host_ref(host)
            .kernel
            .sessions
            .values()
            .filter(|s| keys.iter().any(|(i, p)| *i == s.iqn && *p == s.portal))
            .map(|s| (s.sid, s.iqn.clone(), s.portal.clone()))
            .collect();
        if sessions.is_empty() {
            return ExecOutput::err(ERR_NO_OBJS, "iscsiadm: No matching sessions found\n");
        }
        let mut out = String::new();
        for (sid, iqn, p) in &sessions {
            let _ = writeln!(
                out,
                "Logging out of session [sid: {sid}, target: {iqn}, portal: {}]",
                p.comma()
            );
        }
        for (sid, iqn, p) in sessions {
            self.logout(host, sid);
            let _ = writeln!(
                out,
                "Logout of [sid: {sid}, target: {iqn}, portal: {}] successful.",
                p.comma()
            );
        }
        ExecOutput::ok(out)
    }

    fn iscsiadm_session(&mut self, host: HostId, a: &Args) -> ExecOutput {
        let k = &self.host_ref(host).kernel;
        let mut sessions: Vec<_> = k.sessions.values().collect();
        if let Some(sid) = &a.sid {
            let want = sid.trim_start_matches("session").parse::<u32>().ok();
            sessions.retain(|s| Some(s.sid) == want);
            if sessions.is_empty() {
                return ExecOutput::err(2, format!("iscsiadm: Could not get session{sid} info\n"));
            }
        }
        if sessions.is_empty() {
            return ExecOutput::err(ERR_NO_OBJS, "iscsiadm: No active sessions.\n");
        }
        if a.rescan {
            let sids: Vec<u32> = sessions.iter().map(|s| s.sid).collect();
            let mut out = String::new();
            for sid in sids {
                let _ = writeln!(out, "Rescanning session [sid: {sid}]");
                self.scan_session(host, sid, None);
            }
            return ExecOutput::ok(out);
        }
        match a.print {
            None | Some(0) => {
                let mut out = String::new();
                for s in sessions {
                    let _ = writeln!(out, "tcp: [{}] {},1 {} (non-flash)", s.sid, s.portal, s.iqn);
                }
                ExecOutput::ok(out)
            }
            Some(level) => ExecOutput::ok(self.session_details(host, level)),
        }
    }

    fn session_details(&self, host: HostId, level: u32) -> String {
        let h = self.host_ref(host);
        let k = &h.kernel;
        let mut out = String::from("iSCSI Transport Class version 2.0-870\nversion 2.1.8\n");
        let mut by_target: BTreeMap<&str, Vec<&crate::kernel::Session>> = BTreeMap::new();
        for s in k.sessions.values() {
            by_target.entry(s.iqn.as_str()).or_default().push(s);
        }
        for (iqn, ss) in by_target {
            let _ = writeln!(out, "Target: {iqn} (non-flash)");
            for s in ss {
                let down = self.portal_down(host, &s.portal);
                let _ = writeln!(out, "\tCurrent Portal: {},1", s.portal);
                let _ = writeln!(out, "\tPersistent Portal: {},1", s.portal);
                if level < 2 {
                    continue;
                }
                let _ = write!(
                    out,
                    "\t\t**********\n\t\tInterface:\n\t\t**********\n\t\tIface Name: default\n\t\tIface Transport: tcp\n\t\tIface Initiatorname: {}\n\t\tIface IPaddress: {}\n\t\tIface HWaddress: default\n\t\tIface Netdev: default\n\t\tSID: {}\n\t\tiSCSI Connection State: {}\n\t\tiSCSI Session State: {}\n\t\tInternal iscsid Session State: {}\n",
                    h.spec.initiator_iqn,
                    h.spec.ip,
                    s.sid,
                    if down { "TRANSPORT WAIT" } else { "LOGGED IN" },
                    if down { "FAILED" } else { "LOGGED_IN" },
                    if down { "REOPEN" } else { "NO CHANGE" },
                );
                if level < 3 {
                    continue;
                }
                let _ = write!(
                    out,
                    "\t\t*********\n\t\tTimeouts:\n\t\t*********\n\t\tRecovery Timeout: {}\n\t\tTarget Reset Timeout: 30\n\t\tLUN Reset Timeout: 30\n\t\tAbort Timeout: 15\n\t\t*****\n\t\tCHAP:\n\t\t*****\n\t\tusername: <empty>\n\t\tpassword: ********\n\t\tusername_in: <empty>\n\t\tpassword_in: ********\n\t\t************************\n\t\tNegotiated iSCSI params:\n\t\t************************\n\t\tHeaderDigest: None\n\t\tDataDigest: None\n\t\tMaxRecvDataSegmentLength: 262144\n\t\tMaxXmitDataSegmentLength: 8192\n\t\tFirstBurstLength: 65536\n\t\tMaxBurstLength: 262144\n\t\tImmediateData: Yes\n\t\tInitialR2T: Yes\n\t\tMaxOutstandingR2T: 1\n\t\t************************\n\t\tAttached SCSI devices:\n\t\t************************\n\t\tHost Number: {}\tState: running\n",
                    s.recovery_tmo, s.host_no
                );
                for d in k.devices.values().filter(|d| d.sid == s.sid) {
                    let _ = writeln!(
                        out,
                        "\t\tscsi{} Channel 00 Id 0 Lun: {}",
                        s.host_no, d.hctl.lun
                    );
                    if let DevKind::Disk { .. } = d.kind {
                        let state = if down { "transport-offline" } else { "running" };
                        let _ = writeln!(
                            out,
                            "\t\t\tAttached scsi disk {}\t\tState: {state}",
                            d.sd_name().unwrap_or_default()
                        );
                    }
                }
            }
        }
        out
    }

    /// Targets `initiator` may see through `portal` (sendtargets answer).
    fn sendtargets(&self, host: HostId, portal: &Portal) -> Option<Vec<(Portal, String)>> {
        if self.portal_down(host, portal) {
            return None;
        }
        let initiator = &self.host_ref(host).spec.initiator_iqn;
        let mut out = Vec::new();
        let mut reachable = false;
        for a in &self.arrays {
            if !a.has_portal(portal) {
                continue;
            }
            reachable = true;
            for (iqn, t) in &a.targets {
                if t.luns.keys().any(|(i, _)| i == initiator) {
                    for p in &a.portals {
                        out.push((p.clone(), iqn.clone()));
                    }
                }
            }
        }
        reachable.then_some(out)
    }

    fn iscsiadm_discovery(&mut self, host: HostId, a: &Args) -> ExecOutput {
        if a.typ.as_deref() != Some("sendtargets") && a.typ.as_deref() != Some("st") {
            return ExecOutput::err(ERR_INVAL, "iscsiadm: discovery type not supported\n");
        }
        let Some(portal) = a.portal.as_deref().and_then(Portal::parse) else {
            return ExecOutput::err(ERR_INVAL, "iscsiadm: discovery requires a valid --portal\n");
        };
        self.run_discovery(host, &portal)
    }

    fn run_discovery(&mut self, host: HostId, portal: &Portal) -> ExecOutput {
        let Some(found) = self.sendtargets(host, portal) else {
            return ExecOutput::err(
                4,
                format!(
                    "iscsiadm: cannot make connection to {}: Connection refused\niscsiadm: connection login retries (reopen_max) 5 exceeded\niscsiadm: Could not perform SendTargets discovery: encountered connection failure\n",
                    portal.ip
                ),
            );
        };
        let h = self.host_mut(host);
        h.iscsi.discovery.insert(portal.clone(), found.clone());
        if found.is_empty() {
            return ExecOutput::err(ERR_NO_OBJS, "iscsiadm: No portals found\n");
        }
        let mut out = String::new();
        for (p, iqn) in &found {
            let _ = writeln!(out, "{p},1 {iqn}");
            let key = (iqn.clone(), p.clone());
            let mut rec = NodeRecord::new(iqn, p, 1);
            rec.settings
                .insert("node.discovery_address".into(), portal.ip.clone());
            rec.settings
                .insert("node.discovery_port".into(), portal.port.to_string());
            rec.settings
                .insert("node.discovery_type".into(), "send_targets".into());
            // Discovery rewrites existing records with fresh defaults (node.startup included).
            h.iscsi.nodes.insert(key, rec);
        }
        ExecOutput::ok(out)
    }

    fn iscsiadm_discoverydb(&mut self, host: HostId, a: &Args) -> ExecOutput {
        if a.discover {
            let Some(portal) = a.portal.as_deref().and_then(Portal::parse) else {
                return ExecOutput::err(
                    ERR_INVAL,
                    "iscsiadm: discovery requires a valid --portal\n",
                );
            };
            return self.run_discovery(host, &portal);
        }
        match a.op.as_deref() {
            Some("new") | Some("update") | Some("delete") => {
                let Some(portal) = a.portal.as_deref().and_then(Portal::parse) else {
                    return ExecOutput::err(
                        ERR_INVAL,
                        "iscsiadm: discoverydb requires a valid --portal\n",
                    );
                };
                let h = self.host_mut(host);
                match a.op.as_deref() {
                    Some("new") => {
                        h.iscsi.discovery.entry(portal.clone()).or_default();
                        ExecOutput::ok(format!(
                            "New discovery record for [{}] added.\n",
                            portal.comma()
                        ))
                    }
                    Some("update") if !h.iscsi.discovery.contains_key(&portal) => {
                        ExecOutput::err(6, "iscsiadm: Discovery record not found\n")
                    }
                    Some("delete") => {
                        h.iscsi.discovery.remove(&portal);
                        ExecOutput::ok("")
                    }
                    _ => ExecOutput::ok(""),
                }
            }
            Some("show") | None => ExecOutput::ok(self.discoverydb_show(host)),
            Some(op) => ExecOutput::err(ERR_INVAL, format!("iscsiadm: Invalid op '{op}'\n")),
        }
    }

    fn discoverydb_show(&self, host: HostId) -> String {
        let h = self.host_ref(host);
        let mut out = String::from("SENDTARGETS:\n");
        if h.iscsi.discovery.is_empty() {
            out.push_str("No targets found.\n");
        }
        for (disc, targets) in &h.iscsi.discovery {
            let _ = writeln!(out, "DiscoveryAddress: {}", disc.comma());
            let mut by_iqn: BTreeMap<&str, Vec<&Portal>> = BTreeMap::new();
            for (p, iqn) in targets {
                by_iqn.entry(iqn.as_str()).or_default().push(p);
            }
            for (iqn, ps) in by_iqn {
                let _ = writeln!(out, "Target: {iqn}");
                for p in ps {
                    let _ = writeln!(out, "\tPortal: {p},1\n\t\tIface Name: default");
                }
            }
        }
        out.push_str("iSNS:\nNo targets found.\nSTATIC:\n");
        let statics: Vec<&NodeRecord> = h.iscsi.nodes.values().filter(|r| r.tpgt < 0).collect();
        if statics.is_empty() {
            out.push_str("No targets found.\n");
        }
        for r in statics {
            let _ = writeln!(
                out,
                "Target: {}\n\tPortal: {},-1\n\t\tIface Name: default",
                r.iqn, r.portal
            );
        }
        out.push_str("FIRMWARE:\nNo targets found.\n");
        out
    }
}

fn iscsiadm_iface(a: &Args) -> ExecOutput {
    let iface = a.iface.as_deref().unwrap_or("default");
    let transport = match iface {
        "default" => "tcp",
        "iser" => "iser",
        _ => return ExecOutput::err(6, format!("iscsiadm: Could not read iface {iface} (6)\n")),
    };
    let mut out = String::from("# BEGIN RECORD 2.1.8\n");
    for (k, v) in NODE_RECORD.iter().filter(|(k, _)| k.starts_with("iface.")) {
        let v = match *k {
            "iface.iscsi_ifacename" => iface,
            "iface.transport_name" => transport,
            _ => v,
        };
        let _ = writeln!(out, "{k} = {v}");
    }
    out.push_str("# END RECORD\n");
    ExecOutput::ok(out)
}
