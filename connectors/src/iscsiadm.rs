//! `iscsiadm`: command lines, exit-code rules and tolerant parsers of its output.
//!
//! Parsers never fail: a line that does not have the expected shape (a log line, a corrupt
//! record, a banner such as `Loading iscsi modules: done`) is skipped, as os-brick does.

use std::collections::BTreeMap;

use crate::error::ConnectorError;
use crate::host::{Cmd, CmdOutput, Host};

/// Session transports os-brick recognises (`tcp:` and `iser:` lines of `iscsiadm -m session`).
pub const VALID_SESSION_TRANSPORTS: [&str; 2] = ["tcp", "iser"];

/// One line of `iscsiadm -m session`:
/// `tcp: [1] 10.0.2.2:3260,1 iqn.2010-10.org.openstack:volume-two (non-flash)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEntry {
    /// Transport name without the colon (`tcp`, `iser`, `bnx2i`, ...).
    pub transport: String,
    /// The session id (`1` in `[1]`; os-brick's fixtures also write `[session1]`).
    pub sid: u32,
    /// The portal as iscsiadm prints it (`10.0.2.2:3260`, `[fe80::1]:3260`), without the tpgt.
    pub portal: String,
    /// The target portal group tag (`1`, `-1`).
    pub tpgt: String,
    /// The target IQN.
    pub iqn: String,
}

impl SessionEntry {
    /// Whether os-brick would use this session (`tcp:` or `iser:`; offload transports are not).
    pub fn is_valid(&self) -> bool {
        VALID_SESSION_TRANSPORTS.contains(&self.transport.as_str())
    }
}

/// Parses `iscsiadm -m session` output, skipping lines that are not sessions.
pub fn parse_sessions(out: &str) -> Vec<SessionEntry> {
    out.lines().filter_map(parse_session_line).collect()
}

fn parse_session_line(line: &str) -> Option<SessionEntry> {
    let mut tok = line.split_whitespace();
    let transport = tok.next()?.strip_suffix(':')?;
    let sid_raw = tok.next()?.strip_prefix('[')?.strip_suffix(']')?;
    let sid = sid_raw
        .strip_prefix("session")
        .unwrap_or(sid_raw)
        .parse()
        .ok()?;
    let (portal, tpgt) = tok.next()?.rsplit_once(',')?;
    let iqn = tok.next()?;
    if transport.is_empty() || portal.is_empty() || iqn.is_empty() {
        return None;
    }
    Some(SessionEntry {
        transport: transport.to_owned(),
        sid,
        portal: portal.to_owned(),
        tpgt: tpgt.to_owned(),
        iqn: iqn.to_owned(),
    })
}

/// One line of `iscsiadm -m node`: `10.0.2.2:3260,4294967295 iqn...` (tpgt dropped).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct NodeEntry {
    /// The portal, without the tpgt.
    pub portal: String,
    /// The target IQN.
    pub iqn: String,
}

/// Parses `iscsiadm -m node` output; malformed lines (`[]:port3,-1`) are skipped.
pub fn parse_nodes(out: &str) -> Vec<NodeEntry> {
    out.lines()
        .filter_map(|line| {
            let mut tok = line.split_whitespace();
            let (portal, _tpgt) = tok.next()?.rsplit_once(',')?;
            let iqn = tok.next()?;
            if tok.next().is_some() || portal.is_empty() || portal.starts_with("[]") {
                return None;
            }
            Some(NodeEntry {
                portal: portal.to_owned(),
                iqn: iqn.to_owned(),
            })
        })
        .collect()
}

/// Parses a node (or iface) record (`key = value` lines between `# BEGIN RECORD` and
/// `# END RECORD`). `<empty>` values become empty strings; a later key wins.
pub fn parse_record(out: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for line in out.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once(" = ") else {
            continue;
        };
        let value = value.trim();
        let value = if value == "<empty>" { "" } else { value };
        map.insert(key.trim().to_owned(), value.to_owned());
    }
    map
}

/// `node.name → node.startup` pairs of `iscsiadm -m node --op show -p <portal>` (several records).
pub fn parse_node_startups(out: &str) -> BTreeMap<String, String> {
    let mut res = BTreeMap::new();
    let mut name: Option<String> = None;
    let mut startup: Option<String> = None;
    for line in out.lines() {
        let mut tok = line.split_whitespace();
        match (tok.next(), tok.next(), tok.next()) {
            (Some("node.name"), Some("="), Some(v)) => name = Some(v.to_owned()),
            (Some("node.startup"), Some("="), Some(v)) => startup = Some(v.to_owned()),
            _ => {}
        }
        if let (Some(n), Some(s)) = (&name, &startup) {
            res.insert(n.clone(), s.clone());
            name = None;
            startup = None;
        }
    }
    res
}

/// A `(portal, iqn)` pair reported by sendtargets discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredTarget {
    /// The portal without the tpgt (`10.15.84.19:3260`).
    pub portal: String,
    /// The target IQN.
    pub iqn: String,
}

/// Parses `iscsiadm -m discovery -t sendtargets` output: lines of exactly two tokens whose
/// second starts with `iqn.` (noise such as `Loading iscsi modules: done` is skipped).
pub fn parse_sendtargets(out: &str) -> Vec<DiscoveredTarget> {
    out.lines()
        .filter_map(|line| {
            let tok: Vec<&str> = line.split_whitespace().collect();
            match tok.as_slice() {
                [portal, iqn] if iqn.starts_with("iqn.") => {
                    let portal = portal.split(',').next().unwrap_or(portal);
                    Some(DiscoveredTarget {
                        portal: portal.to_owned(),
                        iqn: (*iqn).to_owned(),
                    })
                }
                _ => None,
            }
        })
        .collect()
}

/// One portal of `iscsiadm -m discoverydb -o show -P 1` (SENDTARGETS section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryDbEntry {
    /// The discovery address as printed, `ip,port` (`192.168.1.33,3260`).
    pub discovery_address: String,
    /// The target IQN.
    pub iqn: String,
    /// The portal without the tpgt (`192.168.1.3:3260`).
    pub portal: String,
    /// The iface name (`default`, `iser`).
    pub iface: String,
}

/// Parses the SENDTARGETS section of `iscsiadm -m discoverydb -o show -P 1`.
pub fn parse_discoverydb(out: &str) -> Vec<DiscoveryDbEntry> {
    let mut res = Vec::new();
    let mut in_sendtargets = false;
    let mut address = String::new();
    let mut iqn = String::new();
    let mut portal = String::new();
    for line in out.lines() {
        let t = line.trim();
        if !line.starts_with(char::is_whitespace) && t.ends_with(':') && !t.contains(' ') {
            // Section headers: SENDTARGETS:, iSNS:, STATIC:, FIRMWARE:.
            in_sendtargets = t == "SENDTARGETS:";
            address.clear();
            iqn.clear();
            portal.clear();
            continue;
        }
        if !in_sendtargets {
            continue;
        }
        if let Some(a) = t.strip_prefix("DiscoveryAddress:") {
            address = a.trim().to_owned();
            iqn.clear();
            portal.clear();
        } else if let Some(q) = t.strip_prefix("Target:") {
            iqn = q.trim().to_owned();
            portal.clear();
        } else if let Some(p) = t.strip_prefix("Portal:") {
            portal = p.trim().split(',').next().unwrap_or("").to_owned();
        } else if let Some(i) = t.strip_prefix("Iface Name:") {
            if !address.is_empty() && !iqn.is_empty() && !portal.is_empty() {
                res.push(DiscoveryDbEntry {
                    discovery_address: address.clone(),
                    iqn: iqn.clone(),
                    portal: portal.clone(),
                    iface: i.trim().to_owned(),
                });
            }
            portal.clear();
        }
    }
    res
}

/// The discoverydb portals found through `discovery_portal` (`ip:port`, IPv6 bracketed or not)
/// for `iface`, in order, as `(portal, iqn)`.
pub fn discoverydb_portals(
    entries: &[DiscoveryDbEntry],
    discovery_portal: &str,
    iface: &str,
) -> Vec<(String, String)> {
    let Some((ip, port)) = discovery_portal.rsplit_once(':') else {
        return Vec::new();
    };
    let want = format!("{},{}", strip_brackets(ip), port);
    entries
        .iter()
        .filter(|e| strip_brackets(&e.discovery_address) == want && e.iface == iface)
        .map(|e| (e.portal.clone(), e.iqn.clone()))
        .collect()
}

fn strip_brackets(s: &str) -> String {
    s.replace(['[', ']'], "")
}

/// The initiator IQN from `/etc/iscsi/initiatorname.iscsi` content.
pub fn parse_initiator_name(content: &str) -> Option<String> {
    content.lines().find_map(|l| {
        l.strip_prefix("InitiatorName=")
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    })
}

/// Runs `iscsiadm` commands through the host port with os-brick's exit-code rules.
#[derive(Clone, Copy)]
pub(crate) struct Iscsiadm<'h> {
    host: &'h dyn Host,
}

impl std::fmt::Debug for Iscsiadm<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Iscsiadm")
    }
}

/// Node-scoped command: `iscsiadm -m node -T <iqn> -p <portal> <args...>`.
pub(crate) fn node_cmd(iqn: &str, portal: &str, args: &[&str]) -> Cmd {
    Cmd::new("iscsiadm")
        .args(["-m", "node", "-T", iqn, "-p", portal])
        .args(args.iter().copied())
}

impl<'h> Iscsiadm<'h> {
    pub(crate) fn new(host: &'h dyn Host) -> Self {
        Self { host }
    }

    /// Runs `cmd`; an exit status outside `ok` is [`ConnectorError::CommandFailed`].
    pub(crate) fn run(&self, cmd: &Cmd, ok: &[i32]) -> Result<CmdOutput, ConnectorError> {
        run_checked(self.host, cmd, ok)
    }

    /// `iscsiadm -m session` (exits 0, 21, 255 accepted; stderr only logged).
    pub(crate) fn sessions(&self) -> Result<Vec<SessionEntry>, ConnectorError> {
        let out = self.run(&Cmd::new("iscsiadm").args(["-m", "session"]), &[0, 21, 255])?;
        if !out.stderr.trim().is_empty() {
            tracing::debug!(stderr = out.stderr.trim(), "iscsiadm -m session stderr");
        }
        Ok(parse_sessions(&out.stdout))
    }

    /// `iscsiadm -m node` (no exit-code check; any stderr means "no nodes").
    pub(crate) fn nodes(&self) -> Result<Vec<NodeEntry>, ConnectorError> {
        let out = self.host.run(&Cmd::new("iscsiadm").args(["-m", "node"]))?;
        if !out.stderr.trim().is_empty() {
            tracing::warn!(
                stderr = out.stderr.trim(),
                "couldn't list iSCSI nodes; assuming none"
            );
            return Ok(Vec::new());
        }
        Ok(parse_nodes(&out.stdout))
    }

    /// `iscsiadm -m discoverydb -o show -P 1`.
    pub(crate) fn discoverydb(&self) -> Result<Vec<DiscoveryDbEntry>, ConnectorError> {
        let cmd = Cmd::new("iscsiadm").args(["-m", "discoverydb", "-o", "show", "-P", "1"]);
        let out = self.run(&cmd, &[0])?;
        Ok(parse_discoverydb(&out.stdout))
    }
}

/// Runs `cmd` on `host`, accepting the exit statuses in `ok`.
pub(crate) fn run_checked(
    host: &dyn Host,
    cmd: &Cmd,
    ok: &[i32],
) -> Result<CmdOutput, ConnectorError> {
    let out = host.run(cmd)?;
    tracing::debug!(cmd = %mask(cmd), status = out.status, "ran");
    if ok.contains(&out.status) {
        Ok(out)
    } else {
        Err(ConnectorError::CommandFailed {
            cmd: mask(cmd),
            status: out.status,
            stdout: out.stdout.trim().to_owned(),
            stderr: out.stderr.trim().to_owned(),
        })
    }
}

/// The command line for logs and errors, with CHAP secrets masked.
pub(crate) fn mask(cmd: &Cmd) -> String {
    // The argument after `-v` that follows a password key is the secret.
    let args = cmd.args_list();
    let secret = |i: usize| {
        i >= 2
            && (args[i - 2].ends_with(".password") || args[i - 2].ends_with(".password_in"))
            && args[i - 1] == "-v"
    };
    let mut out = String::new();
    // Writing to a `String` cannot fail.
    let _ = cmd.write_hiding(&mut out, secret);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_from_real_capture_and_os_brick_fixtures() {
        let real = "tcp: [1] 10.0.2.2:3260,1 iqn.2010-10.org.openstack:volume-one (non-flash)\n\
                    tcp: [2] 10.0.2.2:3261,1 iqn.2010-10.org.openstack:volume-one (non-flash)\n";
        let s = parse_sessions(real);
        assert_eq!(s.len(), 2);
        assert_eq!(
            s[1],
            SessionEntry {
                transport: "tcp".into(),
                sid: 2,
                portal: "10.0.2.2:3261".into(),
                tpgt: "1".into(),
                iqn: "iqn.2010-10.org.openstack:volume-one".into(),
            }
        );
        let fixture = "tcp: [session1] ip1:port1,1 tgt1 (non-flash)\n\
                       tcp: [session2] ip2:port2,-1 tgt2 (non-flash)\n\
                       non-tcp: [3] ip3:port3,1 tgt3\n\
                       iscsiadm: No active sessions.\n\
                       garbage\n\n";
        let s = parse_sessions(fixture);
        assert_eq!(s.len(), 3);
        assert_eq!((s[0].sid, s[0].portal.as_str()), (1, "ip1:port1"));
        assert_eq!(s[1].tpgt, "-1");
        assert!(!s[2].is_valid());
        assert!(s[0].is_valid());
    }

    #[test]
    fn ipv6_session_portal_keeps_brackets() {
        let s = parse_sessions("iser: [7] [fe80::1]:3260,1 iqn.x:y (non-flash)");
        assert_eq!(s[0].portal, "[fe80::1]:3260");
        assert_eq!(s[0].transport, "iser");
        assert!(s[0].is_valid());
    }

    #[test]
    fn nodes_skip_corrupt_lines() {
        let out = "10.0.2.2:3260,4294967295 iqn.2010-10.org.openstack:volume-one\n\
                   ip2:port2,-1 tgt2\n[]:port3,-1\nnoise line with words\n";
        assert_eq!(
            parse_nodes(out),
            vec![
                NodeEntry {
                    portal: "10.0.2.2:3260".into(),
                    iqn: "iqn.2010-10.org.openstack:volume-one".into()
                },
                NodeEntry {
                    portal: "ip2:port2".into(),
                    iqn: "tgt2".into()
                },
            ]
        );
    }

    #[test]
    fn node_record_and_startups() {
        let rec = "# BEGIN RECORD 2.1.8\nnode.name = iqn.2010-10.org.openstack:volume-two\n\
                   node.tpgt = -1\nnode.startup = manual\niface.hwaddress = <empty>\n\
                   node.session.scan = manual\n# END RECORD\n";
        let m = parse_record(rec);
        assert_eq!(m["node.session.scan"], "manual");
        assert_eq!(m["iface.hwaddress"], "");
        let two = format!(
            "{rec}{}",
            rec.replace("volume-two", "volume-three")
                .replace("= manual\niface", "= automatic\niface")
        );
        let st = parse_node_startups(&two);
        assert_eq!(st["iqn.2010-10.org.openstack:volume-two"], "manual");
        assert_eq!(st["iqn.2010-10.org.openstack:volume-three"], "automatic");
    }

    #[test]
    fn sendtargets_ignores_noise() {
        let out = "Loading iscsi modules: done\nStarting iSCSI initiator service: done\n\
                   10.15.84.19:3260,1 iqn.1992-08.com.netapp:sn.33615311\n\
                   10.15.85.19:3260,2 iqn.1992-08.com.netapp:sn.33615311\n";
        let t = parse_sendtargets(out);
        assert_eq!(t.len(), 2);
        assert_eq!(t[1].portal, "10.15.85.19:3260");
        assert_eq!(t[1].iqn, "iqn.1992-08.com.netapp:sn.33615311");
    }

    #[test]
    fn discoverydb_filters_by_address_and_iface() {
        let out = "SENDTARGETS:\nDiscoveryAddress: 192.168.1.33,3260\nDiscoveryAddress: 192.168.1.2,3260\n\
Target: iqn.2004-04.com.qnap:ts-831x:iscsi.cinder-20170531114245.9eff88\n\
\tPortal: 192.168.1.3:3260,1\n\t\tIface Name: default\n\
\tPortal: 192.168.1.2:3260,1\n\t\tIface Name: default\n\
Target: iqn.2004-04.com.qnap:ts-831x:iscsi.cinder-20170531114447.9eff88\n\
\tPortal: 192.168.1.3:3260,1\n\t\tIface Name: iser\n\
DiscoveryAddress: 192.168.1.38,3260\niSNS:\nNo targets found.\nSTATIC:\nNo targets found.\nFIRMWARE:\nNo targets found.\n";
        let e = parse_discoverydb(out);
        assert_eq!(e.len(), 3);
        let p = discoverydb_portals(&e, "192.168.1.2:3260", "default");
        assert_eq!(
            p,
            vec![
                (
                    "192.168.1.3:3260".to_owned(),
                    "iqn.2004-04.com.qnap:ts-831x:iscsi.cinder-20170531114245.9eff88".to_owned()
                ),
                (
                    "192.168.1.2:3260".to_owned(),
                    "iqn.2004-04.com.qnap:ts-831x:iscsi.cinder-20170531114245.9eff88".to_owned()
                ),
            ]
        );
        assert!(discoverydb_portals(&e, "192.168.1.33:3260", "default").is_empty());
        assert_eq!(discoverydb_portals(&e, "192.168.1.2:3260", "iser").len(), 1);
    }

    #[test]
    fn initiator_name() {
        let c = "## DO NOT EDIT\n## InitiatorName=iqn.bad\nInitiatorName=iqn.1993-08.org.debian:01:simguest01\n";
        assert_eq!(
            parse_initiator_name(c).as_deref(),
            Some("iqn.1993-08.org.debian:01:simguest01")
        );
        assert_eq!(parse_initiator_name("nothing"), None);
    }

    #[test]
    fn mask_hides_chap_passwords() {
        let cmd = node_cmd(
            "iqn.x",
            "1.2.3.4:3260",
            &[
                "--op",
                "update",
                "-n",
                "node.session.auth.password",
                "-v",
                "s3cret",
            ],
        );
        let m = mask(&cmd);
        assert!(!m.contains("s3cret"), "{m}");
        assert!(m.contains("node.session.auth.password -v ***"), "{m}");
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(text in "(?s).{0,300}") {
            let _ = parse_sessions(&text);
            let _ = parse_nodes(&text);
            let _ = parse_record(&text);
            let _ = parse_node_startups(&text);
            let _ = parse_sendtargets(&text);
            let e = parse_discoverydb(&text);
            let _ = discoverydb_portals(&e, &text, "default");
            let _ = parse_initiator_name(&text);
            let _ = crate::multipath::parse_multipath_l(&text);
            let _ = crate::multipath::parse_show_paths(&text);
        }
    }
}
