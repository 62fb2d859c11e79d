//! The router, driven without a socket (`tower::ServiceExt::oneshot`).

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use super::fixture::{SyntheticVolume, snapshot, write_iscsi_host};
use super::*;

struct Fx {
    dir: tempfile::TempDir,
    vols: Vec<SyntheticVolume>,
}

fn fx(sessions: u32, luns: u32) -> Fx {
    let dir = tempfile::tempdir().unwrap();
    let vols = write_iscsi_host(dir.path(), sessions, luns).unwrap();
    Fx { dir, vols }
}

impl Fx {
    fn config(&self) -> AgentConfig {
        AgentConfig::new(self.dir.path())
    }
    fn app(&self) -> Router {
        router(AppState::from_config(&self.config()).unwrap())
    }
    fn app_with_token(&self, token: &str) -> Router {
        let mut c = self.config();
        c.token = Some(Token::new(token).unwrap());
        router(AppState::from_config(&c).unwrap())
    }
}

async fn call(app: Router, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Value) {
    let resp = app.oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "{status}: body is not JSON ({e}): {:?}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, headers, body)
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

fn post(uri: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.into())
        .unwrap()
}

fn assert_error(status: StatusCode, body: &Value, want_status: StatusCode, code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "no message: {body}"
    );
}

#[tokio::test]
async fn healthz_answers_without_token() {
    let f = fx(1, 1);
    let (status, _, body) = call(f.app_with_token("t0k"), get("/healthz")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["read_only"], true);
}

#[tokio::test]
async fn paths_report_device_and_identity() {
    let f = fx(2, 3);
    let v = &f.vols[4];
    for q in ["", "?multipath=true", "?multipath=false"] {
        let (status, _, body) = call(
            f.app(),
            post(&format!("/v1/iscsi/paths{q}"), v.props.to_string()),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let paths: wire::Paths = serde_json::from_value(body).unwrap();
        assert_eq!(paths.protocol, "iscsi");
        assert_eq!(paths.multipath, q == "?multipath=true");
        assert_eq!(paths.paths.len(), 1, "{paths:?}");
        let p = &paths.paths[0];
        assert_eq!(p.path.as_str(), v.by_path);
        assert_eq!(
            p.device.as_ref().unwrap().as_str(),
            format!("/dev/{}", v.device)
        );
        assert_eq!(p.wwid.as_ref().unwrap().as_str(), v.wwid);
    }
    // Bare `data` works too: the URL gives the protocol.
    let (status, _, body) = call(
        f.app(),
        post("/v1/iscsi/paths", v.props["data"].to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["paths"][0]["wwid"], v.wwid.as_str());
}

#[tokio::test]
async fn search_path_volumes_connector_and_orphans() {
    let f = fx(1, 2);
    let (status, _, body) = call(f.app(), get("/v1/iscsi/search-path")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["search_path"], "/dev/disk/by-path");

    let (status, _, body) = call(f.app(), get("/v1/iscsi/volumes")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let vols: Vec<&str> = body["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        vols,
        vec![f.vols[0].by_path.as_str(), f.vols[1].by_path.as_str()]
    );

    let (status, _, body) = call(f.app(), get("/v1/connector")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["initiator"], "iqn.1993-08.org.debian:01:synthetic");
    assert_eq!(body["multipath"], false);

    let (status, _, body) = call(f.app(), get("/v1/orphans")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["orphans"], json!([]));
    // A leaked detach: the disk is gone, its link stayed.
    std::fs::remove_file(f.dir.path().join("dev").join(&f.vols[1].device)).unwrap();
    let (_, _, body) = call(f.app(), get("/v1/orphans")).await;
    let orphans: wire::Orphans = serde_json::from_value(body).unwrap();
    assert!(
        orphans
            .orphans
            .iter()
            .any(|o| o.reason == wire::OrphanReason::StaleLink
                && o.path.as_str() == f.vols[1].by_path),
        "{orphans:#?}"
    );
}

#[tokio::test]
async fn unknown_and_unsupported_protocols_are_json_errors() {
    let f = fx(1, 1);
    let (status, _, body) = call(f.app(), get("/v1/scsi-over-carrier-pigeon/volumes")).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "unsupported_protocol");
    let (status, _, body) = call(f.app(), post("/v1/bogus/paths", "{}")).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "unsupported_protocol");
    // A known protocol without a connector (the mapping every such route goes through).
    let e = connector_error(ConnectorError::Unsupported {
        protocol: "nvmeof".into(),
    });
    assert_eq!(e.status(), StatusCode::NOT_IMPLEMENTED);
    assert_eq!(e.code(), ErrorCode::UnsupportedProtocol);
    // Whatever the connectors support today, fc/nvmeof/local answer JSON, never a panic.
    for proto in ["fc", "nvmeof", "local"] {
        let (status, _, body) = call(f.app(), get(&format!("/v1/{proto}/search-path"))).await;
        assert!(
            status == StatusCode::OK
                || (status == StatusCode::NOT_IMPLEMENTED
                    && body["error"] == "unsupported_protocol"),
            "{proto}: {status} {body}"
        );
    }
}

#[tokio::test]
async fn routing_errors_are_json() {
    let f = fx(1, 1);
    let (status, _, body) = call(f.app(), get("/nope")).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, headers, body) = call(f.app(), get("/v1/iscsi/paths")).await;
    assert_error(
        status,
        &body,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    assert!(headers.get(header::ALLOW).is_some());
    let (status, _, body) = call(
        f.app(),
        post(
            "/v1/iscsi/paths?multipath=maybe",
            f.vols[0].props.to_string(),
        ),
    )
    .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_query");
    let (status, _, body) = call(
        f.app(),
        post("/v1/iscsi/paths?root=/etc", f.vols[0].props.to_string()),
    )
    .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_query");
}

#[tokio::test]
async fn wrong_or_missing_token_is_401() {
    let f = fx(1, 1);
    let props = f.vols[0].props.to_string();
    let cases: [(Option<&str>, StatusCode); 6] = [
        (None, StatusCode::UNAUTHORIZED),
        (Some("Bearer wrong"), StatusCode::UNAUTHORIZED),
        (Some("Bearer s3cre"), StatusCode::UNAUTHORIZED),
        (Some("Basic czNjcmV0"), StatusCode::UNAUTHORIZED),
        (Some("s3cret"), StatusCode::UNAUTHORIZED),
        (Some("Bearer s3cret"), StatusCode::OK),
    ];
    for (auth, want) in cases {
        for (method, uri) in [
            (Method::GET, "/v1/orphans"),
            (Method::GET, "/v1/connector"),
            (Method::GET, "/v1/iscsi/volumes"),
            (Method::GET, "/v1/iscsi/search-path"),
            (Method::POST, "/v1/iscsi/paths"),
        ] {
            let mut b = Request::builder().method(method.clone()).uri(uri);
            if let Some(a) = auth {
                b = b.header(header::AUTHORIZATION, a);
            }
            let body = if method == Method::POST {
                Body::from(props.clone())
            } else {
                Body::empty()
            };
            let (status, headers, body) =
                call(f.app_with_token("s3cret"), b.body(body).unwrap()).await;
            if want == StatusCode::OK {
                assert_eq!(status, StatusCode::OK, "{uri} {auth:?}: {body}");
            } else {
                assert_error(status, &body, want, "unauthorized");
                assert_eq!(headers.get(header::WWW_AUTHENTICATE).unwrap(), "Bearer");
            }
        }
    }
}

#[tokio::test]
async fn oversized_body_is_413_with_or_without_length() {
    let f = fx(1, 1);
    let big = format!(
        r#"{{"driver_volume_type": "iscsi", "data": {{"pad": "{}"}}}}"#,
        "x".repeat(70_000)
    );
    // Declared length: refused before the body is read.
    let req = Request::post("/v1/iscsi/paths")
        .header(header::CONTENT_LENGTH, big.len())
        .body(Body::from(big.clone()))
        .unwrap();
    let (status, _, body) = call(f.app(), req).await;
    assert_error(
        status,
        &body,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
    // No Content-Length header (as a chunked upload): the limit applies while reading.
    let (status, _, body) = call(f.app(), post("/v1/iscsi/paths", big)).await;
    assert_error(
        status,
        &body,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
    // Just under the limit is read (and then judged on its content).
    let (status, _, body) = call(
        f.app(),
        post("/v1/iscsi/paths", format!("{}{{}}", " ".repeat(60_000))),
    )
    .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_properties");
}

#[tokio::test]
async fn malformed_json_and_hostile_properties_are_400_and_touch_nothing() {
    let f = fx(2, 2);
    let before = snapshot(f.dir.path()).unwrap();
    let portal = "10.0.0.1:3260";
    let iqn = "iqn.2010-10.org.openstack:volume-00001";
    let hostile: Vec<(String, &str)> = vec![
        ("{".to_owned(), "bad_json"),
        ("not json at all".to_owned(), "bad_json"),
        ("\u{0}\u{1}".to_owned(), "bad_json"),
        (format!("{}1{}", "[".repeat(200), "]".repeat(200)), "bad_json"),
        ("[]".to_owned(), "invalid_properties"),
        ("null".to_owned(), "invalid_properties"),
        (json!({"driver_volume_type": "iscsi"}).to_string(), "invalid_properties"),
        (json!({"driver_volume_type": "fibre_channel", "data": {}}).to_string(), "invalid_properties"),
        (
            json!({"target_portal": portal, "target_iqn": "iqn.2010-10.org.openstack:../../../../etc/passwd", "target_lun": 1}).to_string(),
            "invalid_properties",
        ),
        (
            json!({"target_portal": portal, "target_iqn": "../../../sys/block/sda/device/delete", "target_lun": 1}).to_string(),
            "invalid_properties",
        ),
        (
            json!({"target_portal": portal, "target_iqn": iqn, "target_lun": -1}).to_string(),
            "invalid_properties",
        ),
        (
            r#"{"target_portal": "10.0.0.1:3260", "target_iqn": "iqn.2010-10.org.openstack:volume-00001", "target_lun": 1180591620717411303424}"#.to_owned(),
            "invalid_properties",
        ),
        (
            json!({"target_portal": portal, "target_iqn": iqn, "target_lun": 1.5}).to_string(),
            "invalid_properties",
        ),
        (
            json!({"target_portal": portal, "target_iqn": iqn, "target_lun": "1; rm -rf /"}).to_string(),
            "invalid_properties",
        ),
        (
            json!({"target_portal": "10.0.0.1:99999", "target_iqn": iqn, "target_lun": 1}).to_string(),
            "invalid_properties",
        ),
        (
            json!({"target_portal": portal, "target_iqn": iqn, "target_lun": 1, "device_path": "/../../etc/passwd"}).to_string(),
            "invalid_properties",
        ),
        (
            json!({"target_portal": portal, "target_iqn": iqn, "target_lun": 1, "device_path": "relative/dev/sda"}).to_string(),
            "invalid_properties",
        ),
        (
            json!({"target_portals": [portal], "target_iqns": [iqn, iqn], "target_luns": [1]}).to_string(),
            "invalid_properties",
        ),
    ];
    for (body, code) in hostile {
        let (status, _, resp) = call(f.app(), post("/v1/iscsi/paths", body.clone())).await;
        assert_error(status, &resp, StatusCode::BAD_REQUEST, code);
        assert!(resp.get("paths").is_none(), "{body}: {resp}");
    }
    let after = snapshot(f.dir.path()).unwrap();
    assert_eq!(before, after, "the host tree changed");
}

#[tokio::test]
async fn links_pointing_outside_the_root_are_resolved_inside_it() {
    let f = fx(1, 2);
    // The by-path links of both volumes now point at the build machine's real files.
    let by_path = |i: usize| f.dir.path().join(f.vols[i].by_path.trim_start_matches('/'));
    std::fs::remove_file(by_path(0)).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", by_path(0)).unwrap();
    std::fs::remove_file(by_path(1)).unwrap();
    std::os::unix::fs::symlink("../../../../../../../../../../etc/passwd", by_path(1)).unwrap();
    assert!(
        std::path::Path::new("/etc/passwd").exists(),
        "test needs a real /etc/passwd"
    );
    for v in &f.vols {
        let (status, _, body) = call(
            f.app(),
            post("/v1/iscsi/paths?multipath=true", v.props.to_string()),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            body["paths"],
            json!([]),
            "followed outside the root: {body}"
        );
        let diags = body["diagnostics"].to_string();
        assert!(diags.contains("/etc/passwd"), "{diags}");
        assert!(
            !diags.contains("root:"),
            "real /etc/passwd content leaked: {diags}"
        );
    }
    // A local volume whose device_path is the real /etc/passwd, or a link to it: the agent
    // only ever looks inside the root, where neither exists.
    std::os::unix::fs::symlink("/etc/passwd", f.dir.path().join("dev/evil")).unwrap();
    for device_path in ["/etc/passwd", "/dev/evil"] {
        let props = json!({"driver_volume_type": "local", "data": {"device_path": device_path}});
        let (status, _, body) = call(f.app(), post("/v1/local/paths", props.to_string())).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            body["paths"],
            json!([]),
            "followed outside the root: {body}"
        );
        assert!(!body.to_string().contains("root:x"), "{body}");
    }
    let (_, _, body) = call(f.app(), get("/v1/orphans")).await;
    let text = body.to_string();
    assert!(!text.contains("root:x"), "{text}");
    assert_eq!(
        body["orphans"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["reason"] == "stale_link")
            .count(),
        2,
        "{body}"
    );
}

#[tokio::test]
async fn slow_requests_time_out_with_json() {
    let f = fx(4, 40);
    let mut c = f.config();
    c.request_timeout = Duration::from_nanos(1);
    let app = router(AppState::from_config(&c).unwrap());
    let (status, _, body) = call(app, get("/v1/orphans")).await;
    assert_error(status, &body, StatusCode::SERVICE_UNAVAILABLE, "timeout");
}

#[test]
fn configuration_is_checked_at_start() {
    let f = fx(1, 1);
    let mut c = f.config();
    c.listen = "0.0.0.0:0".parse().unwrap();
    let err = AppState::from_config(&c).unwrap_err();
    assert!(
        matches!(err, AgentError::NonLoopbackWithoutToken { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("--token-file"), "{err}");
    c.token = Some(Token::new("t").unwrap());
    assert!(AppState::from_config(&c).is_ok());
    for ok in [
        "127.0.0.1:0",
        "[::1]:0",
        "[::ffff:127.0.0.1]:0",
        "127.1.2.3:80",
    ] {
        assert!(is_loopback(&ok.parse().unwrap()), "{ok}");
    }
    for bad in ["0.0.0.0:0", "[::]:0", "10.0.0.1:80", "[::ffff:10.0.0.1]:0"] {
        assert!(!is_loopback(&bad.parse().unwrap()), "{bad}");
    }
    let missing = AgentConfig::new(f.dir.path().join("missing"));
    assert!(matches!(
        AppState::from_config(&missing),
        Err(AgentError::Root { .. })
    ));
    let file = f.dir.path().join("etc/iscsi/initiatorname.iscsi");
    assert!(matches!(
        AppState::from_config(&AgentConfig::new(file)),
        Err(AgentError::RootNotDir { .. })
    ));
    // The root is canonicalized once.
    let state = AppState::from_config(&AgentConfig::new(f.dir.path().join("dev/.."))).unwrap();
    assert_eq!(state.root(), std::fs::canonicalize(f.dir.path()).unwrap());
}
