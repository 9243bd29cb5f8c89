//! `compare`: kairos and the BullMQ peer on the shared scenarios (create, burst, steady),
//! alternating within one run, kairos in each topology (embedded `kairos run`, split sidecar +
//! scheduler) unless `--topology` picks one, then the tonic ceiling and the kairos-only scenarios (scale,
//! recovery); prints kairos/peer ratios and, with `--markdown FILE`, the summary as a markdown
//! table for docs/BENCHMARKS.md.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, bail};
use serde_json::Value;

use super::fill::FillArgs;
use super::full::{self, Api, BurstArgs, CreateArgs, Headline, SteadyArgs};
use super::{ceiling, scale, sized};
use crate::cli::SchedulerArgs;
use crate::peer;
use crate::report::Report;
use crate::stack::Topology;

/// Options of `compare`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub scheduler: SchedulerArgs,
    /// Worker concurrency of the BullMQ peer [default: 64, the clients' count].
    #[arg(long)]
    pub peer_concurrency: Option<usize>,
    /// Rounds of the shared scenarios; odd rounds run kairos first, even ones the peer
    /// [default: 1]. Figures are the last round's; every round is in the JSON.
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Only the shared scenarios and the ceiling (no scale, no recovery).
    #[arg(long)]
    pub shared_only: bool,
    /// Jobs of the scale scenario [default: 10000000; --quick: 20000].
    #[arg(long)]
    pub scale_jobs: Option<u64>,
    /// Write the summary as a markdown table to FILE.
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
}

/// One summary line: a metric of kairos, of the peer (if shared), the target.
struct Line {
    scenario: String,
    metric: &'static str,
    kairos: f64,
    peer: Option<f64>,
    higher_is_better: bool,
    target: &'static str,
}

/// Runs `compare`; returns every report (the summary last).
///
/// # Errors
/// When a scenario fails.
pub async fn run(args: &Args, quick: bool) -> anyhow::Result<Vec<Report>> {
    peer::ensure()?;
    let concurrency = args.peer_concurrency.unwrap_or(64);
    let rounds = args.rounds.unwrap_or(1).max(1);
    let work = args.scheduler.work_dir.as_deref();
    let create_secs = sized(None, 20.0, 3.0, quick);
    let burst_jobs = sized(None, 100_000u64, 10_000, quick);
    let (rate, secs) = if quick { (2_000u64, 5.0) } else { (10_000, 20.0) };
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    let steady_jobs = (rate as f64 * secs) as u64;
    // The peer's delivery runs: mode, its sizes (as its script takes them), jobs.
    let peer_runs = [
        ("burst", vec![("jobs", burst_jobs.to_string())], burst_jobs),
        ("steady", vec![("rate", rate.to_string()), ("secs", secs.to_string())], steady_jobs),
    ];
    let mut reports = Vec::new();
    let topologies = args.scheduler.topology.map_or(vec![Topology::Embedded, Topology::Split], |t| vec![t]);
    // kairos's shared figures by topology, then its own (ceiling, scale, recovery).
    let mut shared: Vec<(Topology, Headline)> = topologies.iter().map(|t| (*t, Headline::new())).collect();
    let mut k = Headline::new();
    let mut p = Headline::new();

    for round in 1..=rounds {
        let kairos_first = round % 2 == 1;
        for step in 0..2 {
            if (step == 0) == kairos_first {
                for (topology, k) in &mut shared {
                    eprintln!("compare: round {round}, kairos ({})", topology.as_str());
                    let scheduler = SchedulerArgs { topology: Some(*topology), ..args.scheduler.clone() };
                    let create = CreateArgs {
                        scheduler: scheduler.clone(),
                        apis: Some(vec![Api::Grpc, Api::Http]),
                        ..Default::default()
                    };
                    let (r, h) = full::create(&create, quick).await?;
                    k.extend(h);
                    reports.push(print(r));
                    let burst = BurstArgs { scheduler: scheduler.clone(), ..Default::default() };
                    let (r, h) = full::burst(&burst, quick).await?;
                    k.extend(h);
                    reports.push(print(r));
                    let steady = SteadyArgs { scheduler, ..Default::default() };
                    let (r, h) = full::steady(&steady, quick, false).await?;
                    k.extend(h);
                    reports.push(print(r));
                }
            } else {
                eprintln!("compare: round {round}, peer");
                let (r, h) = peer_create(create_secs, work).await?;
                p.extend(h);
                reports.push(print(r));
                for (mode, sizes, jobs) in &peer_runs {
                    let (r, h) = peer_delivery(mode, sizes, *jobs, concurrency, work).await?;
                    p.extend(h);
                    reports.push(print(r));
                }
            }
        }
    }
    let (r, h) = ceiling::run(&ceiling::Args::default(), quick).await?;
    k.extend(h);
    reports.push(print(r));
    if !args.shared_only {
        let scale_args =
            FillArgs { scheduler: args.scheduler.clone(), jobs: args.scale_jobs, ..Default::default() };
        let (r, h) = scale::run(&scale_args, quick).await?;
        k.extend(h);
        reports.push(print(r));
        let recovery = SteadyArgs { scheduler: args.scheduler.clone(), ..Default::default() };
        let (r, h) = full::steady(&recovery, quick, true).await?;
        k.extend(h);
        reports.push(print(r));
    }

    let lines = summary_lines(&shared, &k, &p);
    let mut summary = Report::new("compare");
    summary.param("peer", peer::versions());
    summary.param("peer_worker_concurrency", concurrency as u64);
    summary.param("rounds", rounds as u64);
    summary.param("topologies", topologies.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(","));
    summary.param("cpus", std::thread::available_parallelism().map_or(0, |n| n.get() as u64));
    let table = summary.table(
        "kairos vs BullMQ (ratio = kairos/peer; > 1 is kairos ahead for rates, < 1 for latencies)",
        &["scenario", "metric", "kairos", "peer", "ratio", "ahead", "target"],
    );
    for line in &lines {
        let ratio = line.peer.filter(|p| *p != 0.0).map(|p| line.kairos / p);
        #[allow(clippy::float_cmp)]
        let ahead = line.peer.map(|p| {
            if line.kairos == p {
                "tie"
            } else if (line.kairos > p) == line.higher_is_better {
                "kairos"
            } else {
                "peer"
            }
        });
        table.row(vec![
            line.scenario.clone().into(),
            line.metric.into(),
            line.kairos.into(),
            line.peer.map_or(Value::from("-"), Value::from),
            ratio.map_or(Value::from("-"), Value::from),
            Value::from(ahead.unwrap_or("-")),
            line.target.into(),
        ]);
    }
    if let Some(ceiling) = k.get("ceiling_per_s").copied().filter(|c| *c > 0.0) {
        for (topology, h) in &shared {
            for (name, key) in [("burst", "burst_per_s"), ("steady", "steady_per_s")] {
                if let Some(rate) = h.get(key) {
                    summary.note(format!(
                        "{name} ({}) delivery rate {rate:.0}/s = {:.1}% of the bare tonic unary ceiling ({ceiling:.0}/s)",
                        topology.as_str(),
                        100.0 * rate / ceiling
                    ));
                }
            }
        }
    }
    summary.finish();
    if let Some(path) = &args.markdown {
        std::fs::write(path, markdown(&summary, &lines))
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("markdown summary written to {}", path.display());
    }
    reports.push(print(summary));
    Ok(reports)
}

fn print(report: Report) -> Report {
    println!("{}", report.render());
    report
}

/// The summary: each shared metric once per topology (against the same peer figure), then
/// kairos's own.
fn summary_lines(shared: &[(Topology, Headline)], k: &Headline, p: &Headline) -> Vec<Line> {
    let get = |h: &Headline, key: &str| h.get(key).copied();
    let mut lines = Vec::new();
    // Issue 17's targets, by topology: (embedded, split).
    let shared_metrics = [
        ("create", "gRPC jobs/s", "create_per_s", true, (">= 2x peer", ">= 1x peer")),
        ("create", "gRPC p99 ms", "create_p99_ms", false, ("<= 5", "")),
        ("create", "HTTP jobs/s", "create_http_per_s", true, (">= 2x peer", ">= 1x peer")),
        ("create", "HTTP p99 ms", "create_http_p99_ms", false, ("<= 5", "")),
        ("burst", "seconds to deliver all", "burst_s", false, ("<= 2 (100k)", "<= 3 (100k)")),
        ("burst", "triggers/s", "burst_per_s", true, ("", "")),
        ("burst", "jobs never delivered", "burst_lost", false, ("0", "0")),
        ("steady", "delivered/s", "steady_per_s", true, ("", "")),
        ("steady", "lateness p50 ms", "steady_p50_ms", false, ("", "")),
        ("steady", "lateness p99 ms", "steady_p99_ms", false, ("<= 10", "<= 10")),
        ("steady", "lateness max ms", "steady_max_ms", false, ("", "")),
        ("steady", "jobs never delivered", "steady_lost", false, ("0", "0")),
    ];
    for (scenario, metric, key, higher, (embedded_target, split_target)) in shared_metrics {
        for (topology, h) in shared {
            let target = match topology {
                Topology::Embedded => embedded_target,
                Topology::Split => split_target,
            };
            if let Some(kairos) = get(h, key) {
                // The peer has one create (a Node client on Redis): both APIs compare with it.
                let peer_key = key.replace("_http", "");
                lines.push(Line {
                    scenario: format!("{scenario} ({})", topology.as_str()),
                    metric,
                    kairos,
                    peer: get(p, &peer_key),
                    higher_is_better: higher,
                    target,
                });
            }
        }
    }
    let mut push = |scenario: &str, metric, key: &str, higher, target| {
        if let Some(kairos) = get(k, key) {
            lines.push(Line {
                scenario: scenario.to_owned(),
                metric,
                kairos,
                peer: get(p, key),
                higher_is_better: higher,
                target,
            });
        }
    };
    push("ceiling", "tonic unary calls/s", "ceiling_per_s", true, "");
    push("scale", "jobs stored", "scale_jobs", true, "10,000,000");
    push("scale", "scheduler RSS MiB", "scale_rss_mib", false, "<= 1024");
    push("scale", "store bytes/job", "scale_bytes_per_job", false, "");
    push("scale", "restart to first trigger ms", "scale_first_trigger_ms", false, "<= 2000");
    push("recovery", "acknowledged jobs lost", "recovery_lost", false, "0");
    push("recovery", "duplicate deliveries", "recovery_duplicates", false, "");
    push("recovery", "catch-up ms", "recovery_catch_up_ms", false, "");
    lines
}

fn markdown(summary: &Report, lines: &[Line]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "<!-- written by kairos-bench compare --markdown -->");
    let json = summary.to_json();
    let _ = writeln!(
        out,
        "Peer: {}. Load average (1/5/15 min) at the end: {}.\n",
        json["params"]["peer"].as_str().unwrap_or("?"),
        json["load_end"].as_str().unwrap_or("?")
    );
    let _ = writeln!(out, "| scenario | metric | kairos | BullMQ | kairos/BullMQ | target |");
    let _ = writeln!(out, "|---|---|---:|---:|---:|---|");
    let num = |x: f64| if x.abs() >= 100.0 { format!("{x:.0}") } else { format!("{x:.2}") };
    for l in lines {
        let peer = l.peer.map_or_else(|| "-".to_owned(), num);
        let ratio =
            l.peer.filter(|p| *p != 0.0).map_or_else(|| "-".to_owned(), |p| format!("{:.2}", l.kairos / p));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {peer} | {ratio} | {} |",
            l.scenario,
            l.metric,
            num(l.kairos),
            l.target
        );
    }
    for note in json["notes"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "\n{}", note.as_str().unwrap_or_default());
    }
    out
}

async fn peer_create(secs: f64, work: Option<&std::path::Path>) -> anyhow::Result<(Report, Headline)> {
    let v = peer::run("create", &[("clients", "64".into()), ("secs", secs.to_string())], work).await?;
    let mut report = Report::new("peer create");
    report.param("peer", "BullMQ Queue.add, delay one year, 64 concurrent callers on one Queue");
    let table = report.table(
        "durable creates (Queue.add resolved)",
        &["jobs", "errors", "secs", "jobs_per_s", "p50_ms", "p90_ms", "p99_ms", "max_ms"],
    );
    table.row(
        ["jobs", "errors", "secs", "jobs_per_s", "p50_ms", "p90_ms", "p99_ms", "max_ms"]
            .map(|k| v[k].clone())
            .to_vec(),
    );
    if let Some(e) = v["first_error"].as_str() {
        report.note(format!("first error: {e}"));
    }
    report.finish();
    let mut h = Headline::new();
    h.insert("create_per_s", v["jobs_per_s"].as_f64().unwrap_or(0.0));
    h.insert("create_p99_ms", v["p99_ms"].as_f64().unwrap_or(f64::NAN));
    Ok((report, h))
}

async fn peer_delivery(
    mode: &'static str,
    sizes: &[(&str, String)],
    jobs: u64,
    concurrency: usize,
    work: Option<&std::path::Path>,
) -> anyhow::Result<(Report, Headline)> {
    // lead = 3 s + jobs at an assumed 5,000/s (addBulk of 1,000 at a time); when creation
    // overruns it, again with 1.5 times the measured creation time.
    #[allow(clippy::cast_precision_loss)]
    let mut lead = 3.0 + jobs as f64 / 5_000.0;
    let mut v = Value::Null;
    for _ in 0..3 {
        let mut args: Vec<(&str, String)> = sizes.to_vec();
        args.push(("concurrency", concurrency.to_string()));
        args.push(("lead", format!("{lead:.1}")));
        v = peer::run(mode, &args, work).await?;
        if v["overran"].as_bool() != Some(true) {
            break;
        }
        lead = 3.0 + v["create_s"].as_f64().unwrap_or(lead) * 1.5;
        eprintln!("peer {mode}: creation overran the first due instant; again with a {lead:.0} s lead");
    }
    if v["overran"].as_bool() == Some(true) {
        bail!("peer {mode}: creation overran the first due instant 3 times");
    }
    let mut report = Report::new(if mode == "burst" { "peer burst" } else { "peer steady" });
    report.param("peer", "BullMQ delayed jobs (addBulk), Worker acknowledging at once");
    report.param("worker_concurrency", concurrency as u64);
    let cols = [
        "jobs",
        "create_s",
        "slack_s",
        "delivered",
        "duplicates",
        "early",
        "first_ms",
        "last_s",
        "delivered_per_s",
        "late_p50_ms",
        "late_p99_ms",
        "late_max_ms",
    ];
    let table = report.table("BullMQ delivery (times from the (first) due instant)", &cols);
    table.row(cols.map(|k| if v[k].is_null() { Value::from("-") } else { v[k].clone() }).to_vec());
    if v["timed_out"].as_bool() == Some(true) {
        report.note("not every job arrived before the timeout");
    }
    report.finish();
    let mut h = Headline::new();
    let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    if mode == "burst" {
        h.insert("burst_s", f("last_s"));
        h.insert("burst_per_s", f("delivered_per_s"));
        h.insert("burst_lost", f("jobs") - f("delivered"));
    } else {
        h.insert("steady_per_s", f("delivered_per_s"));
        h.insert("steady_p50_ms", f("late_p50_ms"));
        h.insert("steady_p99_ms", f("late_p99_ms"));
        h.insert("steady_max_ms", f("late_max_ms"));
        h.insert("steady_lost", f("jobs") - f("delivered"));
    }
    Ok((report, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_pairs_shared_metrics_per_topology_and_leaves_kairos_only_ones_without_a_peer() {
        let embedded = Headline::from([("create_per_s", 100.0), ("create_http_per_s", 80.0)]);
        let split = Headline::from([("create_per_s", 40.0), ("create_p99_ms", 2.0)]);
        let shared = [(Topology::Embedded, embedded), (Topology::Split, split)];
        let k = Headline::from([("scale_rss_mib", 300.0)]);
        let p = Headline::from([("create_per_s", 50.0), ("create_p99_ms", 4.0)]);
        let lines = summary_lines(&shared, &k, &p);
        assert_eq!(lines.len(), 5, "only metrics kairos measured are listed");
        let md = markdown(&Report::new("compare"), &lines);
        assert!(md.contains("| create (embedded) | gRPC jobs/s | 100 | 50.00 | 2.00 | >= 2x peer |"), "{md}");
        assert!(md.contains("| create (split) | gRPC jobs/s | 40.00 | 50.00 | 0.80 | >= 1x peer |"), "{md}");
        assert!(
            md.contains("| create (embedded) | HTTP jobs/s | 80.00 | 50.00 | 1.60 | >= 2x peer |"),
            "{md}"
        );
        assert!(md.contains("| create (split) | gRPC p99 ms | 2.00 | 4.00 | 0.50 |  |"), "{md}");
        assert!(md.contains("| scale | scheduler RSS MiB | 300 | - | - | <= 1024 |"), "{md}");
    }
}
