//! `fabricctl pki init`: a cluster's certificates without starting the
//! cluster, for launchers other than `fabricctl up` (docker-compose's
//! one-shot init service).
//!
//! It writes the cluster CA, the controller's, the admin's and each host
//! agent's certificate into `--dir` (keys 0600), and optionally an operator
//! context: a directory holding `context.json` and copies of only what an
//! operator needs (the CA certificate, the admin certificate and key), so
//! `fabricctl --state-dir DIR status` works from the machine running Docker
//! while host keys stay in the cluster's own volume; and optionally
//! least-privilege bundles (`--bundles`), one per daemon, so each container
//! mounts only the CA certificate and its own key. Running it again
//! reuses the CA and the certificates already issued.

use crate::cli::PkiInitArgs;
use crate::context::Context;
use anyhow::Context as _;
use fabric_pki::PkiLayout;
use fabric_pki::layout::{CertPaths, read_pair, write_pair};
use std::path::Path;

pub fn run(args: &PkiInitArgs) -> anyhow::Result<()> {
    fabric_pki::identity::validate_label("cluster name", &args.cluster)?;
    for host in &args.hosts {
        fabric_pki::identity::validate_label("host name", host)?;
    }
    let layout = PkiLayout::new(&args.dir);
    let now = time::OffsetDateTime::now_utc();
    let ca = layout
        .init(&args.cluster, &args.controller_names, now)
        .with_context(|| format!("cannot set up the cluster PKI in {}", args.dir.display()))?;
    for host in &args.hosts {
        layout
            .ensure_host(&ca, host, &[], now)
            .with_context(|| format!("cannot issue the certificate of {host}"))?;
    }
    println!(
        "cluster {:?}: CA, controller, admin and {} host certificates in {}",
        args.cluster,
        args.hosts.len(),
        args.dir.display()
    );
    if let Some(dir) = &args.bundles {
        write_bundles(&layout, dir, &args.hosts)?;
        println!(
            "least-privilege bundles in {}: controller/ and one per host (CA certificate and one key each)",
            dir.display()
        );
    }
    if let Some(dir) = &args.context_dir {
        let Some(endpoint) = &args.endpoint else {
            anyhow::bail!("--context-dir needs --endpoint (the controller URL the operator uses)");
        };
        write_operator_context(&layout, dir, args, endpoint)?;
        println!(
            "operator context in {}: use `fabricctl --state-dir {} status`",
            dir.display(),
            dir.display()
        );
    }
    Ok(())
}

/// One directory per identity under `dir`, each holding the CA certificate
/// and that identity's own pair only: what one daemon may read.
fn write_bundles(layout: &PkiLayout, dir: &Path, hosts: &[String]) -> anyhow::Result<()> {
    let bundle = |name: &str, pick: &dyn Fn(&PkiLayout) -> CertPaths| -> anyhow::Result<()> {
        let own = PkiLayout::new(dir.join(name));
        std::fs::create_dir_all(&own.dir)
            .with_context(|| format!("cannot create {}", own.dir.display()))?;
        std::fs::copy(layout.ca_cert(), own.ca_cert())
            .with_context(|| format!("cannot write {}", own.ca_cert().display()))?;
        let to = pick(&own);
        if let Some(parent) = to.cert.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        write_pair(&to, &read_pair(&pick(layout))?)?;
        Ok(())
    };
    bundle("controller", &|l| l.controller())?;
    for host in hosts {
        bundle(host, &|l| l.host(host))?;
    }
    Ok(())
}

/// Copies the operator's files into `dir/pki/` and writes `dir/context.json`
/// with paths relative to `dir`.
fn write_operator_context(
    layout: &PkiLayout,
    dir: &Path,
    args: &PkiInitArgs,
    endpoint: &str,
) -> anyhow::Result<()> {
    // Relative to `dir`: the context is read wherever `dir` is mounted.
    let operator = PkiLayout::new("pki");
    let (ca, admin) = (operator.ca_cert(), operator.admin());
    let at = |p: &Path| dir.join(p);
    std::fs::create_dir_all(at(&operator.dir))
        .with_context(|| format!("cannot create {}", at(&operator.dir).display()))?;
    std::fs::copy(layout.ca_cert(), at(&ca))
        .with_context(|| format!("cannot write {}", at(&ca).display()))?;
    write_pair(
        &CertPaths {
            cert: at(&admin.cert),
            key: at(&admin.key),
        },
        &read_pair(&layout.admin())?,
    )?;
    let context = Context {
        cluster: args.cluster.clone(),
        endpoint: crate::target::normalize_endpoint(endpoint),
        server_name: args.server_name.clone(),
        ca,
        cert: admin.cert,
        key: admin.key,
        launcher_pid: None,
        stopped_at: None,
        restart_delay_ms: None,
        managed_by: Some(args.managed_by.clone()),
        dashboard: args.dashboard.clone(),
        processes: vec![],
    };
    context
        .save(dir)
        .with_context(|| format!("cannot write {}", Context::path(dir).display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::os::unix::fs::PermissionsExt;

    fn parse(args: &[&str]) -> PkiInitArgs {
        let mut argv = vec!["fabricctl", "pki", "init"];
        argv.extend_from_slice(args);
        match crate::cli::Cli::try_parse_from(argv).unwrap().command {
            crate::cli::Command::Pki(crate::cli::PkiCommand::Init(a)) => a,
            other => panic!("not pki init: {other:?}"),
        }
    }

    #[test]
    fn writes_the_cluster_pki_and_an_operator_context_that_resolves_from_anywhere() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = tmp.path().join("pki");
        let ctx = tmp.path().join("operator");
        let args = parse(&[
            "--dir",
            pki.to_str().unwrap(),
            "--cluster",
            "a",
            "--controller-name",
            "fc-a",
            "--hosts",
            "host-a1,host-a2",
            "--context-dir",
            ctx.to_str().unwrap(),
            "--endpoint",
            "127.0.0.1:7401",
        ]);
        run(&args).unwrap();
        assert!(pki.join("hosts/host-a2.key").exists());
        // Host keys never reach the operator's directory.
        assert!(!ctx.join("pki/hosts").exists());
        let key_mode = std::fs::metadata(ctx.join("pki/admin.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(key_mode & 0o777, 0o600);
        let raw = std::fs::read_to_string(ctx.join("context.json")).unwrap();
        assert!(raw.contains("\"pki/admin.pem\""), "{raw}");
        let loaded = Context::load(&ctx).unwrap().unwrap();
        assert_eq!(loaded.endpoint, "https://127.0.0.1:7401");
        assert_eq!(loaded.managed_by.as_deref(), Some("docker-compose"));
        assert_eq!(loaded.cert, ctx.join("pki/admin.pem"));
        // The copied admin identity is the cluster's.
        let files = fabric_pki::tls::TlsFiles {
            ca: loaded.ca,
            cert: loaded.cert,
            key: loaded.key,
        };
        let tls = files.load().unwrap();
        assert_eq!(tls.identity.cluster, "a");
        // A second run keeps the CA.
        let ca_before = std::fs::read(pki.join("ca.pem")).unwrap();
        run(&args).unwrap();
        assert_eq!(std::fs::read(pki.join("ca.pem")).unwrap(), ca_before);
    }

    #[test]
    fn bad_names_and_a_context_without_endpoint_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().to_str().unwrap();
        let err = run(&parse(&[
            "--dir",
            d,
            "--cluster",
            "a",
            "--hosts",
            "bad name",
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("host name"), "{err}");
        let c = tmp.path().join("ctx");
        let err = run(&parse(&[
            "--dir",
            d,
            "--cluster",
            "a",
            "--context-dir",
            c.to_str().unwrap(),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("--endpoint"), "{err}");
    }
}
