//! The bindings file: which public address forwards to which VM's private
//! one. Two interface versions exist, with different field names, as two
//! releases of a real plugin interface would differ:
//!
//! ```json
//! {"api": 1, "bindings": [{"vm": "web.front.0", "public": "127.0.0.1:9001", "private": "127.0.0.1:41234"}]}
//! {"api": 2, "routes":   [{"name": "web.front.0", "listen": "127.0.0.1:9001", "target": "127.0.0.1:41234"}]}
//! ```
//!
//! Both sides are written here, so the host agent and the plugin cannot
//! disagree on a format except by version.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// The interface versions this code knows.
pub const APIS: [u32; 2] = [1, 2];

/// One forwarding rule.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Binding {
    pub vm: String,
    pub public: SocketAddr,
    pub private: SocketAddr,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct V1 {
    api: u32,
    bindings: Vec<V1Binding>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct V1Binding {
    vm: String,
    public: SocketAddr,
    private: SocketAddr,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct V2 {
    api: u32,
    routes: Vec<V2Route>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct V2Route {
    name: String,
    listen: SocketAddr,
    target: SocketAddr,
}

#[derive(Deserialize)]
struct Header {
    api: u32,
}

/// The file's text for `bindings` in interface version `api`.
pub fn encode(api: u32, bindings: &[Binding]) -> anyhow::Result<String> {
    Ok(match api {
        1 => serde_json::to_string_pretty(&V1 {
            api,
            bindings: bindings
                .iter()
                .map(|b| V1Binding {
                    vm: b.vm.clone(),
                    public: b.public,
                    private: b.private,
                })
                .collect(),
        })?,
        2 => serde_json::to_string_pretty(&V2 {
            api,
            routes: bindings
                .iter()
                .map(|b| V2Route {
                    name: b.vm.clone(),
                    listen: b.public,
                    target: b.private,
                })
                .collect(),
        })?,
        other => anyhow::bail!("unknown bindings interface version {other} (known: {APIS:?})"),
    })
}

/// Reads a bindings file as a plugin speaking interface version `api`.
pub fn decode(api: u32, text: &str) -> anyhow::Result<Vec<Binding>> {
    let header: Header = serde_json::from_str(text)
        .map_err(|e| anyhow::anyhow!("bindings file is not a bindings document: {e}"))?;
    if header.api != api {
        anyhow::bail!(
            "the host agent writes bindings interface version {}, this plugin speaks {api}: \
             incompatible, nothing is bound",
            header.api
        );
    }
    let mut out: Vec<Binding> = match api {
        1 => serde_json::from_str::<V1>(text)?
            .bindings
            .into_iter()
            .map(|b| Binding {
                vm: b.vm,
                public: b.public,
                private: b.private,
            })
            .collect(),
        2 => serde_json::from_str::<V2>(text)?
            .routes
            .into_iter()
            .map(|r| Binding {
                vm: r.name,
                public: r.listen,
                private: r.target,
            })
            .collect(),
        other => anyhow::bail!("this plugin was started with unknown interface version {other}"),
    };
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one() -> Vec<Binding> {
        vec![Binding {
            vm: "web.front.0".into(),
            public: "127.0.0.1:9001".parse().unwrap(),
            private: "127.0.0.1:41234".parse().unwrap(),
        }]
    }

    #[test]
    fn each_version_reads_its_own() {
        for api in APIS {
            let text = encode(api, &one()).unwrap();
            assert_eq!(decode(api, &text).unwrap(), one());
        }
    }

    #[test]
    fn a_mismatch_binds_nothing_and_says_both_versions() {
        let text = encode(1, &one()).unwrap();
        let err = decode(2, &text).unwrap_err().to_string();
        assert!(
            err.contains("version 1") && err.contains("speaks 2"),
            "{err}"
        );
        let err = decode(1, "{\"api\": 1, \"surprise\": []}").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }
}
