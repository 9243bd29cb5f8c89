//! Dapr's "Schedule and handle triggered jobs" walkthrough, end to end: the real `kairos run`
//! binary runs the real `db-backup` example app (built from `examples/db-backup`) with the
//! walkthrough's flags, on free ports and a temporary data dir, and the test reads the app's
//! output as a user sees it.
//!
//! The crash test kills `kairos run` and its app with SIGKILL (both process groups: a real
//! crash of the session, with no chance to clean up) and restarts them on the same data dir.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use kairos_store::JobStore;
use kairos_testing::process::{children_of, is_dead};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// The wall clock. This test times real processes (deliveries ~1 s apart), so it reads the
/// system clock, which kairos code may only do through `kairos_core::Clock`.
#[allow(clippy::disallowed_methods)]
fn now() -> Instant {
    Instant::now()
}

/// The payload the walkthrough schedules, as the app prints it after decoding it.
const PAYLOAD: &str =
    r#"{"task":"db-backup","metadata":{"db_name":"my-prod-db","backup_location":"/backup-dir"}}"#;
/// How long one whole walkthrough (10 ticks 1 s apart, plus start-up) may take.
const RUN_LIMIT: Duration = Duration::from_secs(90);

/// The `db-backup` binary, built once per test process.
fn db_backup() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| common::cargo_bin("db-backup", "db-backup"))
}

/// One `kairos run … -- db-backup` session in its own process group, SIGKILLed (group and all)
/// when dropped.
struct Session {
    child: Child,
    /// The app's and the runtime's stdout lines, with the instant the test read each.
    stdout: mpsc::Receiver<(Instant, String)>,
    /// The runtime's log (stderr), kept for failure messages.
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Session {
    /// `kairos run` with the walkthrough's flags (port 0 instead of 9091 and 50001; a free port
    /// for the app instead of 50070, as the app must know it before it starts).
    fn start(data_dir: &Path, app_args: &[&str]) -> Session {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kairos"));
        command
            .arg("run")
            .arg("--app-id=distributed-scheduler")
            .arg("--metrics-port=0")
            .args(["--dapr-grpc-port", "0"])
            .args(["--app-port", &kairos_testing::free_port().unwrap().to_string()])
            .args(["--app-protocol", "grpc", "--log-level", "debug"])
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--")
            .arg(db_backup())
            .args(app_args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group (and the app's, which it leads), so that the crash below takes the
            // app down with the runtime.
            .process_group(0);
        for var in ["DAPR_API_TOKEN", "APP_API_TOKEN", "NAMESPACE"] {
            command.env_remove(var);
        }
        let mut child = command.spawn().expect("spawn kairos run");
        let (tx, stdout) = mpsc::channel();
        let out = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("KAIROS_TEST_LOGS").is_some() {
                    eprintln!("[stdout] {line}");
                }
                if tx.send((now(), line)).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let err = child.stderr.take().expect("stderr");
        let log = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("KAIROS_TEST_LOGS").is_some() {
                    eprintln!("[stderr] {line}");
                }
                log.lock().unwrap().push(line);
            }
        });
        Session { child, stdout, stderr }
    }

    /// Reads stdout until `stop` says so for a line, or until stdout closes (`false`), or until
    /// `limit` passes (a panic with the runtime's log).
    fn read_until(
        &self,
        lines: &mut Vec<(Instant, String)>,
        limit: Duration,
        stop: impl Fn(&str) -> bool,
    ) -> bool {
        let deadline = now() + limit;
        loop {
            let left = deadline.saturating_duration_since(now());
            match self.stdout.recv_timeout(left) {
                Ok((at, line)) => {
                    let done = stop(&line);
                    lines.push((at, line));
                    if done {
                        return true;
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return false,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("no end within {limit:?}; stdout so far:\n{}\n{}", text(lines), self.log())
                }
            }
        }
    }

    /// Waits for `kairos run` to exit on its own.
    fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(now() < deadline, "kairos run did not exit within {limit:?}\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL to `kairos run` and the app at once (the app leads a process group of its own),
    /// then reap.
    fn crash(&mut self) {
        let children = children_of(self.child.id());
        for pid in std::iter::once(self.child.id()).chain(children.into_iter().map(|(pid, _)| pid)) {
            if let Ok(pid) = i32::try_from(pid) {
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        let _ = self.child.wait();
    }

    /// Reads the output into `lines` until `app` reports the job done, then up to the runtime's
    /// exit, which must be 0; the output.
    fn run_to_exit_0(&mut self, lines: &mut Vec<(Instant, String)>, app: &str) -> String {
        let saw_done = self.read_until(lines, RUN_LIMIT, is_done_line);
        let status = self.wait(Duration::from_secs(20));
        // The rest of the output, up to the runtime's exit.
        self.read_until(lines, Duration::from_secs(5), |_| false);
        let out = text(lines);
        assert!(saw_done, "{app} never reported the job done:\n{out}\n{}", self.log());
        assert!(status.success(), "kairos run exited with {status}:\n{out}\n{}", self.log());
        out
    }

    fn log(&self) -> String {
        format!("runtime log:\n{}", self.stderr.lock().unwrap().join("\n"))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.crash();
    }
}

fn text(lines: &[(Instant, String)]) -> String {
    lines.iter().map(|(_, l)| l.as_str()).collect::<Vec<_>>().join("\n")
}

/// A delivery as the app printed it: when its first line was read, its count, its payload line.
#[derive(Debug)]
struct Delivery {
    at: Instant,
    count: u32,
    payload: String,
}

/// The deliveries in the app's output (`== APP == job N received:` … `extracted payload: …`).
fn deliveries(lines: &[(Instant, String)]) -> Vec<Delivery> {
    let mut found: Vec<Delivery> = Vec::new();
    for (at, line) in lines {
        let Some(app) = line.strip_prefix("== APP == ") else { continue };
        if let Some(count) = app.strip_prefix("job ").and_then(|rest| rest.strip_suffix(" received:")) {
            let count = count.parse().unwrap_or_else(|_| panic!("bad count in {line:?}"));
            found.push(Delivery { at: *at, count, payload: String::new() });
        } else if let Some(payload) = app.trim_start().strip_prefix("extracted payload: ") {
            found.last_mut().expect("payload before its delivery").payload = payload.to_owned();
        }
    }
    found
}

/// How many jobs the data dir's store holds (read after `kairos run` has exited).
fn jobs_in_store(data_dir: &Path) -> u64 {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let store =
            kairos_store::redb::RedbStore::open(data_dir.join("jobs.redb"), 1).expect("open the job store");
        store.count().await.expect("count jobs")
    })
}

fn is_done_line(line: &str) -> bool {
    line.starts_with("== APP == job prod-db-backup done after")
}

#[test]
fn walkthrough_delivers_ten_jobs_a_second_apart_with_the_payload_then_deletes_the_job_and_exits_0() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut session = Session::start(dir.path(), &[]);
    let mut lines = Vec::new();
    let out = session.run_to_exit_0(&mut lines, "the app");
    assert!(out.contains("== APP == schedulejob - success"), "{out}");

    let got = deliveries(&lines);
    assert_eq!(got.iter().map(|d| d.count).collect::<Vec<_>>(), (1..=10).collect::<Vec<_>>(), "{out}");
    for delivery in &got {
        assert_eq!(delivery.payload, PAYLOAD, "delivery {}:\n{out}", delivery.count);
    }
    assert!(out.contains("== APP ==   typeurl: type.googleapis.com/google.protobuf.Value"), "{out}");
    assert!(out.contains("== APP ==   type: prod-db-backup"), "{out}");
    let gaps: Vec<Duration> = got.windows(2).map(|w| w[1].at - w[0].at).collect();
    eprintln!("gaps between deliveries: {gaps:?}");
    for (i, gap) in gaps.iter().enumerate() {
        assert!(
            (Duration::from_millis(500)..=Duration::from_secs(2)).contains(gap),
            "gap {} → {} is {gap:?}; all gaps: {gaps:?}",
            i + 1,
            i + 2
        );
    }
    assert_eq!(jobs_in_store(dir.path()), 0, "the job outlived its 10 repeats");
}

#[test]
fn walkthrough_killed_after_four_deliveries_resumes_on_the_same_data_dir_and_loses_none() {
    let dir = tempfile::tempdir().expect("tempdir");

    let mut first = Session::start(dir.path(), &["--resume"]);
    let mut lines = Vec::new();
    let payloads = std::cell::Cell::new(0);
    let fourth = first.read_until(&mut lines, RUN_LIMIT, |l| {
        if l.starts_with("== APP ==   extracted payload: ") {
            payloads.set(payloads.get() + 1);
        }
        payloads.get() == 4
    });
    assert!(fourth, "the first run ended before its 4th delivery:\n{}\n{}", text(&lines), first.log());
    first.crash();
    // Whatever the app printed before the kill.
    first.read_until(&mut lines, Duration::from_secs(5), |_| false);
    let before = deliveries(&lines);
    assert!(text(&lines).contains("== APP == schedulejob - success"), "{}", text(&lines));
    assert!((4..=5).contains(&before.len()), "{}", text(&lines));
    drop(first);

    let mut second = Session::start(dir.path(), &["--resume"]);
    let mut after_lines = Vec::new();
    let out = second.run_to_exit_0(&mut after_lines, "the resumed app");
    assert!(
        out.contains("exists from an earlier run; resuming it"),
        "the job did not survive the crash:\n{out}"
    );

    let after = deliveries(&after_lines);
    // The kill may cut the first run's last delivery short of its payload line.
    let complete = before.iter().take(4).chain(&after);
    for delivery in complete {
        assert_eq!(delivery.payload, PAYLOAD, "{out}");
    }
    // Ten ticks in all; only the tick in flight at the kill may come twice (at-least-once).
    let total = before.len() + after.len();
    assert!(
        (10..=11).contains(&total),
        "{} deliveries before the crash and {} after: {total} in all\n{out}",
        before.len(),
        after.len()
    );
    assert_eq!(jobs_in_store(dir.path()), 0, "the job outlived its 10 repeats");
}

#[test]
fn sigint_to_kairos_run_is_forwarded_and_kairos_run_exits_with_the_apps_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut session = Session::start(dir.path(), &[]);
    let mut lines = Vec::new();
    let second = session.read_until(&mut lines, RUN_LIMIT, |l| l == "== APP == job 2 received:");
    assert!(second, "no 2nd delivery:\n{}\n{}", text(&lines), session.log());
    // To `kairos run` alone, as a terminal's Ctrl-C would reach a shell's foreground job leader.
    let pid = Pid::from_raw(i32::try_from(session.child.id()).expect("pid"));
    nix::sys::signal::kill(pid, Signal::SIGINT).expect("send SIGINT");
    let status = session.wait(Duration::from_secs(20));
    session.read_until(&mut lines, Duration::from_secs(5), |_| false);
    // db-backup does not catch SIGINT, so it dies of it: 128 + 2, long before its 10th tick.
    assert_eq!(status.code(), Some(130), "{}\n{}", text(&lines), session.log());
    assert!(deliveries(&lines).len() < 10, "{}", text(&lines));
    // The job stays for a later run (with --resume it carries on).
    assert_eq!(jobs_in_store(dir.path()), 1);
}

#[test]
fn without_home_or_data_dir_kairos_run_refuses_clearly() {
    let output = Command::new(env!("CARGO_BIN_EXE_kairos"))
        .args(["run", "--app-id", "x", "--", "true"])
        .env_remove("HOME")
        .env_remove("RUST_LOG")
        .output()
        .expect("run kairos");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("HOME is not set") && stderr.contains("pass --data-dir"), "{stderr}");
}

#[test]
fn an_app_does_not_outlive_kairos_run_killed_by_sigkill() {
    the_app_and_what_it_started_end_with_kairos_run(&["sleep", "600"], Signal::SIGKILL);
}

/// A shell that does not exec its command leaves the command's process outside the reach of
/// a parent-death signal, which only the shell gets: the app's whole process group must go.
#[test]
fn what_a_shell_app_started_does_not_outlive_kairos_run_killed_by_sigkill() {
    the_app_and_what_it_started_end_with_kairos_run(&["sh", "-c", "sleep 600 & wait"], Signal::SIGKILL);
}

/// A stop signal is forwarded to every process of the app, not just to the shell.
#[test]
fn a_stop_signal_to_kairos_run_reaches_every_process_of_the_app() {
    the_app_and_what_it_started_end_with_kairos_run(&["sh", "-c", "sleep 600 & wait"], Signal::SIGTERM);
}

/// Starts `kairos run -- app…`, waits for the app's processes (the app and, for `sh -c`, its
/// `sleep`), sends `signal` to `kairos run` alone and checks that every one of them is gone
/// within 10 s.
fn the_app_and_what_it_started_end_with_kairos_run(app: &[&str], signal: Signal) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut run = Command::new(env!("CARGO_BIN_EXE_kairos"))
        .args(["run", "--app-id", "sleeper", "--data-dir"])
        .arg(dir.path())
        .arg("--")
        .args(app)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own group, so that the test can clean up whatever happens.
        .process_group(0)
        .spawn()
        .expect("spawn kairos run");
    let run_group = Pid::from_raw(i32::try_from(run.id()).expect("pid"));
    let command = Path::new(app[0]).file_name().and_then(|n| n.to_str()).expect("app name").to_owned();
    let mut pids = Vec::new();
    let deadline = now() + Duration::from_secs(30);
    while pids.len() < 2 {
        if let Some((pid, _)) = children_of(run.id()).into_iter().find(|(_, comm)| *comm == command) {
            pids = vec![pid];
            // A shell's own child: the process the shell did not exec.
            match children_of(pid).into_iter().find(|(_, comm)| comm == "sleep") {
                Some((sleep, _)) => pids.push(sleep),
                None if command == "sleep" => break,
                None => {}
            }
        }
        if now() > deadline {
            let _ = killpg(run_group, Signal::SIGKILL);
            panic!("kairos run did not start {app:?} within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // To `kairos run` alone: SIGKILL as the OOM killer would send it (no chance to stop its
    // app), SIGTERM as a process manager would.
    nix::sys::signal::kill(run_group, signal).expect("signal kairos run");
    let _ = run.wait();
    let deadline = now() + Duration::from_secs(10);
    while !pids.iter().all(|pid| is_dead(*pid)) && now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let alive: Vec<u32> = pids.iter().copied().filter(|pid| !is_dead(*pid)).collect();
    let _ = killpg(run_group, Signal::SIGKILL);
    for pid in &alive {
        let _ = nix::sys::signal::kill(Pid::from_raw(i32::try_from(*pid).expect("pid")), Signal::SIGKILL);
    }
    assert!(
        alive.is_empty(),
        "after {signal} to kairos run, {alive:?} of {app:?} {pids:?} outlived it by 10 s"
    );
}
