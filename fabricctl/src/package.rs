//! `fabricctl package add DIR` and `fabricctl package list`.
//!
//! A package directory holds `package.toml` and the three files it names:
//!
//! ```toml
//! version = "p2"
//!
//! [host_agent]
//! version = "2.0"
//! file = "host-agent"
//! flags = []                 # added to the host agent's arguments
//!
//! [guest_agent]
//! version = "2.0"
//! file = "guest-agent"
//! flags = []                 # added to every guest agent's arguments
//!
//! [plugin]
//! version = "net-2"
//! file = "netplug"
//! compatible_host_agents = ["2.*"]
//! ```
//!
//! fabricctl computes each file's size and SHA-256, sends the manifest, and
//! then the bytes; the controller refuses a package whose plugin does not
//! declare its host agent before a byte is sent (unless `--force`), and
//! checks every byte against the manifest.

use crate::cli::{GlobalArgs, PackageAddArgs, PackageCommand};
use crate::output;
use crate::target::Target;
use fabric_proto::v1::operator_service_client::OperatorServiceClient;
use fabric_proto::v1::{self as pb, package_upload::Part};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Bytes per upload message.
const CHUNK: usize = 1024 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PackageFile {
    version: String,
    host_agent: ProgramFile,
    guest_agent: ProgramFile,
    plugin: PluginFile,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProgramFile {
    version: String,
    file: String,
    #[serde(default)]
    flags: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PluginFile {
    version: String,
    file: String,
    #[serde(default)]
    flags: Vec<String>,
    compatible_host_agents: Vec<String>,
}

/// A package directory read and measured: its manifest and its files in
/// upload order.
pub struct LocalPackage {
    pub manifest: pb::PackageManifest,
    pub files: Vec<PathBuf>,
}

fn artifact(dir: &Path, p: &ProgramFile) -> anyhow::Result<(pb::Artifact, PathBuf)> {
    let path = dir.join(&p.file);
    if Path::new(&p.file).file_name() != Some(std::ffi::OsStr::new(&p.file)) {
        anyhow::bail!(
            "{:?} in package.toml must be a file name in the package directory",
            p.file
        );
    }
    let bytes = std::fs::read(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let sha256 = hex::encode(ring::digest::digest(&ring::digest::SHA256, &bytes).as_ref());
    Ok((
        pb::Artifact {
            version: p.version.clone(),
            file: p.file.clone(),
            size: bytes.len() as u64,
            sha256,
            flags: p.flags.clone(),
        },
        path,
    ))
}

/// Reads `DIR/package.toml` and hashes the files it names.
pub fn read(dir: &Path) -> anyhow::Result<LocalPackage> {
    let toml_path = dir.join("package.toml");
    let text = std::fs::read_to_string(&toml_path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", toml_path.display()))?;
    let p: PackageFile =
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", toml_path.display()))?;
    let (ha, ha_path) = artifact(dir, &p.host_agent)?;
    let (ga, ga_path) = artifact(dir, &p.guest_agent)?;
    let (plugin, plugin_path) = artifact(
        dir,
        &ProgramFile {
            version: p.plugin.version.clone(),
            file: p.plugin.file.clone(),
            flags: p.plugin.flags.clone(),
        },
    )?;
    Ok(LocalPackage {
        manifest: pb::PackageManifest {
            version: p.version,
            host_agent: Some(ha),
            guest_agent: Some(ga),
            plugin: Some(plugin),
            plugin_compatible_host_agents: p.plugin.compatible_host_agents,
            forced: false,
        },
        files: vec![ha_path, ga_path, plugin_path],
    })
}

/// A package of this build's own binaries (linked, not copied), as the
/// tests and the replays make them: two "versions" of one binary differ by
/// the flags their package gives them (docs/rollouts.md).
pub struct FromBuild<'a> {
    pub version: &'a str,
    pub host_agent: &'a str,
    pub guest_agent: &'a str,
    pub plugin: &'a str,
    /// Host agent versions the plugin declares.
    pub compatible: &'a [&'a str],
    pub host_agent_flags: &'a [&'a str],
    pub guest_agent_flags: &'a [&'a str],
    pub plugin_flags: &'a [&'a str],
}

/// A compatible new pair, as the tests, the bench and the replays roll it
/// out: host agent 2.0 and plugin net-2, both speaking bindings interface 2.
pub const NEW_PAIR: FromBuild<'static> = FromBuild {
    version: "ha2-net2",
    host_agent: "2.0",
    guest_agent: "2.0",
    plugin: "net-2",
    compatible: &["2.*"],
    host_agent_flags: &["--netplug-api", "2"],
    guest_agent_flags: &[],
    plugin_flags: &["--api", "2"],
};

/// The 2012 repair: the older host agent 1.0 (bindings interface 1) shipped
/// with plugin net-2 (interface 2), which declares only 2.x host agents.
pub const REPAIR_2012: FromBuild<'static> = FromBuild {
    version: "repair-ha1-net2",
    host_agent: "1.0",
    guest_agent: "1.0",
    plugin: "net-2",
    compatible: &["2.*"],
    host_agent_flags: &[],
    guest_agent_flags: &[],
    plugin_flags: &["--api", "2"],
};

impl FromBuild<'_> {
    /// Writes the package under `parent/<version>`, linking `host-agent`,
    /// `guest-agent` and `fabric-netplug` from `bin_dir`; returns its path.
    pub fn write(&self, parent: &Path, bin_dir: &Path) -> anyhow::Result<PathBuf> {
        let dir = parent.join(self.version);
        std::fs::create_dir_all(&dir)?;
        for (name, program) in [
            ("host-agent", crate::bins::HOST_AGENT),
            ("guest-agent", "guest-agent"),
            ("netplug", crate::bins::NETPLUG),
        ] {
            let target = crate::bins::find(bin_dir, program)?;
            let link = dir.join(name);
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(&target, &link)
                .map_err(|e| anyhow::anyhow!("{}: {e}", link.display()))?;
        }
        let list = |items: &[&str]| serde_json::to_string(items).unwrap_or_default();
        let toml = format!(
            "version = {:?}\n\n[host_agent]\nversion = {:?}\nfile = \"host-agent\"\nflags = {}\n\n\
             [guest_agent]\nversion = {:?}\nfile = \"guest-agent\"\nflags = {}\n\n\
             [plugin]\nversion = {:?}\nfile = \"netplug\"\nflags = {}\ncompatible_host_agents = {}\n",
            self.version,
            self.host_agent,
            list(self.host_agent_flags),
            self.guest_agent,
            list(self.guest_agent_flags),
            self.plugin,
            list(self.plugin_flags),
            list(self.compatible),
        );
        std::fs::write(dir.join("package.toml"), toml)?;
        Ok(dir)
    }
}

/// Uploads the package at `dir` (see [`read`]); returns the controller's
/// answer.
pub async fn upload(
    target: &Target,
    dir: &Path,
    force: bool,
) -> anyhow::Result<pb::AddPackageResponse> {
    let local = read(dir)?;
    let mut client = OperatorServiceClient::new(target.connect().await?);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let header = pb::PackageUpload {
        part: Some(Part::Header(pb::AddPackageHeader {
            manifest: Some(local.manifest.clone()),
            force,
        })),
    };
    let files = local.files.clone();
    let feeder = tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        if tx.send(header).await.is_err() {
            return Ok(());
        }
        for path in files {
            let mut f = tokio::fs::File::open(&path)
                .await
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            loop {
                let mut buf = vec![0u8; CHUNK];
                let n = f
                    .read(&mut buf)
                    .await
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                if n == 0 {
                    break;
                }
                buf.truncate(n);
                let chunk = pb::PackageUpload {
                    part: Some(Part::Chunk(pb::ArtifactChunk { data: buf })),
                };
                // The controller stopped listening: its answer says why.
                if tx.send(chunk).await.is_err() {
                    return Ok(());
                }
            }
        }
        anyhow::Ok(())
    });
    let reply = client
        .add_package(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(|s| target.operator_error("add the package", None, "AddPackage", &s));
    feeder.await??;
    let mut reply = reply?.into_inner();
    if !reply.added {
        reply.summary = format!(
            "package {} is already there, identical",
            local.manifest.version
        );
    }
    Ok(reply)
}

pub async fn run(global: &GlobalArgs, command: &PackageCommand) -> anyhow::Result<()> {
    match command {
        PackageCommand::Add(args) => add(global, args).await,
        PackageCommand::List => list(global).await,
    }
}

async fn add(global: &GlobalArgs, args: &PackageAddArgs) -> anyhow::Result<()> {
    let target = Target::controller(global)?;
    let reply = upload(&target, &args.dir, args.force).await?;
    output::line(&reply.summary);
    Ok(())
}

async fn list(global: &GlobalArgs) -> anyhow::Result<()> {
    let target = Target::controller(global)?;
    let mut client = OperatorServiceClient::new(target.connect().await?);
    let reply = client
        .list_packages(pb::ListPackagesRequest {})
        .await
        .map_err(|s| target.operator_error("list packages", None, "ListPackages", &s))?
        .into_inner();
    output::line(&table(&reply.packages));
    Ok(())
}

/// `package list`'s table.
pub fn table(packages: &[pb::PackageManifest]) -> String {
    let mut rows = vec![
        [
            "PACKAGE",
            "HOST AGENT",
            "GUEST AGENT",
            "PLUGIN",
            "PLUGIN WORKS WITH",
            "NOTE",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    let v = |a: &Option<pb::Artifact>| a.as_ref().map_or("-".into(), |a| a.version.clone());
    for p in packages {
        rows.push(vec![
            p.version.clone(),
            v(&p.host_agent),
            v(&p.guest_agent),
            v(&p.plugin),
            p.plugin_compatible_host_agents.join(","),
            if p.forced {
                "FORCED: plugin does not declare its host agent".into()
            } else {
                String::new()
            },
        ]);
    }
    if packages.is_empty() {
        return "no packages (fabricctl package add DIR)".into();
    }
    crate::status::render_rows(&rows).trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, toml: &str) {
        std::fs::write(dir.join("package.toml"), toml).unwrap();
        for f in ["ha", "ga", "np"] {
            std::fs::write(dir.join(f), f.repeat(3)).unwrap();
        }
    }

    const GOOD: &str = r#"
version = "p2"
[host_agent]
version = "2.0"
file = "ha"
flags = ["--leap-day-bug"]
[guest_agent]
version = "2.0"
file = "ga"
[plugin]
version = "net-2"
file = "np"
compatible_host_agents = ["2.*"]
"#;

    #[test]
    fn reads_and_measures_a_package() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), GOOD);
        let p = read(dir.path()).unwrap();
        let ha = p.manifest.host_agent.unwrap();
        assert_eq!(ha.size, 6);
        assert_eq!(
            ha.sha256,
            hex::encode(ring::digest::digest(&ring::digest::SHA256, b"hahaha").as_ref())
        );
        assert_eq!(ha.flags, vec!["--leap-day-bug"]);
        assert_eq!(p.files.len(), 3);
    }

    #[test]
    fn refuses_paths_and_unknown_keys_with_the_file_named() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &GOOD.replace("file = \"ha\"", "file = \"../ha\""),
        );
        let err = read(dir.path()).err().unwrap().to_string();
        assert!(err.contains("must be a file name"), "{err}");
        write(dir.path(), &format!("{GOOD}\nsurprise = 1\n"));
        let err = read(dir.path()).err().unwrap().to_string();
        assert!(
            err.contains("package.toml") && err.contains("surprise"),
            "{err}"
        );
        let err = read(&dir.path().join("missing")).err().unwrap().to_string();
        assert!(err.contains("package.toml"), "{err}");
    }
}
