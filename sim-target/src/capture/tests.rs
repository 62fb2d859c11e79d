use super::*;

/// A trimmed-down capture made of lines copied from `iscsi-manual-scan.txt` and
/// `multipath-2paths.txt`.
const SNIPPET: &str = "# REAL-KERNEL GROUND TRUTH: test snippet
# file: snippet.txt
#
=== STEPS DONE IN THE GUEST BEFORE THIS CAPTURE ===

  modprobe iscsi_tcp; iscsid -f &
  iscsiadm -m node -o new -T iqn.2010-10.org.openstack:volume-two -p 10.0.2.2:3260

=== SECTION 1: class / bus directories (walk -d 1; columns: PATH TYPE MODE DETAIL) ===
/sys/class/iscsi_host\td\t0755\t
/sys/class/iscsi_host/host0\tl\t0777\t../../devices/platform/host0/iscsi_host/host0
/sys/class/nvme\t<absent>

=== SECTION 2: device trees the class links point into (walk -d 10, not descending into power trace mq iosched) ===
/sys/devices/platform/host0/iscsi_host/host0/ipaddress\tf\t0444\t10.0.2.15
/sys/devices/platform/host0/iscsi_host/host0/uevent\tf\t0644\t<empty>
/sys/devices/platform/host0/scsi_host/host0/scan\tf\t0200\t<write-only>
/sys/devices/platform/host0/session1/target0:0:0/0:0:0:2/access_state\tf\t0444\t<err-read: Invalid argument>
/sys/devices/platform/host0/session1/target0:0:0/0:0:0:2/block/sda/uevent\tf\t0644\tMAJOR=8\\nMINOR=0\\nDEVNAME=sda\\nDEVTYPE=disk\\nDISKSEQ=2
/sys/devices/platform/host0/session1/target0:0:0/0:0:0:2/block/sda/inflight\tf\t0444\t       0        0
/sys/devices/platform/host0/session1/target0:0:0/0:0:0:2/model\tf\t0444\tVIRTUAL-DISK    
/sys/devices/platform/host0/session1/target0:0:0/0:0:0:2/vpd_pg0\tf\t0444\thex[len=10]: 00 00 00 06 00 80 83 b0 b1 b2

=== SECTION 3: /dev ===
$ sh -c ls -l /dev/sd* /dev/sg* /dev/dm-* /dev/nvme* /dev/ng* /dev/bsg 2>&1
ls: /dev/nvme*: No such file or directory
brw-rw----    1 root     disk      253,   0 Nov 25 04:52 /dev/dm-0
brw-rw----    1 root     disk        8,  16 Nov 25 04:52 /dev/sdb
crw-------    1 root     root       21,   0 Nov 25 04:52 /dev/sg0

/dev/bsg:
total 0
crw-------    1 root     root      248,   0 Nov 25 04:52 0:0:0:0
[exit status 1]

$ ls -l /dev/mapper
total 0
lrwxrwxrwx    1 root     root             7 Nov 25 04:52 360000000000000000e00000000010001 -> ../dm-0
crw-------    1 root     root       10, 236 Nov 25 04:52 control
[exit status 0]

$ walk /dev/disk /dev/mapper /dev/bsg
/dev/disk\td\t0755\t
/dev/disk/by-path/ip-10.0.2.2:3260-iscsi-iqn.2010-10.org.openstack:volume-one-lun-1\tl\t0777\t../../sda
/dev/mapper/control\tc\t0600\t10:236
/dev/bsg/0:0:0:0\tc\t0600\t248:0
/dev/nowhere\t?\t-\t<err-lstat: No such file or directory>
[exit status 0]

$ sh -c ls -l /dev/block | grep -v -E \" (loop|ram|vd)\"
total 0
lrwxrwxrwx    1 root     root             7 Nov 25 04:52 253:0 -> ../dm-0
[exit status 0]

=== SECTION 4: command outputs ===
$ iscsiadm -m session
iscsiadm: No active sessions.
[exit status 21]

$ multipathd show paths raw format %d %w
sda 360000000000000000e00000000010001
[exit status 0]

(nvme commands skipped: nvme_core not loaded in this scenario)

$ cat /proc/partitions
major minor  #blocks  name

 254        0      65536 vda
[exit status 0]
";

fn parse_ok(text: &str) -> Capture {
    match Capture::parse(text) {
        Ok(c) => c,
        Err(e) => panic!("parse failed: {e}"),
    }
}

#[test]
fn snippet_parses_into_steps_tree_and_commands() {
    let cap = parse_ok(SNIPPET);
    assert_eq!(
        cap.header.first().map(String::as_str),
        Some("REAL-KERNEL GROUND TRUTH: test snippet")
    );
    assert_eq!(cap.steps.len(), 2);
    assert_eq!(
        cap.steps[1],
        "iscsiadm -m node -o new -T iqn.2010-10.org.openstack:volume-two -p 10.0.2.2:3260"
    );
    assert_eq!(
        cap.tree.get("/sys/class/iscsi_host"),
        Some(&Entry::Dir { mode: 0o755 })
    );
    assert_eq!(
        cap.tree.get("/sys/class/iscsi_host/host0"),
        Some(&Entry::Link {
            target: "../../devices/platform/host0/iscsi_host/host0".into()
        })
    );
    assert!(cap.tree.absent().contains("/sys/class/nvme"));
    assert!(cap.tree.absent().contains("/dev/nowhere"));
    assert_eq!(
        cap.notes,
        vec!["(nvme commands skipped: nvme_core not loaded in this scenario)".to_owned()]
    );
    assert_eq!(cap.dev_commands.len(), 4);
    assert_eq!(cap.commands.len(), 3);
    let session = cap.command("iscsiadm -m session").unwrap();
    assert_eq!(session.status, 21);
    assert_eq!(session.output, "iscsiadm: No active sessions.\n");
    let mp = cap
        .command("multipathd show paths raw format %d %w")
        .unwrap();
    assert_eq!(mp.output, "sda 360000000000000000e00000000010001\n");
    // Blank lines inside a command's output are kept.
    let parts = cap.command("cat /proc/partitions").unwrap();
    assert_eq!(
        parts.output,
        "major minor  #blocks  name\n\n 254        0      65536 vda\n"
    );
}

#[test]
fn file_contents_are_decoded() {
    let cap = parse_ok(SNIPPET);
    let file = |p: &str| match cap.tree.get(p) {
        Some(Entry::File { mode, content }) => (*mode, content.clone()),
        other => panic!("{p}: {other:?}"),
    };
    let lun = "/sys/devices/platform/host0/session1/target0:0:0/0:0:0:2";
    assert_eq!(
        file("/sys/devices/platform/host0/iscsi_host/host0/ipaddress"),
        (0o444, Content::Text(b"10.0.2.15\n".to_vec()))
    );
    assert_eq!(
        file("/sys/devices/platform/host0/iscsi_host/host0/uevent"),
        (0o644, Content::Empty)
    );
    assert_eq!(
        file("/sys/devices/platform/host0/scsi_host/host0/scan"),
        (0o200, Content::WriteOnly)
    );
    assert_eq!(
        file(&format!("{lun}/access_state")).1,
        Content::ReadError("Invalid argument".into())
    );
    assert_eq!(
        file(&format!("{lun}/block/sda/uevent")).1,
        Content::Text(b"MAJOR=8\nMINOR=0\nDEVNAME=sda\nDEVTYPE=disk\nDISKSEQ=2\n".to_vec())
    );
    // Leading and trailing spaces are content.
    assert_eq!(
        file(&format!("{lun}/block/sda/inflight")).1,
        Content::Text(b"       0        0\n".to_vec())
    );
    assert_eq!(
        file(&format!("{lun}/model")).1,
        Content::Text(b"VIRTUAL-DISK    \n".to_vec())
    );
    assert_eq!(
        file(&format!("{lun}/vpd_pg0")).1,
        Content::Binary {
            len: 10,
            prefix: vec![0, 0, 0, 6, 0, 0x80, 0x83, 0xb0, 0xb1, 0xb2],
            more: false
        }
    );
}

#[test]
fn dev_listings_become_nodes() {
    let cap = parse_ok(SNIPPET);
    let t = &cap.tree;
    assert_eq!(
        t.get("/dev/dm-0"),
        Some(&Entry::Block {
            major: 253,
            minor: 0,
            mode: 0o660
        })
    );
    assert_eq!(
        t.get("/dev/sdb"),
        Some(&Entry::Block {
            major: 8,
            minor: 16,
            mode: 0o660
        })
    );
    assert_eq!(
        t.get("/dev/sg0"),
        Some(&Entry::Char {
            major: 21,
            minor: 0,
            mode: 0o600
        })
    );
    // Listed by `ls -l` under the `/dev/bsg:` header and by `walk`: both agree.
    assert_eq!(
        t.get("/dev/bsg/0:0:0:0"),
        Some(&Entry::Char {
            major: 248,
            minor: 0,
            mode: 0o600
        })
    );
    assert_eq!(
        t.get("/dev/mapper/360000000000000000e00000000010001"),
        Some(&Entry::Link {
            target: "../dm-0".into()
        })
    );
    assert_eq!(
        t.get("/dev/mapper/control"),
        Some(&Entry::Char {
            major: 10,
            minor: 236,
            mode: 0o600
        })
    );
    assert_eq!(
        t.get("/dev/block/253:0"),
        Some(&Entry::Link {
            target: "../dm-0".into()
        })
    );
    assert_eq!(
        t.get(
            "/dev/disk/by-path/ip-10.0.2.2:3260-iscsi-iqn.2010-10.org.openstack:volume-one-lun-1"
        ),
        Some(&Entry::Link {
            target: "../../sda".into()
        })
    );
}

#[test]
fn content_decoding_covers_every_marker() {
    assert_eq!(
        Content::decode("a\\tb\\\\c\\x01"),
        Ok(Content::Text(b"a\tb\\c\x01\n".to_vec()))
    );
    assert_eq!(Content::decode(""), Ok(Content::Text(b"\n".to_vec())));
    assert_eq!(
        Content::decode("abc<no-trailing-newline>"),
        Ok(Content::Text(b"abc".to_vec()))
    );
    assert_eq!(
        Content::decode("<err-open: Permission denied>"),
        Ok(Content::OpenError("Permission denied".into()))
    );
    assert_eq!(
        Content::decode("ab...<truncated, 4096 bytes read>"),
        Ok(Content::Truncated {
            prefix: b"ab".to_vec(),
            len: 4096
        })
    );
    let long: String = std::iter::repeat_n(" 00", 96).collect();
    assert_eq!(
        Content::decode(&format!("hex[len=4096+]:{long} ...")),
        Ok(Content::Binary {
            len: 4096,
            prefix: vec![0; 96],
            more: true
        })
    );
}

#[test]
fn render_mimics_walk_and_round_trips() {
    assert_eq!(Content::render(0o200, b""), Content::WriteOnly);
    assert_eq!(Content::render(0o444, b""), Content::Empty);
    assert_eq!(
        Content::render(0o444, b"running\n"),
        Content::Text(b"running\n".to_vec())
    );
    // A binary page: first byte is a control byte.
    let pg = [0u8, 0x83, 0, 0x48, 2, 1];
    assert_eq!(
        Content::render(0o444, &pg),
        Content::Binary {
            len: 6,
            prefix: pg.to_vec(),
            more: false
        }
    );
    // Text with one stray control byte in a long line stays text.
    let mostly = b"abcdefghij\x01klmnop\n";
    assert!(matches!(Content::render(0o444, mostly), Content::Text(_)));
    let big = vec![b'a'; 2000];
    assert_eq!(
        Content::render(0o444, &big),
        Content::Truncated {
            prefix: vec![b'a'; 1024],
            len: 2000
        }
    );
    let huge = vec![0u8; 10_000];
    assert_eq!(
        Content::render(0o444, &huge),
        Content::Binary {
            len: 4096,
            prefix: vec![0; 96],
            more: true
        }
    );
    for c in [
        Content::Text(b"x\ty\\z\x7f\n".to_vec()),
        Content::Text(b"no newline".to_vec()),
        Content::Binary {
            len: 100,
            prefix: vec![7; 96],
            more: false,
        },
        Content::Binary {
            len: 4,
            prefix: vec![0, 1, 2, 3],
            more: false,
        },
        Content::Truncated {
            prefix: b"ab".to_vec(),
            len: 3000,
        },
        Content::Empty,
        Content::WriteOnly,
        Content::ReadError("Invalid argument".into()),
    ] {
        assert_eq!(
            Content::decode(&c.to_detail()),
            Ok(c.clone()),
            "{}",
            c.to_detail()
        );
    }
}

#[test]
fn bad_content_is_a_typed_error() {
    for bad in [
        "abc\\q",
        "abc\\",
        "\\x4",
        "\\xzz",
        "hex[len=3]: 00 01",
        "hex[len=2]: 00 01 02",
        "hex[len=x]: 00",
        "hex[len=2 00 01",
        "hex[len=2]: 0g 01",
        "hex[len=200]: 00 ...",
        "<err-read: no end",
        "a...<truncated, many bytes read>",
    ] {
        assert!(
            matches!(
                Content::decode(bad),
                Err(CaptureErrorKind::BadContent { .. })
            ),
            "{bad:?} decoded as {:?}",
            Content::decode(bad)
        );
    }
}

fn err_of(text: &str) -> CaptureError {
    match Capture::parse(text) {
        Ok(c) => panic!("parsed garbage: {c:?}"),
        Err(e) => e,
    }
}

#[test]
fn malformed_lines_give_their_line_number() {
    let replace = |from: &str, to: &str| SNIPPET.replacen(from, to, 1);
    let line_of = |needle: &str| {
        SNIPPET
            .lines()
            .position(|l| l.contains(needle))
            .map(|i| i + 1)
            .unwrap()
    };

    let e = err_of(&replace(
        "/sys/class/iscsi_host\td\t0755\t",
        "/sys/class/iscsi_host d 0755",
    ));
    assert_eq!(e.line, line_of("/sys/class/iscsi_host\td"));
    assert!(matches!(e.kind, CaptureErrorKind::WalkColumns(_)), "{e}");

    let e = err_of(&replace("iscsi_host\td\t0755", "iscsi_host\tz\t0755"));
    assert!(matches!(e.kind, CaptureErrorKind::UnknownType(_)), "{e}");

    let e = err_of(&replace("iscsi_host\td\t0755", "iscsi_host\td\t0999"));
    assert!(matches!(e.kind, CaptureErrorKind::BadMode(_)), "{e}");

    let e = err_of(&replace("/sys/class/iscsi_host\t", "sys/../x\t"));
    assert!(matches!(e.kind, CaptureErrorKind::BadPath(_)), "{e}");

    let e = err_of(&replace("[exit status 21]", "[exit status x]"));
    assert_eq!(e.line, line_of("[exit status 21]"));
    assert!(matches!(e.kind, CaptureErrorKind::BadStatus(_)), "{e}");

    let e = err_of(&replace("c\t0600\t10:236", "c\t0600\t10-236"));
    assert_eq!(e.line, line_of("/dev/mapper/control\tc"));
    assert!(matches!(e.kind, CaptureErrorKind::BadDevice(_)), "{e}");

    // The walk and ls -l views of /dev/mapper/control disagree.
    let e = err_of(&replace("c\t0600\t10:236", "c\t0600\t10:237"));
    assert!(matches!(e.kind, CaptureErrorKind::Conflict(_)), "{e}");

    let e = err_of(&replace(
        "crw-------    1 root     root       21,   0",
        "crw-------    1 root     root       21    0",
    ));
    assert_eq!(e.line, line_of("/dev/sg0"));
    assert!(matches!(e.kind, CaptureErrorKind::LsLine(_)), "{e}");

    let e = err_of(&replace("=== SECTION 2", "=== SECTION 9"));
    assert!(matches!(e.kind, CaptureErrorKind::UnknownSection(_)), "{e}");

    let e = err_of(&replace(
        "(nvme commands skipped",
        "nvme commands skipped (",
    ));
    assert!(matches!(e.kind, CaptureErrorKind::OutsideCommand(_)), "{e}");

    let e = err_of(&replace(
        "sda 360000000000000000e00000000010001\n[exit status 0]",
        "sda",
    ));
    assert!(matches!(e.kind, CaptureErrorKind::Unterminated(_)), "{e}");
    assert_eq!(e.line, line_of("$ multipathd show paths"));

    let e = err_of("garbage\n");
    assert!(
        matches!(e.kind, CaptureErrorKind::BeforeFirstSection(_)),
        "{e}"
    );

    let e = err_of("");
    assert!(
        matches!(e.kind, CaptureErrorKind::MissingSection("STEPS")),
        "{e}"
    );

    let cut = SNIPPET.split("=== SECTION 3").next().unwrap();
    let e = err_of(cut);
    assert!(
        matches!(e.kind, CaptureErrorKind::MissingSection("3")),
        "{e}"
    );

    let twice = SNIPPET.replacen("=== SECTION 2:", "=== SECTION 1:", 1);
    let e = err_of(&twice);
    assert!(
        matches!(e.kind, CaptureErrorKind::SectionOrder { .. }),
        "{e}"
    );
}

#[test]
fn ls_line_parser_reads_modes_and_rejects_garbage() {
    assert_eq!(parse_ls_perms("rwxr-xr-x"), Some(0o755));
    assert_eq!(parse_ls_perms("rwsr-sr-t"), Some(0o7755));
    assert_eq!(parse_ls_perms("rw-rw----"), Some(0o660));
    assert_eq!(parse_ls_perms("rw-rw---"), None);
    assert_eq!(parse_ls_perms("rw-rw---q"), None);
    assert!(parse_ls_line("brw-rw----    1 root     disk        8,").is_err());
    assert!(parse_ls_line("-rw-r--r--    1 root     root  0 Nov 25 04:52 file").is_err());
    assert!(parse_ls_line("lrwxrwxrwx    1 root     root  7 Nov 25 04:52 nolinkarrow").is_err());
    assert!(parse_ls_line("").is_err());
    assert!(parse_ls_line("é").is_err());
}

/// Deterministic mutation fuzzing: cut, duplicate and corrupt lines and bytes of the snippet;
/// the parser must return (Ok or a typed error), never panic.
#[test]
fn parser_never_panics_on_mutated_input() {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let alphabet: &[u8] = b"\t\n\\x<>[]:=$#()- 0123456789abcdefhlnt/?.";
    let mut errors = 0;
    for _ in 0..2000 {
        let mut bytes = SNIPPET.as_bytes().to_vec();
        for _ in 0..(1 + next() % 4) {
            let len = bytes.len().max(1) as u64;
            let pos = usize::try_from(next() % len).unwrap();
            match next() % 3 {
                0 => {
                    let c = alphabet[usize::try_from(next() % alphabet.len() as u64).unwrap()];
                    if let Some(b) = bytes.get_mut(pos) {
                        *b = c;
                    }
                }
                1 => {
                    let end = (pos + usize::try_from(next() % 40).unwrap()).min(bytes.len());
                    bytes.drain(pos..end);
                }
                _ => {
                    let end = (pos + usize::try_from(next() % 40).unwrap()).min(bytes.len());
                    let chunk = bytes[pos..end].to_vec();
                    bytes.splice(pos..pos, chunk);
                }
            }
        }
        let text = String::from_utf8_lossy(&bytes);
        if let Err(e) = Capture::parse(&text) {
            errors += 1;
            assert!(
                e.line <= text.lines().count().max(1),
                "line {} out of range: {e}",
                e.line
            );
        }
    }
    assert!(
        errors > 100,
        "mutations should usually break the parse, got {errors} errors"
    );
}

#[test]
fn bare_walk_listings_parse_and_round_trip() {
    let text = "# header\n/sys/kernel/config/nvmet\td\t0755\t\n/sys/kernel/config/nvmet/ports/1/addr_trsvcid\tf\t0644\t4420\n";
    let tree = CaptureTree::parse_walk(text).unwrap();
    assert_eq!(tree.len(), 2);
    let again = CaptureTree::parse_walk(&tree.to_walk_lines()).unwrap();
    assert_eq!(again, tree);
    let e = CaptureTree::parse_walk("# h\n\n/x\tf\t0644\n").unwrap_err();
    assert_eq!(e.line, 3);
}
