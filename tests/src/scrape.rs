//! Plain-HTTP GETs of the fabric's read-only endpoints (dashboard,
//! `/metrics`) and reading Prometheus text with a real parser.

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use prometheus_parse::{Scrape, Value};
use std::time::Duration;

/// Bound on one GET.
pub const GET_TIMEOUT: Duration = Duration::from_secs(5);

/// What a GET answered: the content type and the body.
pub struct Answer {
    pub content_type: String,
    pub body: String,
}

/// `GET path` from `addr` ("ip:port" or "http://ip:port/"), over HTTP/1.1;
/// a non-2xx status is an error.
pub fn get(addr: &str, path: &str) -> Result<Answer, String> {
    get_accepting(addr, path, None)
}

/// [`get`] with an Accept header.
pub fn get_accepting(addr: &str, path: &str, accept: Option<&str>) -> Result<Answer, String> {
    let addr = addr
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let rt = crate::https::runtime();
    rt.block_on(async {
        tokio::time::timeout(GET_TIMEOUT, get_async(&addr, path, accept))
            .await
            .unwrap_or_else(|_| Err(format!("{addr}{path}: no answer within {GET_TIMEOUT:?}")))
    })
}

async fn get_async(addr: &str, path: &str, accept: Option<&str>) -> Result<Answer, String> {
    let fail = |e: &dyn std::fmt::Display| format!("{addr}{path}: {e}");
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| fail(&e))?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| fail(&e))?;
    let driver = tokio::spawn(conn);
    let mut request = hyper::Request::get(path).header("host", addr);
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let request = request.body(Empty::<Bytes>::new()).map_err(|e| fail(&e))?;
    let response = send.send_request(request).await.map_err(|e| fail(&e))?;
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| fail(&e))?
        .to_bytes();
    driver.abort();
    if !status.is_success() {
        return Err(fail(&status));
    }
    Ok(Answer {
        content_type,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// What Prometheus sends when it scrapes.
pub const PROMETHEUS_ACCEPT: &str =
    "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// GETs `/metrics` from `addr` as Prometheus does and parses it.
pub fn metrics(addr: &str) -> Result<Scrape, String> {
    let answer = get_accepting(addr, "/metrics", Some(PROMETHEUS_ACCEPT))?;
    if !answer
        .content_type
        .starts_with("application/openmetrics-text")
    {
        return Err(format!(
            "{addr}/metrics answered {:?}, not OpenMetrics text",
            answer.content_type
        ));
    }
    Scrape::parse(answer.body.lines().map(|l| Ok(l.to_owned())))
        .map_err(|e| format!("{addr}/metrics: unparsable: {e}"))
}

/// The value of sample `name` whose labels include `labels`; a histogram
/// gives its total count.
pub fn value(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let sample = s
        .samples
        .iter()
        .find(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))?;
    match &sample.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(*v),
        Value::Histogram(buckets) => buckets.last().map(|b| b.count),
        Value::Summary(_) => None,
    }
}

/// Prometheus's own linter on `/metrics` as a client that asks for no
/// format in particular reads it (the classic text format): what
/// `promtool check metrics` says, empty when it finds nothing. `Err` when
/// promtool cannot be run.
pub fn promtool_check(addr: &str) -> Result<(bool, String), String> {
    use std::io::Write as _;
    let answer = get(addr, "/metrics")?;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run promtool (Debian package prometheus): {e}"))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(answer.body.as_bytes())
        .map_err(|e| format!("promtool stdin: {e}"))?;
    let out = child
        .wait_with_output()
        .map_err(|e| format!("promtool: {e}"))?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), said.trim().to_owned()))
}
