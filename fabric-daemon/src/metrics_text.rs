//! /metrics in the format the scraper asked for.
//!
//! The metrics are rendered as OpenMetrics text (prometheus-client's only
//! encoder). Prometheus asks for OpenMetrics in its Accept header and gets
//! it; a client that does not (curl, `promtool check metrics`, older
//! scrapers) reads the classic text format (version 0.0.4), where a
//! counter's HELP and TYPE lines name its `_total` sample, there are no UNIT
//! lines, `_created` samples or `# EOF`, and an info metric is a gauge.
//! Serving OpenMetrics to such a client makes its linter report every
//! counter.

/// The content type of OpenMetrics text.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of the classic text format.
pub const CLASSIC: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Picks the format for a request's Accept header: OpenMetrics only when
/// asked for. Returns the content type and the body.
pub fn negotiate(accept: Option<&str>, openmetrics: String) -> (&'static str, String) {
    let wants_openmetrics = accept.is_some_and(|a| {
        a.to_ascii_lowercase()
            .contains("application/openmetrics-text")
    });
    if wants_openmetrics {
        (OPENMETRICS, openmetrics)
    } else {
        (CLASSIC, to_classic(&openmetrics))
    }
}

/// Rewrites OpenMetrics text as the classic text format.
pub fn to_classic(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    // The family being written and its OpenMetrics type.
    let mut family = String::new();
    let mut kind = "";
    let mut help: Option<String> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            // Held until TYPE says which name the family takes.
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            family = name.to_owned();
            help = Some(text.to_owned());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, t) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            family = name.to_owned();
            kind = match t {
                "counter" => "counter",
                "gauge" => "gauge",
                "histogram" => "histogram",
                "summary" => "summary",
                "info" => "info",
                _ => "untyped",
            };
            let (classic_name, classic_type) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "info" => (format!("{name}_info"), "gauge"),
                other => (name.to_owned(), other),
            };
            if let Some(text) = help.take() {
                out.push_str(&format!("# HELP {classic_name} {text}\n"));
            }
            out.push_str(&format!("# TYPE {classic_name} {classic_type}\n"));
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let sample = line.split(['{', ' ']).next().unwrap_or("");
        if sample == format!("{family}_created") && matches!(kind, "counter" | "histogram") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const OM: &str = "# HELP fabric_heartbeats Heartbeats received.\n\
                      # TYPE fabric_heartbeats counter\n\
                      fabric_heartbeats_total 3\n\
                      fabric_heartbeats_created 1.5\n\
                      # HELP fabric_vms VMs by state.\n\
                      # TYPE fabric_vms gauge\n\
                      # UNIT fabric_vms vms\n\
                      fabric_vms{state=\"Running\"} 2\n\
                      # HELP fabric_build Build.\n\
                      # TYPE fabric_build info\n\
                      fabric_build_info{version=\"0.1.0\"} 1\n\
                      # EOF\n";

    #[test]
    fn classic_text_names_counters_by_their_total_and_drops_openmetrics_only_lines() {
        assert_eq!(
            to_classic(OM),
            "# HELP fabric_heartbeats_total Heartbeats received.\n\
             # TYPE fabric_heartbeats_total counter\n\
             fabric_heartbeats_total 3\n\
             # HELP fabric_vms VMs by state.\n\
             # TYPE fabric_vms gauge\n\
             fabric_vms{state=\"Running\"} 2\n\
             # HELP fabric_build_info Build.\n\
             # TYPE fabric_build_info gauge\n\
             fabric_build_info{version=\"0.1.0\"} 1\n"
        );
    }

    #[test]
    fn openmetrics_only_when_asked_for() {
        let prometheus =
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
        assert_eq!(negotiate(Some(prometheus), OM.into()).0, OPENMETRICS);
        assert_eq!(negotiate(Some("*/*"), OM.into()).0, CLASSIC);
        assert_eq!(negotiate(None, OM.into()).0, CLASSIC);
    }
}
