//! Service definitions for tests and benches: the example service's files
//! and one-off definitions written into a temp dir.

use fabricctl::status::{InstanceJson, StatusJson};
use std::path::{Path, PathBuf};

/// `examples/web/` of this workspace (absolute).
pub fn example_web_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/web");
    dir.canonicalize()
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

/// A file of the example service, e.g. `certs/web.pem` (absolute).
pub fn example_file(relative: &str) -> PathBuf {
    example_web_dir().join(relative)
}

/// Writes `<dir>/<name>.toml`: deployment `name` whose roles (name,
/// instance count) all serve `cert`/`key` (absolute paths), and returns
/// its path.
pub fn write_definition(
    dir: &Path,
    name: &str,
    roles: &[(&str, u32)],
    cert: &Path,
    key: &Path,
) -> PathBuf {
    let mut text = format!("name = {}\n", toml_string(name));
    for (role, instances) in roles {
        text.push_str(&format!(
            "\n[[roles]]\nname = {}\ninstances = {instances}\n\n[[roles.certificates]]\n\
             name = \"https\"\ncert = {}\nkey = {}\n",
            toml_string(role),
            toml_string(&cert.display().to_string()),
            toml_string(&key.display().to_string()),
        ));
    }
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    path
}

/// A TOML basic string (JSON string escapes are valid TOML).
fn toml_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

/// The instances of deployment `name` in `status` (sorted by role, index);
/// empty if there is no such deployment.
pub fn instances<'a>(status: &'a StatusJson, name: &str) -> &'a [InstanceJson] {
    status
        .deployments
        .iter()
        .find(|d| d.name == name)
        .map_or(&[], |d| d.instances.as_slice())
}

/// Whether deployment `name` has exactly `count` instances, all Running
/// with an endpoint and a guest-agent pid.
pub fn all_running(status: &StatusJson, name: &str, count: usize) -> bool {
    let list = instances(status, name);
    list.len() == count
        && list
            .iter()
            .all(|i| i.state == "Running" && !i.endpoint.is_empty() && i.pid != 0)
}
