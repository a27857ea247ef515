//! Service definition files: what `fabricctl deploy FILE` sends.
//!
//! A definition is TOML (only TOML: the YAML crates are unmaintained), names
//! the service, its roles and each role's certificates by file. Paths are
//! relative to the definition file, so a definition and its certificates
//! move together. This module only reads: the files must exist, be small
//! and be text, and the TOML must have exactly the known keys. Whether a
//! name is valid, a PEM parses, a key matches its certificate or the cluster
//! has room is the controller's call (see docs/service-definition.md).
//!
//! ```toml
//! name = "web"
//! [[roles]]
//! name = "frontend"
//! instances = 2
//! [[roles.certificates]]
//! name = "https"
//! cert = "certs/web.pem"
//! key = "certs/web.key"
//! ```

use crate::error::CtlError;
use fabric_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// Largest file fabricctl reads for a definition: the definition itself and
/// every certificate and key (the controller refuses larger PEMs too).
pub const MAX_FILE_BYTES: u64 = 64 * 1024;

/// The file's schema; also serialized by tools that write definitions
/// (the scenarios).
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceFile {
    pub name: String,
    /// Healing priority (0 to 1000, higher healed first); 0 if absent.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub priority: u32,
    pub roles: Vec<RoleFile>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RoleFile {
    pub name: String,
    pub instances: u32,
    /// Optional here so the controller's message ("has no certificate for
    /// its HTTPS endpoint") is the one the operator sees.
    #[serde(default)]
    pub certificates: Vec<CertificateFile>,
    /// "fabric" (the default) or "waagent": which guest agent its VMs run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest: Option<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateFile {
    pub name: String,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Reads the definition at `path` and the PEM files it names.
pub fn load(path: &Path) -> Result<pb::ServiceDefinition, CtlError> {
    let text = read_text(path).map_err(|detail| CtlError::DefinitionUnreadable {
        path: path.to_owned(),
        detail,
    })?;
    let base = path.parent().unwrap_or(Path::new(""));
    parse(&text, base).map_err(|detail| CtlError::BadDefinition {
        path: path.to_owned(),
        detail,
    })
}

/// Parses definition `text`, reading PEM files relative to `base`. The
/// error is the detail after the file name.
pub fn parse(text: &str, base: &Path) -> Result<pb::ServiceDefinition, String> {
    let file: ServiceFile = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
    let mut roles = Vec::with_capacity(file.roles.len());
    for role in file.roles {
        let mut certificates = Vec::with_capacity(role.certificates.len());
        for c in role.certificates {
            let read = |p: &Path| {
                read_text(&base.join(p)).map_err(|detail| {
                    format!(
                        "role {}: certificate {}: cannot read {}: {detail}",
                        role.name,
                        c.name,
                        p.display()
                    )
                })
            };
            certificates.push(pb::RoleCertificate {
                cert_pem: read(&c.cert)?,
                key_pem: read(&c.key)?,
                name: c.name,
            });
        }
        roles.push(pb::RoleDefinition {
            name: role.name,
            instances: role.instances,
            certificates,
            guest: role.guest.unwrap_or_default(),
        });
    }
    Ok(pb::ServiceDefinition {
        name: file.name,
        roles,
        priority: file.priority,
    })
}

/// "line L, column C: message" from a TOML error (its own Display is a
/// multi-line snippet).
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
    match e.span() {
        Some(span) => {
            let (line, column) = line_column(text, span.start);
            format!("invalid TOML at line {line}, column {column}: {message}")
        }
        None => format!("invalid TOML: {message}"),
    }
}

/// 1-based line and column (in characters) of byte offset `at`.
fn line_column(text: &str, at: usize) -> (usize, usize) {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
}

/// Reads a small text file; the error is the reason alone (the caller names
/// the file).
fn read_text(path: &Path) -> Result<String, String> {
    let file = std::fs::File::open(path).map_err(|e| io_reason(&e))?;
    let meta = file.metadata().map_err(|e| io_reason(&e))?;
    if meta.is_dir() {
        return Err("is a directory".into());
    }
    let mut bytes = Vec::new();
    // One byte past the limit tells "too large" without reading it all.
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io_reason(&e))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "larger than {} KiB ({} bytes)",
            MAX_FILE_BYTES / 1024,
            meta.len().max(bytes.len() as u64)
        ));
    }
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text".into())
}

/// "No such file or directory", without std's " (os error 2)".
fn io_reason(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        /// Fuzzing the definition parser (issue 13): any text is parsed or
        /// refused with a message, never a panic.
        #[test]
        fn any_text_is_parsed_or_refused(text in ".{0,400}", toml_like in "(\\[[a-z.]{0,12}\\]\n|[a-z_]{1,10} = (\"[^\"]{0,20}\"|[0-9]{1,12}|\\[\\])\n){0,12}") {
            for t in [&text, &toml_like] {
                if let Err(e) = parse(t, std::path::Path::new("/nonexistent")) {
                    prop_assert!(!e.is_empty());
                }
            }
        }
    }

    use super::*;

    const GOOD: &str = r#"
name = "web"

[[roles]]
name = "frontend"
instances = 2
[[roles.certificates]]
name = "https"
cert = "certs/web.pem"   # relative to this file
key = "certs/web.key"

[[roles]]
name = "api"
instances = 1
[[roles.certificates]]
name = "https"
cert = "certs/web.pem"
key = "certs/web.key"
"#;

    /// A definition directory: `sub/service.toml` and `sub/certs/web.*`.
    fn fixture(definition: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("sub");
        std::fs::create_dir_all(sub.join("certs")).unwrap();
        std::fs::write(sub.join("certs/web.pem"), "CERT PEM\n").unwrap();
        std::fs::write(sub.join("certs/web.key"), "KEY PEM\n").unwrap();
        let path = sub.join("service.toml");
        std::fs::write(&path, definition).unwrap();
        (dir, path)
    }

    #[test]
    fn good_file_with_relative_paths() {
        let (_dir, path) = fixture(GOOD);
        let def = load(&path).unwrap();
        assert_eq!(def.name, "web");
        let roles: Vec<_> = def
            .roles
            .iter()
            .map(|r| (r.name.as_str(), r.instances, r.certificates.len()))
            .collect();
        assert_eq!(roles, [("frontend", 2, 1), ("api", 1, 1)]);
        let c = &def.roles[0].certificates[0];
        assert_eq!(
            (c.name.as_str(), c.cert_pem.as_str(), c.key_pem.as_str()),
            ("https", "CERT PEM\n", "KEY PEM\n")
        );
    }

    #[test]
    fn missing_definition_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.toml");
        let e = load(&path).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "cannot read service definition {}: No such file or directory",
                path.display()
            )
        );
    }

    #[test]
    fn missing_certificate_names_role_certificate_and_path() {
        let (_dir, path) = fixture(&GOOD.replace("certs/web.pem\"   #", "certs/gone.pem\"   #"));
        let e = load(&path).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "service definition {}: role frontend: certificate https: cannot read certs/gone.pem: No such file or directory",
                path.display()
            )
        );
        let (_dir, path) = fixture(&GOOD.replace("certs/web.key", "certs/gone.key"));
        let e = load(&path).unwrap_err().to_string();
        assert!(e.ends_with("cannot read certs/gone.key: No such file or directory"));
    }

    #[test]
    fn unknown_key_is_refused() {
        let (_dir, path) =
            fixture(&GOOD.replace("instances = 1", "instances = 1\ncolour = \"red\""));
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("unknown field `colour`"), "{e}");
        assert!(
            e.contains("at line 15, column 1: unknown field `colour`"),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn bad_toml_reports_its_line() {
        let (_dir, path) = fixture("name = \"web\"\n\n[[roles]\nname = \"x\"\n");
        let e = load(&path).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "service definition {}: invalid TOML at line 3, column ",
                path.display()
            )),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
        let (_dir, path) = fixture("name = \"web\"\n");
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("missing field `roles`"), "{e}");
    }

    #[test]
    fn wrong_types_are_refused() {
        let (_dir, path) = fixture(&GOOD.replace("instances = 2", "instances = -2"));
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("invalid TOML at line 6"), "{e}");
    }

    #[test]
    fn large_files_are_refused() {
        let (dir, path) = fixture(GOOD);
        let big = "A".repeat(MAX_FILE_BYTES as usize + 1);
        std::fs::write(dir.path().join("sub/certs/web.key"), &big).unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(
            e.ends_with("role frontend: certificate https: cannot read certs/web.key: larger than 64 KiB (65537 bytes)"),
            "{e}"
        );
        std::fs::write(&path, format!("# {big}\n")).unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.starts_with("cannot read service definition "), "{e}");
        assert!(e.ends_with(": larger than 64 KiB (65540 bytes)"), "{e}");
    }

    #[test]
    fn definition_in_current_directory() {
        // A bare file name has an empty parent: paths stay relative to ".".
        let def = parse("name = \"w\"\nroles = []\n", Path::new("")).unwrap();
        assert_eq!(def.name, "w");
        assert!(def.roles.is_empty());
    }

    #[test]
    fn line_and_column() {
        assert_eq!(line_column("ab\ncd", 0), (1, 1));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
        assert_eq!(line_column("é\nx", 3), (2, 1));
    }
}
