//! The dashboard's live stream (`/api/stream`, server-sent events) on a
//! real local cluster: the first summary arrives at once and agrees with
//! `fabricctl status`; when a server loses power, a summary showing it
//! Unresponsive arrives without being asked for. Read with an SSE parser
//! (eventsource-stream), not by splitting lines.

use eventsource_stream::Eventsource as _;
use fabric_tests::cluster::{LocalCluster, fast_web_flags};
use fabric_tests::services::all_running;
use futures_util::StreamExt as _;
use http_body_util::{BodyDataStream, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use std::time::{Duration, Instant};

const COME_UP: Duration = Duration::from_secs(60);

fn node_state<'a>(summary: &'a serde_json::Value, id: &str) -> Option<&'a str> {
    summary["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["id"] == id)?["state"]
        .as_str()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_pushes_a_summary_when_a_server_is_lost() {
    let flags = fast_web_flags("5s");
    let mut cluster = LocalCluster::start(&flags.iter().map(String::as_str).collect::<Vec<_>>());
    let status = cluster.wait_for(COME_UP, "web Running", |s| all_running(s, "web", 3));
    let addr = cluster
        .dashboard_url()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();

    let tcp = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("HTTP handshake");
    let driver = tokio::spawn(conn);
    let request = hyper::Request::get("/api/stream")
        .header("host", &addr)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = send.send_request(request).await.expect("GET /api/stream");
    assert!(response.status().is_success());
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let mut events = BodyDataStream::new(response.into_body()).eventsource();
    let mut next = async || {
        let event = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .expect("a summary at least every second")
            .expect("the stream stays open")
            .expect("a well-formed event");
        assert_eq!(event.event, "summary");
        serde_json::from_str::<serde_json::Value>(&event.data).expect("JSON")
    };

    let first = next().await;
    assert_eq!(first["cluster"], status.cluster.as_str());
    assert_eq!(first["nodes"].as_array().unwrap().len(), status.nodes.len());
    assert_eq!(first["instances"]["running"], 3);
    assert_eq!(node_state(&first, "host-2"), Some("Ready"));

    cluster.run_ok(&["chaos", "power-off", "host-2"]);
    let killed = Instant::now();
    loop {
        let summary = next().await;
        if node_state(&summary, "host-2") == Some("Unresponsive") {
            eprintln!(
                "host-2 Unresponsive on the stream {:.2}s after power-off (node_timeout 1s)",
                killed.elapsed().as_secs_f64()
            );
            break;
        }
        assert!(
            killed.elapsed() < COME_UP,
            "host-2 never shown Unresponsive"
        );
    }
    driver.abort();
}
