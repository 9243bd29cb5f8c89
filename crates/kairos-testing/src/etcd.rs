//! Real etcd processes for tests: [`EtcdProcess`] (one member) and [`EtcdCluster`] (N members),
//! each on free loopback ports with temporary data directories, killed when dropped.
//!
//! The tests of the etcd backend and of the cluster layer run a real Debian `etcd` (package
//! `etcd-server`, 3.4.23 on bookworm; `scripts/ensure-deps` installs it). When the binary is
//! missing, [`etcd_binary`] and every `start` fail with a message that says so: an etcd test
//! never passes by skipping.
//!
//! Every member listens on `127.0.0.1` only, on ports taken by binding port 0 (and retried when
//! another process grabs one before etcd binds it). Its output goes to `etcd.log` next to its
//! data directory; a failed start reports the log's tail. [`EtcdCluster::kill9`] sends `SIGKILL`
//! (no clean shutdown, like a crash), [`EtcdCluster::restart`] starts the member again on the same
//! ports and data directory, and [`EtcdCluster::pause`] / [`EtcdCluster::resume`] send
//! `SIGSTOP` / `SIGCONT` (a hung member). A test process that is itself killed leaves its etcd
//! processes running: nothing in std ties a child's life to its parent's.
//!
//! Debian's amd64 etcd needs no `ETCD_UNSUPPORTED_ARCH`; on other architectures the variable is
//! set so that the same harness runs there.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};
use tempfile::TempDir;

use crate::free_port;

/// How long a member may take to answer after it was started.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Why the harness could not give a running etcd.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// No `etcd` binary.
    #[error(
        "etcd binary not found (looked in $KAIROS_ETCD, $PATH and /usr/bin/etcd); run scripts/ensure-deps (installs Debian's etcd-server)"
    )]
    NoBinary,
    /// The process could not be started or stopped.
    #[error("etcd member {name}: {what}: {source}")]
    Io {
        name: String,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The member did not become healthy.
    #[error("etcd member {name} did not become healthy: {reason}\n--- tail of {log} ---\n{tail}")]
    Unhealthy { name: String, reason: String, log: String, tail: String },
    /// No such member.
    #[error("no etcd member {0}")]
    NoMember(usize),
}

/// The `etcd` binary: `$KAIROS_ETCD`, else the first `etcd` on `$PATH`, else `/usr/bin/etcd`.
///
/// # Errors
/// [`HarnessError::NoBinary`] when none exists.
pub fn etcd_binary() -> Result<PathBuf, HarnessError> {
    if let Some(path) = std::env::var_os("KAIROS_ETCD").map(PathBuf::from)
        && path.is_file()
    {
        return Ok(path);
    }
    which::which("etcd")
        .ok()
        .or_else(|| Some(PathBuf::from("/usr/bin/etcd")).filter(|p| p.is_file()))
        .ok_or(HarnessError::NoBinary)
}

/// One member's fixed identity: name, ports, data directory.
#[derive(Debug)]
struct MemberSpec {
    name: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
}

impl MemberSpec {
    fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }
}

#[derive(Debug)]
struct Member {
    spec: MemberSpec,
    child: Option<Child>,
}

/// A running etcd cluster of N members on loopback; see the [module docs](self).
#[derive(Debug)]
pub struct EtcdCluster {
    binary: PathBuf,
    token: String,
    /// More flags for every member (e.g. `--quota-backend-bytes`).
    extra_args: Vec<String>,
    members: Vec<Member>,
    // Last: removed after the processes are killed.
    _dir: TempDir,
}

static CLUSTERS: AtomicU64 = AtomicU64::new(0);

fn io_err(name: &str, what: &'static str) -> impl FnOnce(std::io::Error) -> HarnessError {
    let name = name.to_owned();
    move |source| HarnessError::Io { name, what, source }
}

impl EtcdCluster {
    /// Starts `n` members (at least 1) and waits until every one of them answers a
    /// linearizable read (which needs an elected leader).
    ///
    /// # Errors
    /// [`HarnessError`] when etcd is missing or does not become healthy within
    /// [`START_TIMEOUT`] (after a few tries on new ports).
    pub async fn start(n: usize) -> Result<EtcdCluster, HarnessError> {
        Self::start_with_args(n, &[]).await
    }

    /// [`EtcdCluster::start`], with `extra_args` given to every member.
    ///
    /// # Errors
    /// As [`EtcdCluster::start`].
    pub async fn start_with_args(n: usize, extra_args: &[&str]) -> Result<EtcdCluster, HarnessError> {
        let binary = etcd_binary()?;
        let extra_args: Vec<String> = extra_args.iter().map(|a| (*a).to_owned()).collect();
        let mut last_err = None;
        // A port picked by `free_port` can be taken by someone else before etcd binds it; a
        // start that fails then is retried on new ports.
        for _ in 0..3 {
            match Self::try_start(&binary, n.max(1), &extra_args).await {
                Ok(cluster) => return Ok(cluster),
                Err(e @ HarnessError::NoBinary) => return Err(e),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or(HarnessError::NoBinary))
    }

    async fn try_start(binary: &Path, n: usize, extra_args: &[String]) -> Result<EtcdCluster, HarnessError> {
        let io = |what| io_err("cluster", what);
        let dir = tempfile::Builder::new().prefix("kairos-etcd-").tempdir().map_err(io("temp dir"))?;
        let token =
            format!("kairos-test-{}-{}", std::process::id(), CLUSTERS.fetch_add(1, Ordering::Relaxed));
        let mut members = Vec::with_capacity(n);
        for i in 0..n {
            let name = format!("m{i}");
            members.push(Member {
                spec: MemberSpec {
                    client_port: free_port().map_err(io("free port"))?,
                    peer_port: free_port().map_err(io("free port"))?,
                    data_dir: dir.path().join(format!("{name}.etcd")),
                    log: dir.path().join(format!("{name}.log")),
                    name,
                },
                child: None,
            });
        }
        let mut cluster = EtcdCluster {
            binary: binary.to_path_buf(),
            token,
            extra_args: extra_args.to_vec(),
            members,
            _dir: dir,
        };
        for i in 0..n {
            cluster.spawn(i)?;
        }
        for i in 0..n {
            cluster.wait_healthy(i).await?;
        }
        Ok(cluster)
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}={}", m.spec.name, m.spec.peer_url()))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn spawn(&mut self, i: usize) -> Result<(), HarnessError> {
        let initial_cluster = self.initial_cluster();
        let member = self.members.get_mut(i).ok_or(HarnessError::NoMember(i))?;
        let spec = &member.spec;
        let io = |what| io_err(&spec.name, what);
        let log = File::options().create(true).append(true).open(&spec.log).map_err(io("open log"))?;
        let log_err = log.try_clone().map_err(io("open log"))?;
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--name")
            .arg(&spec.name)
            .arg("--data-dir")
            .arg(&spec.data_dir)
            .arg("--listen-client-urls")
            .arg(spec.client_url())
            .arg("--advertise-client-urls")
            .arg(spec.client_url())
            .arg("--listen-peer-urls")
            .arg(spec.peer_url())
            .arg("--initial-advertise-peer-urls")
            .arg(spec.peer_url())
            .arg("--initial-cluster")
            .arg(&initial_cluster)
            .arg("--initial-cluster-token")
            .arg(&self.token)
            .arg("--initial-cluster-state")
            .arg("new")
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        if let Some(arch) = unsupported_arch() {
            cmd.env("ETCD_UNSUPPORTED_ARCH", arch);
        }
        member.child = Some(cmd.spawn().map_err(io("spawn"))?);
        Ok(())
    }

    async fn wait_healthy(&mut self, i: usize) -> Result<(), HarnessError> {
        let member = self.members.get_mut(i).ok_or(HarnessError::NoMember(i))?;
        let url = member.spec.client_url();
        let unhealthy = |spec: &MemberSpec, reason: String| HarnessError::Unhealthy {
            name: spec.name.clone(),
            reason,
            log: spec.log.display().to_string(),
            tail: log_tail(&spec.log),
        };
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = member.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                member.child = None;
                return Err(unhealthy(&member.spec, format!("exited with {status}")));
            }
            let last = match probe(&url).await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if tokio::time::Instant::now() >= deadline {
                if let Some(mut child) = member.child.take() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                return Err(unhealthy(&member.spec, format!("after {START_TIMEOUT:?}: {last}")));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The client URLs of every member, `http://127.0.0.1:PORT`.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.spec.client_url()).collect()
    }

    /// The client URL of member `i`.
    ///
    /// # Panics
    /// When there is no member `i` (a test bug).
    pub fn endpoint(&self, i: usize) -> String {
        self.members[i].spec.client_url()
    }

    /// How many members the cluster has (running or not).
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the cluster has no member (never: `start` makes at least one).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The process id of member `i`, while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.members.get(i)?.child.as_ref().map(Child::id)
    }

    /// Kills member `i` with `SIGKILL` and waits for it to die. Killing a dead member does nothing.
    ///
    /// # Errors
    /// [`HarnessError`] when there is no such member or the kill fails.
    pub fn kill9(&mut self, i: usize) -> Result<(), HarnessError> {
        let member = self.members.get_mut(i).ok_or(HarnessError::NoMember(i))?;
        if let Some(mut child) = member.child.take() {
            let io = |what| io_err(&member.spec.name, what);
            child.kill().map_err(io("kill"))?;
            child.wait().map_err(io("wait"))?;
        }
        Ok(())
    }

    /// Starts member `i` again on its ports and data directory (killing it first if it runs) and
    /// waits until it answers a linearizable read, which, in a cluster, needs a quorum.
    ///
    /// # Errors
    /// [`HarnessError`] when it does not become healthy.
    pub async fn restart(&mut self, i: usize) -> Result<(), HarnessError> {
        self.kill9(i)?;
        self.spawn(i)?;
        self.wait_healthy(i).await
    }

    /// Stops member `i` with `SIGSTOP` (it keeps its sockets but answers nothing).
    ///
    /// # Errors
    /// [`HarnessError`] when it is not running or the signal fails.
    pub fn pause(&self, i: usize) -> Result<(), HarnessError> {
        self.signal(i, nix::sys::signal::Signal::SIGSTOP)
    }

    /// Lets a paused member `i` run again (`SIGCONT`).
    ///
    /// # Errors
    /// [`HarnessError`] when it is not running or the signal fails.
    pub fn resume(&self, i: usize) -> Result<(), HarnessError> {
        self.signal(i, nix::sys::signal::Signal::SIGCONT)
    }

    fn signal(&self, i: usize, signal: nix::sys::signal::Signal) -> Result<(), HarnessError> {
        let member = self.members.get(i).ok_or(HarnessError::NoMember(i))?;
        let io = |what, source| HarnessError::Io { name: member.spec.name.clone(), what, source };
        let child = member
            .child
            .as_ref()
            .ok_or_else(|| io("signal", std::io::Error::other("member is not running")))?;
        let pid = i32::try_from(child.id()).map_err(|e| io("signal", std::io::Error::other(e)))?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal)
            .map_err(|e| io("signal", std::io::Error::from(e)))
    }

    /// A client of every member, with short timeouts.
    ///
    /// # Errors
    /// The client's error (connecting is lazy, so this rarely fails).
    pub async fn client(&self) -> Result<Client, etcd_client::Error> {
        Client::connect(self.endpoints(), Some(test_options())).await
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for member in &mut self.members {
            if let Some(mut child) = member.child.take() {
                // A paused member dies of SIGKILL too.
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// A running single-member etcd; see the [module docs](self).
#[derive(Debug)]
pub struct EtcdProcess {
    cluster: EtcdCluster,
}

impl EtcdProcess {
    /// Starts one member and waits until it answers.
    ///
    /// # Errors
    /// As [`EtcdCluster::start`].
    pub async fn start() -> Result<EtcdProcess, HarnessError> {
        Ok(EtcdProcess { cluster: EtcdCluster::start(1).await? })
    }

    /// [`EtcdProcess::start`], with `extra_args` given to etcd.
    ///
    /// # Errors
    /// As [`EtcdCluster::start`].
    pub async fn start_with_args(extra_args: &[&str]) -> Result<EtcdProcess, HarnessError> {
        Ok(EtcdProcess { cluster: EtcdCluster::start_with_args(1, extra_args).await? })
    }

    /// Its client URL, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        self.cluster.endpoint(0)
    }

    /// Its client URL, as a list (what clients take).
    pub fn endpoints(&self) -> Vec<String> {
        self.cluster.endpoints()
    }

    /// Kills it with `SIGKILL`; see [`EtcdCluster::kill9`].
    ///
    /// # Errors
    /// As [`EtcdCluster::kill9`].
    pub fn kill9(&mut self) -> Result<(), HarnessError> {
        self.cluster.kill9(0)
    }

    /// Starts it again on the same port and data directory; see [`EtcdCluster::restart`].
    ///
    /// # Errors
    /// As [`EtcdCluster::restart`].
    pub async fn restart(&mut self) -> Result<(), HarnessError> {
        self.cluster.restart(0).await
    }

    /// `SIGSTOP`; see [`EtcdCluster::pause`].
    ///
    /// # Errors
    /// As [`EtcdCluster::pause`].
    pub fn pause(&self) -> Result<(), HarnessError> {
        self.cluster.pause(0)
    }

    /// `SIGCONT`; see [`EtcdCluster::resume`].
    ///
    /// # Errors
    /// As [`EtcdCluster::resume`].
    pub fn resume(&self) -> Result<(), HarnessError> {
        self.cluster.resume(0)
    }

    /// Its process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.cluster.pid(0)
    }

    /// A client with short timeouts.
    ///
    /// # Errors
    /// As [`EtcdCluster::client`].
    pub async fn client(&self) -> Result<Client, etcd_client::Error> {
        self.cluster.client().await
    }

    /// Frees the space a used-up `--quota-backend-bytes` holds, as an operator does with
    /// `etcdctl compact --physical`, `etcdctl defrag` and `etcdctl alarm disarm`: compacts to the
    /// current revision, defragments, and deactivates every alarm.
    ///
    /// # Errors
    /// When etcd cannot be reached or refuses a step.
    ///
    /// # Panics
    /// When etcd's status answer carries no header (etcd always sends one).
    pub async fn free_space(&self) -> Result<(), etcd_client::Error> {
        use etcd_client::{AlarmAction, AlarmOptions, AlarmType, CompactionOptions};
        let mut client = self.client().await?;
        let revision = client.status().await?.header().expect("etcd's status has a header").revision();
        client.compact(revision, Some(CompactionOptions::new().with_physical())).await?;
        client.defragment().await?;
        let alarms = client.alarm(AlarmAction::Get, AlarmType::None, None).await?;
        for alarm in alarms.alarms() {
            let mut options = AlarmOptions::new();
            options.with_member(alarm.member_id());
            client.alarm(AlarmAction::Deactivate, alarm.alarm(), Some(options)).await?;
        }
        Ok(())
    }
}

/// Client options for tests: fail fast instead of hanging on a dead member.
pub fn test_options() -> ConnectOptions {
    ConnectOptions::new().with_connect_timeout(Duration::from_secs(2)).with_timeout(Duration::from_secs(5))
}

/// One linearizable read against `url`.
async fn probe(url: &str) -> Result<(), String> {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_millis(500))
        .with_timeout(Duration::from_secs(2));
    let mut client = Client::connect([url], Some(options)).await.map_err(|e| e.to_string())?;
    client.get("kairos-harness-probe", None).await.map(drop).map_err(|e| e.to_string())
}

/// The last 4 KiB of a log file, for error messages.
fn log_tail(path: &Path) -> String {
    let Ok(mut file) = File::open(path) else { return String::from("(no log)") };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(4096)));
    let mut tail = String::new();
    let mut bytes = Vec::new();
    if file.read_to_end(&mut bytes).is_ok() {
        tail = String::from_utf8_lossy(&bytes).into_owned();
    }
    tail
}

/// `ETCD_UNSUPPORTED_ARCH` for architectures etcd 3.4 does not support by default.
fn unsupported_arch() -> Option<&'static str> {
    match std::env::consts::ARCH {
        "x86_64" => None,
        "aarch64" => Some("arm64"),
        "powerpc64" => Some("ppc64le"),
        "s390x" => Some("s390x"),
        other => Some(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn single_member_answers_survives_kill9_and_restart_with_its_data() {
        let mut etcd = EtcdProcess::start().await.expect("start etcd");
        let mut client = etcd.client().await.unwrap();
        client.put("k", "v", None).await.unwrap();
        etcd.kill9().unwrap();
        assert!(etcd.pid().is_none());
        assert!(client.get("k", None).await.is_err(), "a killed etcd answered");
        etcd.restart().await.expect("restart etcd");
        let mut fresh = etcd.client().await.unwrap();
        let got = fresh.get("k", None).await.unwrap();
        assert_eq!(got.kvs().first().map(|kv| kv.value()), Some(&b"v"[..]), "data lost on restart");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_member_cluster_keeps_a_quorum_with_one_member_down() {
        let mut cluster = EtcdCluster::start(3).await.expect("start cluster");
        assert_eq!(cluster.endpoints().len(), 3);
        cluster.kill9(2).unwrap();
        let options = test_options();
        let mut client = Client::connect([cluster.endpoint(0)], Some(options)).await.unwrap();
        // If the killed member led, the other two first elect a leader (longer on a loaded
        // machine); after that a write must succeed.
        let mut attempts = 0;
        while let Err(err) = client.put("k", "v", None).await {
            attempts += 1;
            assert!(attempts < 100, "two of three members accept no write: {err}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        cluster.restart(2).await.expect("member rejoins");
        let mut third = Client::connect([cluster.endpoint(2)], Some(test_options())).await.unwrap();
        let got = third.get("k", None).await.unwrap();
        assert_eq!(got.kvs().len(), 1, "the restarted member caught up");
    }

    #[test]
    fn missing_binary_says_how_to_install_it() {
        let msg = HarnessError::NoBinary.to_string();
        assert!(msg.contains("scripts/ensure-deps") && msg.contains("etcd-server"), "{msg}");
    }
}
