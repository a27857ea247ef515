//! Driving the docker-compose stack from a test: the compose tool, the
//! containers of its services, and the faults a chaos tester injects with
//! Docker itself (SIGKILL, pause, network disconnect, a process killed inside
//! a container).
//!
//! Every call runs the real `docker` / `docker compose` (or the standalone
//! `docker-compose`, whichever the machine has) and returns its error text
//! instead of panicking, so the chaos suite can count a failed step as a
//! violation and still clean up.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Whether a Docker engine answers; the error says why not.
pub fn docker_reachable() -> Result<(), String> {
    docker(&["info", "--format", "{{.ServerVersion}}"]).map(drop)
}

/// Whether image `tag` exists locally.
pub fn image_exists(tag: &str) -> bool {
    succeeds(Command::new("docker").args(["image", "inspect", tag]))
}

/// Whether `cmd` runs and exits 0 (its output discarded).
fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `docker <args>`; stdout on success, a one-line error otherwise.
pub fn docker(args: &[&str]) -> Result<String, String> {
    text_of(
        Command::new("docker").args(args),
        &format!("docker {}", args.join(" ")),
    )
}

/// Runs `cmd` (no stdin) to completion: its stdout on success, otherwise an
/// error naming `what` with the exit status and stderr.
pub fn text_of(cmd: &mut Command, what: &str) -> Result<String, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{what}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// One compose project of the repository's docker-compose.yml.
pub struct Compose {
    /// `["docker", "compose"]` or `["docker-compose"]`.
    tool: Vec<String>,
    /// The directory holding docker-compose.yml.
    dir: PathBuf,
    pub project: String,
    /// Environment for the compose file (FABRIC_COMPOSE_DIR).
    env: Vec<(String, String)>,
}

impl Compose {
    /// Finds a compose tool: the `docker compose` plugin, else `docker-compose`.
    pub fn new(dir: &Path, project: &str, env: Vec<(String, String)>) -> Result<Self, String> {
        let tool = if succeeds(Command::new("docker").args(["compose", "version"])) {
            vec!["docker".to_owned(), "compose".to_owned()]
        } else if succeeds(Command::new("docker-compose").arg("version")) {
            vec!["docker-compose".to_owned()]
        } else {
            return Err("neither `docker compose` nor `docker-compose` works here".into());
        };
        Ok(Self {
            tool,
            dir: dir.to_owned(),
            project: project.to_owned(),
            env,
        })
    }

    /// The tool as a person would type it.
    pub fn tool(&self) -> String {
        self.tool.join(" ")
    }

    /// Runs `<tool> -p <project> <args>` in the compose file's directory.
    pub fn run(&self, args: &[&str]) -> Result<String, String> {
        let mut cmd = Command::new(&self.tool[0]);
        cmd.args(&self.tool[1..])
            .args(["-p", &self.project])
            .args(args)
            .current_dir(&self.dir)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        text_of(&mut cmd, &format!("{} {}", self.tool(), args.join(" ")))
    }

    /// The container id of `service` (running or not).
    pub fn container(&self, service: &str) -> Result<String, String> {
        let id = self.run(&["ps", "-a", "-q", service])?.trim().to_owned();
        if id.is_empty() || id.contains('\n') {
            return Err(format!("service {service} has no single container: {id:?}"));
        }
        Ok(id)
    }

    /// The network `name` of this project as Docker names it.
    pub fn network(&self, name: &str) -> String {
        format!("{}_{name}", self.project)
    }

    pub fn kill(&self, service: &str) -> Result<(), String> {
        docker(&["kill", "--signal", "KILL", &self.container(service)?]).map(drop)
    }

    pub fn start(&self, service: &str) -> Result<(), String> {
        docker(&["start", &self.container(service)?]).map(drop)
    }

    pub fn pause(&self, service: &str) -> Result<(), String> {
        docker(&["pause", &self.container(service)?]).map(drop)
    }

    pub fn unpause(&self, service: &str) -> Result<(), String> {
        docker(&["unpause", &self.container(service)?]).map(drop)
    }

    /// Cuts `service` off `network` (all its traffic there, published ports
    /// included).
    pub fn disconnect(&self, service: &str, network: &str) -> Result<(), String> {
        let id = self.container(service)?;
        docker(&["network", "disconnect", &self.network(network), &id]).map(drop)
    }

    /// Reconnects `service` to `network` under its service name, so the
    /// others resolve it again.
    pub fn connect(&self, service: &str, network: &str) -> Result<(), String> {
        let id = self.container(service)?;
        docker(&[
            "network",
            "connect",
            "--alias",
            service,
            &self.network(network),
            &id,
        ])
        .map(drop)
    }

    /// The processes of `service`'s container: (pid on this machine, command line).
    pub fn processes(&self, service: &str) -> Result<Vec<(u32, String)>, String> {
        let text = docker(&["top", &self.container(service)?, "-eo", "pid,args"])?;
        Ok(parse_top(&text))
    }

    /// SIGKILLs, from this machine, the processes of `service` whose command
    /// line `matches`; returns their pids. The image has no shell or kill
    /// binary, and a container's processes are ordinary processes here.
    pub fn kill_processes(
        &self,
        service: &str,
        matches: impl Fn(&str) -> bool,
    ) -> Result<Vec<u32>, String> {
        let mut killed = Vec::new();
        for (pid, args) in self.processes(service)? {
            if matches(&args) {
                let raw = i32::try_from(pid).map_err(|_| format!("pid {pid} out of range"))?;
                nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(raw),
                    nix::sys::signal::Signal::SIGKILL,
                )
                .map_err(|e| format!("kill -9 {pid} ({args}): {e}"))?;
                killed.push(pid);
            }
        }
        Ok(killed)
    }
}

/// Parses `docker top ID -eo pid,args` (a header line, then "PID ARGS").
pub fn parse_top(text: &str) -> Vec<(u32, String)> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let line = line.trim_start();
            let (pid, args) = line.split_once(char::is_whitespace)?;
            Some((pid.parse().ok()?, args.trim().to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_top_output_is_parsed_into_pids_and_command_lines() {
        let text = "PID                 COMMAND\n\
                    21793               fabricctl supervise --name host-agent\n\
                    21794               /usr/local/bin/host-agent --max-backoff 1s\n";
        assert_eq!(
            parse_top(text),
            vec![
                (21793, "fabricctl supervise --name host-agent".to_owned()),
                (
                    21794,
                    "/usr/local/bin/host-agent --max-backoff 1s".to_owned()
                ),
            ]
        );
        assert!(parse_top("PID COMMAND\n").is_empty());
    }
}
