//! `kairos jobs list|get|delete|export|import`: the operator's view of a scheduler's store,
//! through the `kairos.admin.v1.Admin` service on the scheduler's gRPC port.
//!
//! Export writes JSON Lines (docs/export-format.md), one job per line with its progress;
//! import stores those lines exactly, so a job continues its timeline where it was.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use base64::Engine as _;
use jiff::{SignedDuration, Timestamp};
use kairos_core::timeline::Progress;
use kairos_core::{
    FailurePolicy, JobKey, JobSpec, JobState, JobStats, MisfirePolicy, Owner, Payload, TriggerOutcome,
};
use kairos_proto::admin::admin_client::AdminClient;
use kairos_proto::admin::{
    DeleteJobRequest, GetJobHistoryRequest, GetJobRequest, GetJobStatusRequest, ImportJobsRequest,
    JobState as WireState, JobStatus as WireStatus, ListAllJobsRequest, ListJobStatusRequest, OnConflict,
    PauseJobRequest, ResumeJobRequest, TriggerJobRequest, TriggerOutcome as WireOutcome,
    TriggerRecord as WireRecord,
};
use kairos_proto::auth::{AddToken, TokenScheme};
use kairos_proto::convert::{metadata_of, outcome_from_wire, state_from_wire};
use kairos_scheduler::admin::{job_from_wire, job_to_wire, ref_of};
use kairos_store::StoredJob;
use serde::{Deserialize, Serialize};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// The `format` of every export line; bumped when the line's meaning changes.
pub const FORMAT: &str = "kairos.jobs/v1";
/// Jobs per ImportJobs request.
const IMPORT_BATCH: usize = 500;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The scheduler's gRPC address (host:port or http://host:port).
    #[arg(long, global = true, env = "KAIROS_SCHEDULER", default_value = "127.0.0.1:50006")]
    pub scheduler: String,
    /// File holding the scheduler's API token (else KAIROS_SCHEDULER_API_TOKEN; neither: no
    /// token is sent).
    #[arg(long, global = true)]
    pub api_token_file: Option<PathBuf>,
    /// Connect over TLS, verifying the scheduler's certificate against this PEM CA.
    #[arg(long, global = true)]
    pub tls_ca_file: Option<PathBuf>,
    /// A PEM client certificate to present (a scheduler started with --tls-client-ca-file
    /// requires one); needs --tls-ca-file and --tls-key-file.
    #[arg(long, global = true, requires_all = ["tls_ca_file", "tls_key_file"])]
    pub tls_cert_file: Option<PathBuf>,
    /// The PEM private key of --tls-cert-file.
    #[arg(long, global = true, requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: JobsCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum JobsCommand {
    /// Every job of every owner with its status: owner, name, schedule, state, next and last
    /// fire, last outcome, count, attempts, deliveries and failures.
    List {
        /// Only jobs of this namespace.
        #[arg(long)]
        namespace: Option<String>,
        /// Only jobs of this app.
        #[arg(long, visible_alias = "app")]
        app_id: Option<String>,
        /// Only jobs whose names start with this.
        #[arg(long)]
        prefix: Option<String>,
        /// Only jobs in this state.
        #[arg(long, value_enum)]
        state: Option<StateArg>,
        /// One JSON object per line (the export format, which `import` reads) instead of a
        /// table.
        #[arg(long)]
        json: bool,
    },
    /// One job's status: state, next and last fire, last outcome, counters.
    Status {
        #[command(flatten)]
        key: KeyArgs,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// One job's newest deliveries, oldest first.
    History {
        #[command(flatten)]
        key: KeyArgs,
        /// At most this many records, the newest (0: all that are kept).
        #[arg(long, default_value_t = 0)]
        limit: u32,
        /// One JSON object per record instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Pauses one job: it fires nothing until resumed (its ttl still ends it).
    Pause(KeyArgs),
    /// Resumes one paused job, its misfire policy applied to the ticks it missed.
    Resume(KeyArgs),
    /// Delivers one job once more, now (not counted against its repeats; allowed while paused).
    Trigger(KeyArgs),
    /// One job, by its full key, as a JSON line.
    Get(KeyArgs),
    /// Deletes one job by its full key (an absent job is not an error).
    Delete(KeyArgs),
    /// Writes every job with its progress to a JSON Lines file.
    Export {
        /// Output file (`-` for stdout). Written to a temporary file first and renamed.
        #[arg(long, short)]
        file: PathBuf,
    },
    /// Stores every job of an export file exactly (timeline, progress, data bytes).
    Import {
        /// Input file (`-` for stdin).
        #[arg(long, short)]
        file: PathBuf,
        /// What to do with a name that is already stored: fail (import nothing), skip it, or
        /// overwrite it.
        #[arg(long, value_enum, default_value = "fail")]
        on_conflict: Conflict,
    },
}

/// A job's full key on the command line.
#[derive(Debug, clap::Args)]
pub struct KeyArgs {
    /// The job's name.
    pub name: String,
    /// The owning app (for app jobs).
    #[arg(long, required_unless_present = "actor_type")]
    pub app_id: Option<String>,
    /// The actor type (for actor reminders; needs --actor-id).
    #[arg(long, requires = "actor_id", conflicts_with = "app_id")]
    pub actor_type: Option<String>,
    /// The actor id (for actor reminders).
    #[arg(long, requires = "actor_type")]
    pub actor_id: Option<String>,
    /// The namespace.
    #[arg(long, default_value = "default")]
    pub namespace: String,
}

impl KeyArgs {
    fn key(&self) -> JobKey {
        let owner = match (&self.app_id, &self.actor_type, &self.actor_id) {
            (_, Some(t), Some(id)) => Owner::actor(t.clone(), id.clone()),
            (app, _, _) => Owner::app(app.clone().unwrap_or_default()),
        };
        JobKey { namespace: self.namespace.clone(), owner, name: self.name.clone() }
    }
}

/// A job state on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum StateArg {
    Scheduled,
    Paused,
    WaitingForApp,
    Retrying,
    Finished,
}

impl StateArg {
    fn wire(self) -> WireState {
        match self {
            StateArg::Scheduled => WireState::Scheduled,
            StateArg::Paused => WireState::Paused,
            StateArg::WaitingForApp => WireState::WaitingForApp,
            StateArg::Retrying => WireState::Retrying,
            StateArg::Finished => WireState::Finished,
        }
    }
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Conflict {
    Fail,
    Skip,
    Overwrite,
}

/// Runs `kairos jobs …`, writing results to `out`.
///
/// # Errors
/// When the scheduler cannot be reached or refuses the call, or a file cannot be read/written.
pub async fn run(args: Args, out: &mut dyn Write) -> anyhow::Result<()> {
    let token = super::api_token(args.api_token_file.as_deref(), super::SCHEDULER_TOKEN_ENV)?;
    let tls_ca = match &args.tls_ca_file {
        Some(file) => Some(std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?),
        None => None,
    };
    let identity = match (&args.tls_cert_file, &args.tls_key_file) {
        (Some(cert), Some(key)) => Some((
            std::fs::read(cert).with_context(|| format!("cannot read {}", cert.display()))?,
            std::fs::read(key).with_context(|| format!("cannot read {}", key.display()))?,
        )),
        _ => None,
    };
    let mut client = connect(&args.scheduler, token, tls_ca, identity).await?;
    match args.command {
        JobsCommand::List { namespace, app_id, prefix, state, json } => {
            let filter = ListJobStatusRequest {
                // The scheduler filters one owner itself; without a namespace, every
                // namespace's app of that id is listed.
                owner: match (&namespace, &app_id) {
                    (Some(ns), Some(app)) => Some(metadata_of(&JobKey::app(ns.clone(), app.clone(), ""))),
                    _ => None,
                },
                name_prefix: prefix.unwrap_or_default(),
                state: state.map_or(WireState::Unspecified, StateArg::wire).into(),
                after: None,
                page_size: 0,
            };
            let mut jobs = list_status(&mut client, filter).await?;
            jobs.retain(|(j, _)| {
                namespace.as_ref().is_none_or(|ns| &j.key.namespace == ns)
                    && app_id
                        .as_ref()
                        .is_none_or(|id| matches!(&j.key.owner, Owner::App { app_id } if app_id == id))
            });
            if json {
                for (job, _) in &jobs {
                    writeln!(out, "{}", serde_json::to_string(&Line::of(job))?)?;
                }
            } else {
                write_table(&jobs, out)?;
            }
        }
        JobsCommand::Status { key, json } => {
            let key = key.key();
            let response =
                answer(client.get_job_status(GetJobStatusRequest { r#ref: Some(ref_of(&key)) })).await?;
            let job = job_from_wire(response.job.context("the scheduler answered without a job")?)?;
            let status = response.status.context("the scheduler answered without a status")?;
            write_status(&job, &status, json, out)?;
        }
        JobsCommand::History { key, limit, json } => {
            let key = key.key();
            let response =
                answer(client.get_job_history(GetJobHistoryRequest { r#ref: Some(ref_of(&key)), limit }))
                    .await?;
            write_history(&response.records, json, out)?;
        }
        JobsCommand::Pause(key) => {
            let key = key.key();
            let response = answer(client.pause_job(PauseJobRequest { r#ref: Some(ref_of(&key)) })).await?;
            let state = response.status.map_or(WireState::Unspecified, |s| s.state());
            writeln!(out, "{key}: paused (state {})", state_name(state))?;
        }
        JobsCommand::Resume(key) => {
            let key = key.key();
            let response = answer(client.resume_job(ResumeJobRequest { r#ref: Some(ref_of(&key)) })).await?;
            let status = response.status.unwrap_or_default();
            let next = status.next_fire.map_or_else(|| "-".into(), |t| wire_time(&t));
            writeln!(out, "{key}: resumed (state {}, next fire {next})", state_name(status.state()))?;
        }
        JobsCommand::Trigger(key) => {
            let key = key.key();
            answer(client.trigger_job(TriggerJobRequest { r#ref: Some(ref_of(&key)) })).await?;
            writeln!(out, "{key}: triggered (one extra delivery, now)")?;
        }
        JobsCommand::Get(key) => {
            let key = key.key();
            let response = answer(client.get_job(GetJobRequest { r#ref: Some(ref_of(&key)) })).await?;
            let wire = response.job.context("the scheduler answered without a job")?;
            let job = job_from_wire(wire)?;
            writeln!(out, "{}", serde_json::to_string(&Line::of(&job))?)?;
        }
        JobsCommand::Delete(key) => {
            let key = key.key();
            let response = answer(client.delete_job(DeleteJobRequest { r#ref: Some(ref_of(&key)) })).await?;
            let what = if response.deleted { "deleted" } else { "not found (nothing deleted)" };
            writeln!(out, "{key}: {what}")?;
        }
        JobsCommand::Export { file } => {
            let jobs = all_jobs(&mut client).await?;
            let mut text = String::new();
            for job in &jobs {
                text.push_str(&serde_json::to_string(&Line::of(job))?);
                text.push('\n');
            }
            if file.as_os_str() == "-" {
                out.write_all(text.as_bytes())?;
            } else {
                write_file(&file, text.as_bytes())?;
                writeln!(out, "exported {} jobs to {}", jobs.len(), file.display())?;
            }
        }
        JobsCommand::Import { file, on_conflict } => {
            let jobs = read_export(&file)?;
            let (imported, skipped) = import(&mut client, jobs, on_conflict).await?;
            writeln!(out, "imported {imported} jobs, skipped {skipped} existing")?;
        }
    }
    Ok(())
}

/// The admin client, carrying the API token on every call.
type Admin = AdminClient<InterceptedService<Channel, AddToken>>;

async fn connect(
    address: &str,
    token: Option<String>,
    tls_ca: Option<Vec<u8>>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
) -> anyhow::Result<Admin> {
    let scheme = if tls_ca.is_some() { "https" } else { "http" };
    let url = if address.contains("://") { address.to_owned() } else { format!("{scheme}://{address}") };
    let mut endpoint =
        Endpoint::from_shared(url.clone()).with_context(|| format!("bad scheduler address {url}"))?;
    if let Some(ca) = tls_ca {
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
        if let Some((cert, key)) = identity {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        endpoint = endpoint.tls_config(tls).context("bad TLS configuration")?;
    }
    let auth = AddToken::new(TokenScheme::Bearer, token.as_deref())
        .context("the API token is not a valid header value")?;
    let channel = endpoint
        .connect_timeout(std::time::Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| format!("cannot connect to the scheduler at {url}"))?;
    Ok(AdminClient::with_interceptor(channel, auth)
        .max_decoding_message_size(256 * 1024 * 1024)
        .max_encoding_message_size(256 * 1024 * 1024))
}

/// The scheduler's answer to `call`, or its refusal as an error.
async fn answer<T>(
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> anyhow::Result<T> {
    call.await.map(tonic::Response::into_inner).map_err(|s| status_error(&s))
}

fn status_error(status: &tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("the scheduler refused: {:?}: {}", status.code(), status.message())
}

/// Every stored job, page by page, in key order.
async fn all_jobs(client: &mut Admin) -> anyhow::Result<Vec<StoredJob>> {
    let mut jobs = Vec::new();
    let mut after = None;
    loop {
        let page =
            answer(client.list_all_jobs(ListAllJobsRequest { after: after.take(), page_size: 0 })).await?;
        for wire in page.jobs {
            jobs.push(job_from_wire(wire)?);
        }
        match jobs.last() {
            Some(last) if page.more => after = Some(ref_of(&last.key)),
            _ => return Ok(jobs),
        }
    }
}

/// Every job the filter selects, with its status, page by page.
async fn list_status(
    client: &mut Admin,
    mut filter: ListJobStatusRequest,
) -> anyhow::Result<Vec<(StoredJob, WireStatus)>> {
    let mut jobs = Vec::new();
    loop {
        let page = answer(client.list_job_status(filter.clone())).await?;
        for entry in page.jobs {
            let job = job_from_wire(entry.job.context("the scheduler answered an entry without a job")?)?;
            jobs.push((job, entry.status.unwrap_or_default()));
        }
        match page.next_after {
            Some(next) => filter.after = Some(next),
            None => return Ok(jobs),
        }
    }
}

/// Imports `jobs` in batches. With [`Conflict::Fail`] a dry run over every batch comes first,
/// so that a taken name anywhere in the file stores nothing.
async fn import(
    client: &mut Admin,
    jobs: Vec<StoredJob>,
    on_conflict: Conflict,
) -> anyhow::Result<(u64, u64)> {
    let mode = match on_conflict {
        Conflict::Fail => OnConflict::Fail,
        Conflict::Skip => OnConflict::Skip,
        Conflict::Overwrite => OnConflict::Overwrite,
    };
    let wire: Vec<_> = jobs.iter().map(job_to_wire).collect();
    if matches!(on_conflict, Conflict::Fail) {
        let mut conflicts = Vec::new();
        for batch in wire.chunks(IMPORT_BATCH) {
            let request = ImportJobsRequest { jobs: batch.to_vec(), on_conflict: mode as i32, dry_run: true };
            let response = answer(client.import_jobs(request)).await?;
            conflicts.extend(response.conflicts);
        }
        if !conflicts.is_empty() {
            bail!(
                "{} jobs of the file already exist (first: '{}'); nothing was imported \
                 (use --on-conflict skip or overwrite)",
                conflicts.len(),
                conflicts[0]
            );
        }
    }
    let (mut imported, mut skipped) = (0u64, 0u64);
    for batch in wire.chunks(IMPORT_BATCH) {
        let request = ImportJobsRequest { jobs: batch.to_vec(), on_conflict: mode as i32, dry_run: false };
        let response = answer(client.import_jobs(request)).await?;
        imported += u64::from(response.imported);
        skipped += u64::from(response.skipped);
    }
    Ok((imported, skipped))
}

fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    // A crash mid-export must not leave a truncated file under the final name.
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
    Ok(())
}

/// Reads and checks every line of an export file.
///
/// # Errors
/// On the first line that is not a job of [`FORMAT`], naming the line.
pub fn read_export(path: &Path) -> anyhow::Result<Vec<StoredJob>> {
    let reader: Box<dyn BufRead> = if path.as_os_str() == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        Box::new(std::io::BufReader::new(file))
    };
    let mut jobs = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: Line = serde_json::from_str(&line)
            .with_context(|| format!("{} line {}: not a kairos job line", path.display(), i + 1))?;
        let job = parsed.into_job().with_context(|| format!("{} line {}", path.display(), i + 1))?;
        jobs.push(job);
    }
    Ok(jobs)
}

fn write_table(jobs: &[(StoredJob, WireStatus)], out: &mut dyn Write) -> std::io::Result<()> {
    let header = [
        "NAMESPACE",
        "OWNER",
        "NAME",
        "SCHEDULE",
        "STATE",
        "NEXT FIRE",
        "LAST FIRE",
        "LAST OUTCOME",
        "COUNT",
        "ATTEMPTS",
        "FIRED",
        "FAILURES",
    ];
    let rows: Vec<[String; 12]> = jobs
        .iter()
        .map(|(j, status)| {
            [
                j.key.namespace.clone(),
                owner_text(&j.key.owner),
                j.key.name.clone(),
                schedule_text(&j.spec),
                state_name(status.state()).into(),
                status.next_fire.as_ref().map_or_else(|| "-".into(), wire_time),
                status.last_fire.as_ref().map_or_else(|| "-".into(), wire_time),
                outcome_name(status.last_outcome()).into(),
                j.progress.count.to_string(),
                j.progress.attempts.to_string(),
                status.fired.to_string(),
                status.failures.to_string(),
            ]
        })
        .map(|row| row.map(|cell| printable(&cell)))
        .collect();
    write_columns(&header, &rows, out)?;
    writeln!(out, "{} jobs", rows.len())
}

fn owner_text(owner: &Owner) -> String {
    match owner {
        Owner::App { app_id } => format!("app/{app_id}"),
        Owner::Actor { actor_type, actor_id } => format!("actor/{actor_type}/{actor_id}"),
    }
}

fn schedule_text(spec: &JobSpec) -> String {
    match (&spec.schedule, &spec.due_time) {
        (Some(s), _) => s.clone(),
        (None, Some(d)) => format!("once at {d}"),
        (None, None) => "-".into(),
    }
}

/// The command line's name of a state (as `--state` takes it); `-` for unspecified.
fn state_name(state: WireState) -> &'static str {
    state_from_wire(state.into()).ok().flatten().map_or("-", JobState::as_str)
}

fn outcome_name(outcome: WireOutcome) -> &'static str {
    outcome_from_wire(outcome.into()).map_or("-", TriggerOutcome::as_str)
}

/// An instant from the wire, RFC 3339 (or what was wrong with it).
fn wire_time(t: &prost_types::Timestamp) -> String {
    Timestamp::new(t.seconds, t.nanos)
        .map_or_else(|_| format!("{}s{}ns", t.seconds, t.nanos), |t| t.to_string())
}

fn wire_duration(d: Option<&prost_types::Duration>) -> Option<SignedDuration> {
    d.map(|d| SignedDuration::new(d.seconds, d.nanos))
}

fn write_status(job: &StoredJob, status: &WireStatus, json: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    let time = |t: Option<&prost_types::Timestamp>| t.map(wire_time);
    let misfire = job.spec.misfire_policy.unwrap_or_default();
    if json {
        let value = serde_json::json!({
            "namespace": job.key.namespace,
            "owner": owner_text(&job.key.owner),
            "name": job.key.name,
            "schedule": schedule_text(&job.spec),
            "state": state_name(status.state()),
            "paused": status.paused,
            "nextFire": time(status.next_fire.as_ref()),
            "lastFire": time(status.last_fire.as_ref()),
            "lastOutcome": (status.last_outcome() != WireOutcome::Unspecified).then(|| outcome_name(status.last_outcome())),
            "ticks": status.ticks,
            "fired": status.fired,
            "successes": status.successes,
            "failures": status.failures,
            "attempt": status.attempt,
            "misfirePolicy": {
                "catchUp": misfire.catch_up.as_str(),
                "window": misfire.window.map(|w| format!("{w:#}")),
            },
        });
        writeln!(out, "{value}")?;
        return Ok(());
    }
    let window = misfire.window.map_or_else(String::new, |w| format!(", window {w:#}"));
    let rows = [
        ("job", printable(&format!("{}", job.key))),
        ("schedule", printable(&schedule_text(&job.spec))),
        ("state", state_name(status.state()).into()),
        ("next fire", time(status.next_fire.as_ref()).unwrap_or_else(|| "-".into())),
        ("last fire", time(status.last_fire.as_ref()).unwrap_or_else(|| "-".into())),
        ("last outcome", outcome_name(status.last_outcome()).into()),
        ("ticks", status.ticks.to_string()),
        ("attempt", status.attempt.to_string()),
        ("fired", status.fired.to_string()),
        ("successes", status.successes.to_string()),
        ("failures", status.failures.to_string()),
        ("misfire", format!("{}{window}", misfire.catch_up.as_str())),
    ];
    for (name, value) in rows {
        writeln!(out, "{:<14}{value}", format!("{name}:"))?;
    }
    Ok(())
}

fn write_history(records: &[WireRecord], json: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    let time = |t: Option<&prost_types::Timestamp>| t.map_or_else(|| "-".into(), wire_time);
    let lateness =
        |r: &WireRecord| wire_duration(r.lateness.as_ref()).map_or_else(|| "-".into(), |d| format!("{d:#}"));
    if json {
        for r in records {
            let value = serde_json::json!({
                "tick": time(r.tick.as_ref()),
                "firedAt": time(r.fired_at.as_ref()),
                "answeredAt": time(r.answered_at.as_ref()),
                "attempt": r.attempt,
                "outcome": outcome_name(r.outcome()),
                "manual": r.manual,
                "lateness": lateness(r),
            });
            writeln!(out, "{value}")?;
        }
        return Ok(());
    }
    let header = ["TICK", "FIRED AT", "ANSWERED AT", "ATTEMPT", "OUTCOME", "KIND", "LATENESS"];
    let rows: Vec<[String; 7]> = records
        .iter()
        .map(|r| {
            [
                time(r.tick.as_ref()),
                time(r.fired_at.as_ref()),
                time(r.answered_at.as_ref()),
                r.attempt.to_string(),
                outcome_name(r.outcome()).into(),
                if r.manual { "manual" } else { "scheduled" }.into(),
                lateness(r),
            ]
        })
        .collect();
    write_columns(&header, &rows, out)?;
    writeln!(out, "{} records", rows.len())?;
    Ok(())
}

/// A table: the header, then each row, columns padded to their widest cell.
fn write_columns<const N: usize>(
    header: &[&str; N],
    rows: &[[String; N]],
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(cell);
                s.push_str(&" ".repeat(w - cell.chars().count() + 2));
            }
        }
        s
    };
    writeln!(out, "{}", line(&header.map(String::from)))?;
    for row in rows {
        writeln!(out, "{}", line(row))?;
    }
    Ok(())
}

/// Control characters would break the table (names may hold any but a few); show them escaped.
fn printable(cell: &str) -> String {
    if cell.chars().any(char::is_control) { cell.escape_debug().to_string() } else { cell.to_owned() }
}

/// One export line: a job's key, its spec exactly as stored, its timeline and progress.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[serde(expecting = "a job line (a JSON object)")]
struct Line {
    format: String,
    namespace: String,
    owner: OwnerLine,
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    schedule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    repeats: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    due_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ttl: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data: Option<DataLine>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    failure_policy: Option<PolicyLine>,
    /// RFC 3339 in UTC with every nanosecond the instant has.
    created: String,
    count: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_scheduled: Option<String>,
    attempts: u32,
    next_due: String,
    /// A kairos extension (absent in older exports: Dapr's behaviour, every missed tick).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    misfire_policy: Option<MisfireLine>,
    /// A kairos extension (absent in older exports: not paused).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    paused: bool,
    /// A kairos extension (absent in older exports: zero counters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    counters: Option<CountersLine>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[serde(expecting = "a misfirePolicy object")]
struct MisfireLine {
    /// `all`, `once` or `skip`.
    catch_up: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    window: Option<DurationLine>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[serde(expecting = "a counters object")]
struct CountersLine {
    fired: u64,
    successes: u64,
    failures: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_fire: Option<String>,
    /// `success`, `failed`, `dropped` or `undeliverable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_outcome: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
enum OwnerLine {
    App(String),
    Actor {
        #[serde(rename = "type")]
        actor_type: String,
        id: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[serde(expecting = "a data object ({\"typeUrl\", \"value\"})")]
struct DataLine {
    type_url: String,
    /// The payload bytes, standard base64.
    value: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
enum PolicyLine {
    Drop {},
    Constant {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        interval: Option<DurationLine>,
        #[serde(default, skip_serializing_if = "Option::is_none", rename = "maxRetries")]
        max_retries: Option<u32>,
    },
    /// A kairos extension; ratios in millionths, exact.
    #[serde(rename_all = "camelCase")]
    Exponential {
        initial_interval: DurationLine,
        multiplier_millionths: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_interval: Option<DurationLine>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_retries: Option<u32>,
        jitter_millionths: u32,
    },
}

/// A duration as seconds and nanoseconds of the same sign: exact, unlike a decimal string.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(expecting = "a duration object ({\"seconds\", \"nanos\"})")]
struct DurationLine {
    seconds: i64,
    nanos: i32,
}

impl Line {
    fn of(job: &StoredJob) -> Line {
        let spec = &job.spec;
        Line {
            format: FORMAT.into(),
            namespace: job.key.namespace.clone(),
            owner: match &job.key.owner {
                Owner::App { app_id } => OwnerLine::App(app_id.clone()),
                Owner::Actor { actor_type, actor_id } => {
                    OwnerLine::Actor { actor_type: actor_type.clone(), id: actor_id.clone() }
                }
            },
            name: job.key.name.clone(),
            schedule: spec.schedule.clone(),
            repeats: spec.repeats,
            due_time: spec.due_time.clone(),
            ttl: spec.ttl.clone(),
            data: spec.data.as_ref().map(|p| DataLine {
                type_url: p.type_url.clone(),
                value: base64::engine::general_purpose::STANDARD.encode(&p.value),
            }),
            failure_policy: spec.failure_policy.as_ref().map(|p| match p {
                FailurePolicy::Drop => PolicyLine::Drop {},
                FailurePolicy::Constant { interval, max_retries } => PolicyLine::Constant {
                    interval: interval
                        .map(|d| DurationLine { seconds: d.as_secs(), nanos: d.subsec_nanos() }),
                    max_retries: *max_retries,
                },
                FailurePolicy::Exponential(e) => PolicyLine::Exponential {
                    initial_interval: DurationLine {
                        seconds: e.initial_interval.as_secs(),
                        nanos: e.initial_interval.subsec_nanos(),
                    },
                    multiplier_millionths: e.multiplier.millionths(),
                    max_interval: e
                        .max_interval
                        .map(|d| DurationLine { seconds: d.as_secs(), nanos: d.subsec_nanos() }),
                    max_retries: e.max_retries,
                    jitter_millionths: e.jitter.millionths(),
                },
            }),
            created: job.created.to_string(),
            count: job.progress.count,
            last_scheduled: job.progress.last_scheduled.map(|t| t.to_string()),
            attempts: job.progress.attempts,
            next_due: job.next_due.to_string(),
            misfire_policy: spec.misfire_policy.map(|m| MisfireLine {
                catch_up: m.catch_up.as_str().into(),
                window: m.window.map(|d| DurationLine { seconds: d.as_secs(), nanos: d.subsec_nanos() }),
            }),
            paused: job.paused,
            counters: (job.stats != JobStats::default()).then(|| CountersLine {
                fired: job.stats.fired,
                successes: job.stats.successes,
                failures: job.stats.failures,
                last_fire: job.stats.last_fired.map(|t| t.to_string()),
                last_outcome: job.stats.last_outcome.map(|o| o.as_str().into()),
            }),
        }
    }

    fn into_job(self) -> anyhow::Result<StoredJob> {
        if self.format != FORMAT {
            bail!("format {:?} is not {FORMAT:?} (export with a matching kairos)", self.format);
        }
        let owner = match self.owner {
            OwnerLine::App(app_id) => Owner::app(app_id),
            OwnerLine::Actor { actor_type, id } => Owner::actor(actor_type, id),
        };
        let data = match self.data {
            None => None,
            Some(d) => Some(Payload {
                type_url: d.type_url,
                value: base64::engine::general_purpose::STANDARD
                    .decode(d.value.as_bytes())
                    .context("data.value is not standard base64")?,
            }),
        };
        let failure_policy = match self.failure_policy {
            None => None,
            Some(PolicyLine::Drop {}) => Some(FailurePolicy::Drop),
            Some(PolicyLine::Constant { interval, max_retries }) => {
                Some(FailurePolicy::Constant { interval: interval.map(duration).transpose()?, max_retries })
            }
            Some(PolicyLine::Exponential {
                initial_interval,
                multiplier_millionths,
                max_interval,
                max_retries,
                jitter_millionths,
            }) => Some(FailurePolicy::Exponential(kairos_core::Exponential {
                initial_interval: duration(initial_interval)?,
                multiplier: kairos_core::Ratio::from_millionths(multiplier_millionths),
                max_interval: max_interval.map(duration).transpose()?,
                max_retries,
                jitter: kairos_core::Ratio::from_millionths(jitter_millionths),
            })),
        };
        let misfire_policy = match self.misfire_policy {
            None => None,
            Some(m) => {
                let policy = MisfirePolicy {
                    catch_up: m.catch_up.parse().map_err(|e| anyhow::anyhow!("misfirePolicy: {e}"))?,
                    window: m.window.map(duration).transpose()?,
                };
                policy.validate().map_err(|e| anyhow::anyhow!("misfirePolicy: {e}"))?;
                Some(policy)
            }
        };
        let stats = match self.counters {
            None => JobStats::default(),
            Some(c) => JobStats {
                last_fired: c.last_fire.as_deref().map(|t| instant("counters.lastFire", t)).transpose()?,
                last_outcome: match c.last_outcome.as_deref() {
                    None => None,
                    Some("success") => Some(TriggerOutcome::Success),
                    Some("failed") => Some(TriggerOutcome::Failed),
                    Some("dropped") => Some(TriggerOutcome::Dropped),
                    Some("undeliverable") => Some(TriggerOutcome::Undeliverable),
                    Some(other) => bail!("counters.lastOutcome {other:?} is not a known outcome"),
                },
                fired: c.fired,
                successes: c.successes,
                failures: c.failures,
                records: 0,
            },
        };
        Ok(StoredJob {
            key: JobKey { namespace: self.namespace, owner, name: self.name },
            spec: JobSpec {
                schedule: self.schedule,
                repeats: self.repeats,
                due_time: self.due_time,
                ttl: self.ttl,
                data,
                failure_policy,
                misfire_policy,
            },
            created: instant("created", &self.created)?,
            incarnation: 0,
            version: 0,
            progress: Progress {
                count: self.count,
                last_scheduled: self
                    .last_scheduled
                    .as_deref()
                    .map(|t| instant("lastScheduled", t))
                    .transpose()?,
                attempts: self.attempts,
            },
            next_due: instant("nextDue", &self.next_due)?,
            // An import is staged again by its partition if its app has no sidecar connected.
            staged: false,
            paused: self.paused,
            stats,
            // History is not exported: an import starts with none.
            manual: Vec::new(),
        })
    }
}

fn instant(field: &str, text: &str) -> anyhow::Result<Timestamp> {
    text.parse().with_context(|| format!("{field} {text:?} is not an RFC 3339 instant"))
}

fn duration(d: DurationLine) -> anyhow::Result<SignedDuration> {
    let mixed_sign = (d.seconds > 0 && d.nanos < 0) || (d.seconds < 0 && d.nanos > 0);
    if d.nanos.unsigned_abs() >= 1_000_000_000 || mixed_sign {
        bail!("duration {}s {}ns is out of range", d.seconds, d.nanos);
    }
    Ok(SignedDuration::new(d.seconds, d.nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_states_and_outcomes_print_by_their_command_line_names() {
        use {WireOutcome as O, WireState as S};
        let states = [S::Unspecified, S::Scheduled, S::Paused, S::WaitingForApp, S::Retrying, S::Finished];
        assert_eq!(
            states.map(state_name),
            ["-", "scheduled", "paused", "waiting-for-app", "retrying", "finished"]
        );
        let outcomes = [O::Unspecified, O::Success, O::Failed, O::Dropped, O::Undeliverable];
        assert_eq!(outcomes.map(outcome_name), ["-", "success", "failed", "dropped", "undeliverable"]);
    }

    fn job(spec: JobSpec, progress: Progress) -> StoredJob {
        StoredJob {
            key: JobKey {
                namespace: "ns".into(),
                owner: Owner::actor("T", "id-1"),
                name: "my||job@x".into(),
            },
            spec,
            created: Timestamp::new(1_700_000_000, 123_456_789).unwrap(),
            incarnation: 0,
            version: 0,
            progress,
            next_due: Timestamp::new(1_700_000_010, 1).unwrap(),
            staged: false,
            paused: false,
            stats: kairos_core::JobStats::default(),
            manual: Vec::new(),
        }
    }

    #[test]
    fn export_line_round_trips_every_field_exactly() {
        let cases = [
            job(
                JobSpec {
                    schedule: Some("@every 1s".into()),
                    repeats: Some(0),
                    due_time: Some(String::new()),
                    ttl: Some("P1D".into()),
                    data: Some(Payload { type_url: "t".into(), value: vec![0, 255, 10, 13] }),
                    failure_policy: Some(FailurePolicy::Constant {
                        interval: Some(SignedDuration::new(-3, -5)),
                        max_retries: None,
                    }),
                    misfire_policy: None,
                },
                Progress { count: 7, last_scheduled: Some(Timestamp::new(-5, -1).unwrap()), attempts: 2 },
            ),
            job(
                JobSpec {
                    failure_policy: Some(FailurePolicy::Drop),
                    data: Some(Payload::default()),
                    ..JobSpec::default()
                },
                Progress::default(),
            ),
            job(JobSpec::default(), Progress::default()),
            StoredJob {
                paused: true,
                stats: JobStats {
                    last_fired: Some(Timestamp::new(1_700_000_005, 7).unwrap()),
                    last_outcome: Some(TriggerOutcome::Dropped),
                    fired: 9,
                    successes: 4,
                    failures: 5,
                    records: 0,
                },
                ..job(
                    JobSpec {
                        schedule: Some("@every 1m".into()),
                        misfire_policy: Some(MisfirePolicy {
                            catch_up: kairos_core::CatchUp::Once,
                            window: Some(SignedDuration::from_secs(3600)),
                        }),
                        ..JobSpec::default()
                    },
                    Progress::default(),
                )
            },
        ];
        for original in cases {
            let text = serde_json::to_string(&Line::of(&original)).unwrap();
            let back: Line = serde_json::from_str(&text).unwrap();
            assert_eq!(back.into_job().unwrap(), original, "{text}");
        }
    }

    #[test]
    fn an_export_line_without_the_steering_fields_imports_unpaused_with_defaults() {
        let old = r#"{"format":"kairos.jobs/v1","namespace":"ns","owner":{"app":"a"},"name":"j","schedule":"@every 1s","created":"2026-03-01T10:00:00Z","count":3,"attempts":0,"nextDue":"2026-03-01T10:00:04Z"}"#;
        let job = serde_json::from_str::<Line>(old).unwrap().into_job().unwrap();
        assert!(!job.paused);
        assert_eq!(job.stats, JobStats::default());
        assert_eq!(job.spec.misfire_policy, None);
        let bad = format!(r#"{},"misfirePolicy":{{"catchUp":"sometimes"}}}}"#, &old[..old.len() - 1]);
        let err = serde_json::from_str::<Line>(&bad).unwrap().into_job().unwrap_err();
        assert!(err.to_string().contains("misfirePolicy"), "{err}");
    }

    #[test]
    fn a_part_of_the_wrong_type_is_named_by_what_it_should_be() {
        let fields = r#""format":"kairos.jobs/v1","namespace":"ns","owner":{"app":"a"},"name":"j","schedule":"@every 1s","created":"2026-03-01T10:00:00Z","count":3,"attempts":0,"nextDue":"2026-03-01T10:00:04Z""#;
        let with = |extra: &str| format!("{{{fields}{extra}}}");
        for (line, expected) in [
            ("[]".to_owned(), "expected a job line (a JSON object)"),
            (with(r#","data":[]"#), "expected a data object"),
            (with(r#","failurePolicy":{"constant":{"interval":"1s"}}"#), "expected a duration object"),
            (with(r#","misfirePolicy":true"#), "expected a misfirePolicy object"),
            (with(r#","counters":"x""#), "expected a counters object"),
        ] {
            let err = serde_json::from_str::<Line>(&line).unwrap_err().to_string();
            assert!(err.contains(expected), "{line}: {err}");
            assert!(!err.contains("struct") && !err.contains("enum"), "{line}: {err}");
        }
        assert!(serde_json::from_str::<Line>(&with("")).is_ok());
    }

    #[test]
    fn line_of_another_format_or_with_unknown_fields_is_refused() {
        let original = job(JobSpec::default(), Progress::default());
        let mut line = Line::of(&original);
        line.format = "kairos.jobs/v2".into();
        let text = serde_json::to_string(&line).unwrap();
        let parsed: Line = serde_json::from_str(&text).unwrap();
        assert!(parsed.into_job().unwrap_err().to_string().contains("kairos.jobs/v2"));
        let text = serde_json::to_string(&Line::of(&original)).unwrap().replacen('{', r#"{"extra":1,"#, 1);
        assert!(serde_json::from_str::<Line>(&text).is_err());
    }
}
