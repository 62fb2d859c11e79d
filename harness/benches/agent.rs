//! Throughput of the path agent on a big host: `POST /v1/iscsi/paths` against a synthetic
//! host with 8,192 by-path links (64 iSCSI sessions × 128 LUNs, real-kernel sysfs layout).
//!
//! Run with `cargo bench -p brick-harness --bench agent`. Prints divan's table (throughput in
//! requests per second as `item/s`) and, first, a plain "requests per second" summary measured
//! through the router (`oneshot`, no socket) and over a real loopback socket.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use brick_harness::agent::fixture::{SyntheticVolume, write_iscsi_host};
use brick_harness::agent::{Agent, AgentConfig, AppState, router};
use divan::Bencher;
use divan::counter::ItemsCount;
use tower::ServiceExt as _;

const SESSIONS: u32 = 64;
const LUNS: u32 = 128;

/// `cargo bench` passes `--bench`; without it (`cargo test --all-targets`) the suite only
/// smoke-tests itself on a tiny host, so the default test run stays fast.
fn bench_mode() -> bool {
    std::env::args().any(|a| a == "--bench")
}

struct Fixture {
    root: PathBuf,
    volume: SyntheticVolume,
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();

fn fixture() -> &'static Fixture {
    FIXTURE.get().expect("main builds the fixture")
}

fn paths_request(multipath: bool) -> Request<Body> {
    Request::post(format!("/v1/iscsi/paths?multipath={multipath}"))
        .header("content-type", "application/json")
        .body(Body::from(fixture().volume.props.to_string()))
        .expect("a valid request")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

fn app() -> axum::Router {
    router(AppState::from_config(&AgentConfig::new(&fixture().root)).expect("valid root"))
}

async fn one(app: &axum::Router, multipath: bool) {
    let resp = app
        .clone()
        .oneshot(paths_request(multipath))
        .await
        .expect("infallible");
    assert_eq!(resp.status(), StatusCode::OK);
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .expect("a body")
        .to_bytes();
    assert!(body.len() > 100);
}

/// One paths query through the router, no socket.
#[divan::bench(args = [false, true], sample_count = 50, sample_size = 20)]
fn paths_oneshot(bencher: Bencher, multipath: bool) {
    let rt = runtime();
    let app = app();
    bencher
        .counter(ItemsCount::new(1usize))
        .bench_local(|| rt.block_on(one(&app, multipath)));
}

/// The whole search path (8,192 entries) through the router.
#[divan::bench(sample_count = 20, sample_size = 2)]
fn volumes_oneshot(bencher: Bencher) {
    let rt = runtime();
    let app = app();
    bencher.counter(ItemsCount::new(1usize)).bench_local(|| {
        rt.block_on(async {
            let resp = app
                .clone()
                .oneshot(
                    Request::get("/v1/iscsi/volumes")
                        .body(Body::empty())
                        .expect("a valid request"),
                )
                .await
                .expect("infallible");
            assert_eq!(resp.status(), StatusCode::OK);
        })
    });
}

/// A served agent on 127.0.0.1:<free port>, in a background thread.
fn serve() -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    let root = fixture().root.clone();
    std::thread::spawn(move || {
        runtime().block_on(async move {
            let mut config = AgentConfig::new(root);
            config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
            let agent = Agent::bind(config).await.expect("binds");
            tx.send(agent.local_addr()).expect("main waits");
            agent.run(std::future::pending()).await.expect("serves");
        });
    });
    rx.recv().expect("the agent starts")
}

fn socket_client() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// One paths query over a kept-alive loopback connection.
#[divan::bench(sample_count = 50, sample_size = 20)]
fn paths_socket(bencher: Bencher) {
    let addr = serve();
    let client = socket_client();
    let url = format!("http://{addr}/v1/iscsi/paths?multipath=true");
    let body = fixture().volume.props.clone();
    bencher.counter(ItemsCount::new(1usize)).bench_local(|| {
        let mut resp = client.post(&url).send_json(&body).expect("answers");
        resp.body_mut().read_to_string().expect("a body")
    });
}

/// A plain requests-per-second figure: `n` requests from `clients` threads.
fn rps_over_socket(addr: SocketAddr, clients: usize, n: usize) -> f64 {
    let url = format!("http://{addr}/v1/iscsi/paths?multipath=true");
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..clients {
            let url = url.clone();
            s.spawn(move || {
                let client = socket_client();
                let body = fixture().volume.props.clone();
                for _ in 0..n / clients {
                    let mut resp = client.post(&url).send_json(&body).expect("answers");
                    assert_eq!(resp.status(), 200);
                    resp.body_mut().read_to_string().expect("a body");
                }
            });
        }
    });
    (n / clients * clients) as f64 / start.elapsed().as_secs_f64()
}

fn rps_oneshot(n: usize) -> f64 {
    let rt = runtime();
    let app = app();
    let start = Instant::now();
    rt.block_on(async {
        for _ in 0..n {
            one(&app, true).await;
        }
    });
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let dir = tempfile::Builder::new()
        .prefix("brick-bench-agent-")
        .tempdir()
        .expect("a temporary directory");
    let start = Instant::now();
    let (sessions, luns) = if bench_mode() {
        (SESSIONS, LUNS)
    } else {
        (2, 4)
    };
    let vols = write_iscsi_host(dir.path(), sessions, luns).expect("the synthetic host");
    let volume = vols
        .get(vols.len() / 2)
        .cloned()
        .expect("at least one volume");
    println!(
        "synthetic host: {} by-path links ({sessions} sessions x {luns} LUNs), built in {:.1?}",
        vols.len(),
        start.elapsed()
    );
    drop(vols);
    let fixture = Fixture {
        root: dir.path().to_path_buf(),
        volume,
    };
    if FIXTURE.set(fixture).is_err() {
        unreachable!("set once");
    }
    if !bench_mode() {
        divan::main();
        return;
    }
    println!(
        "agent: POST /v1/iscsi/paths?multipath=true on 8,192 paths: {:.0} requests/s (router, sequential)",
        rps_oneshot(2_000)
    );
    let addr = serve();
    for clients in [1, 4] {
        println!(
            "agent: POST /v1/iscsi/paths?multipath=true on 8,192 paths: {:.0} requests/s (loopback socket, {clients} client(s))",
            rps_over_socket(addr, clients, 2_000)
        );
    }
    divan::main();
    drop(dir);
}
