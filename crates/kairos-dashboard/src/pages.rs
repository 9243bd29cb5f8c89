//! The pages: overview, jobs, one job, the confirmation of an action, and the login form.
//!
//! A page asked with `fragment=1` answers only its live part (what the embedded script swaps
//! in every two seconds).

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use jiff::{SignedDuration, Timestamp};
use kairos_core::timeline::next_tick;
use kairos_core::{FailurePolicy, JobKey, JobSpec, JobState, JobStatus, Owner, Progress, TriggerRecord};
use kairos_engine::EngineError;
use kairos_store::StoredJob;
use kairos_store::keys::{decode_key, encode_key};
use serde::Deserialize;

use crate::html::{self, esc, hex, span, state_badge, time, time_rel, unhex, url};
use crate::listing::{self, Filter, Sort};
use crate::stats::STATES;
use crate::{Dashboard, TOKEN_COOKIE};

/// Jobs per page unless asked otherwise, and at most.
pub const PAGE_SIZE: usize = 50;
pub const MAX_PAGE_SIZE: usize = 500;
/// Most jobs one jobs page reads while filtering, and for how long at most.
pub const READ_BUDGET: usize = 20_000;
pub const READ_TIME: SignedDuration = SignedDuration::from_millis(30);
/// Fire times shown on a job's page.
pub const NEXT_FIRES: usize = 10;
/// History records shown on a job's page.
pub const HISTORY_SHOWN: usize = 50;

type Dash = State<Arc<Dashboard>>;

fn html_page(dash: &Dashboard, title: &str, nav: &str, body: &str) -> Response {
    Html(html::page(&dash.frame(title, nav), body)).into_response()
}

/// A form posted from another origin, or with another process's CSRF token, refused with
/// FORBIDDEN on the page `page` draws.
fn refuse_stale_form(
    dash: &Dashboard,
    headers: &HeaderMap,
    csrf: &str,
    page: fn(&Dashboard, StatusCode, &str) -> Response,
) -> Option<Response> {
    let refusal = "refused: the form is stale or came from another site; reload the page";
    (!dash.same_origin(headers, csrf)).then(|| page(dash, StatusCode::FORBIDDEN, refusal))
}

fn error_page(dash: &Dashboard, status: StatusCode, message: &str) -> Response {
    let body = format!("<h1>{}</h1><p class=\"error\">{}</p>", status.as_u16(), esc(message));
    (status, html_page(dash, "error", "", &body)).into_response()
}

/// Whether the request wants only the live fragment.
#[derive(Debug, Deserialize, Default)]
pub struct FragmentQuery {
    #[serde(default)]
    fragment: Option<String>,
}

impl FragmentQuery {
    fn wanted(&self) -> bool {
        self.fragment.as_deref() == Some("1")
    }
}

fn live(src: &str, inner: &str) -> String {
    format!("<div class=\"live\" data-live=\"{}\">{inner}</div>", esc(src))
}

// ------------------------------------------------------------------------------------------
// Overview

/// `GET /`: counts, rates, lateness, and the jobs by app and state.
pub async fn overview(State(dash): Dash, Query(q): Query<FragmentQuery>) -> Response {
    let inner = match overview_inner(&dash).await {
        Ok(inner) => inner,
        Err(err) => return error_page(&dash, StatusCode::SERVICE_UNAVAILABLE, &err.to_string()),
    };
    if q.wanted() {
        return Html(inner).into_response();
    }
    let body = format!("<h1>Overview</h1>{}", live("/?fragment=1", &inner));
    html_page(&dash, "Overview", "overview", &body)
}

async fn overview_inner(dash: &Dashboard) -> Result<String, EngineError> {
    let engine = &dash.config.engine;
    let stored = engine.store().count().await?;
    let staged = engine.staged_count().await?;
    let router = engine.router_stats();
    let rates = dash.samples.rates();
    let mut out = String::from("<section class=\"cards\">");
    let card = |out: &mut String, label: &str, value: &str, note: &str| {
        let _ = write!(
            out,
            "<div class=\"card\"><div class=\"label\">{label}</div><div class=\"value\">{value}</div><div class=\"note\">{note}</div></div>"
        );
    };
    card(&mut out, "Jobs stored", &stored.to_string(), "every app and actor");
    card(
        &mut out,
        "Waiting for app",
        &staged.to_string(),
        "staged: due while no sidecar of their app was connected",
    );
    card(
        &mut out,
        "In flight",
        &router.in_flight().to_string(),
        &format!("sidecar job streams connected: {}", router.subscribers),
    );
    let late = Filter { due_before: Some(late_before(dash.config.clock.now())), ..Filter::default() };
    let budget = listing::Budget { jobs: LATE_COUNTED, time: READ_TIME, clock: dash.config.clock.as_ref() };
    match listing::page(engine.store(), &late, Sort::Next, None, LATE_COUNTED, budget).await {
        Ok(page) => {
            let n = page.rows.len();
            let more = if page.next.is_some() { "+" } else { "" };
            card(
                &mut out,
                "Late now",
                &format!("<a href=\"/jobs?late=1\" id=\"late\">{n}{more}</a>"),
                "due more than 1 s ago and not fired yet (staged and paused jobs aside)",
            );
        }
        Err(err) => card(&mut out, "Late now", "?", &esc(&err.to_string())),
    }
    if dash.config.metrics.is_some() {
        let total: f64 = rates
            .per_second
            .iter()
            .filter(|(r, _)| r.as_str() != "staged")
            .map(|(_, v)| v)
            .fold(0.0, |a, b| a + b);
        let over = if rates.over > SignedDuration::ZERO {
            format!("over the last {}", span(rates.over))
        } else {
            "measuring…".into()
        };
        card(&mut out, "Triggers / s", &format!("{total:.1}"), &over);
        let pct = |p: Option<f64>| p.map_or_else(|| "–".to_owned(), seconds);
        let lat_over = if rates.lateness_over > SignedDuration::ZERO {
            format!("over the last {}", span(rates.lateness_over))
        } else {
            "measuring…".into()
        };
        card(
            &mut out,
            "Lateness p50 / p99",
            &format!("{} / {}", pct(rates.p50), pct(rates.p99)),
            &format!("bucket upper bounds, {lat_over}"),
        );
        card(
            &mut out,
            "Failures",
            &format!("{:.0}", rates.failures),
            &format!("failed or dropped attempts, {lat_over}"),
        );
    }
    out.push_str("</section>");
    if !rates.per_second.is_empty() {
        out.push_str("<h2>Triggers by result</h2><table class=\"grid\"><thead><tr><th>result</th><th>per second</th></tr></thead><tbody>");
        for (result, rate) in &rates.per_second {
            let _ = write!(out, "<tr><td>{}</td><td class=\"num\">{rate:.2}</td></tr>", esc(result));
        }
        out.push_str("</tbody></table>");
    }
    out.push_str("<h2>Jobs by app and state</h2>");
    match dash.census.request() {
        None => out.push_str("<p class=\"muted\">Counting the stored jobs…</p>"),
        Some(count) => {
            let now = dash.config.clock.now();
            let _ = write!(
                out,
                "<p class=\"muted\">{} jobs counted {} (took {}); counted again at most every {}, and no \
                 sooner than ten times as long as a count takes.</p>",
                count.total,
                count.at.map_or_else(String::new, |at| time_rel(at, now)),
                span(count.took),
                span(crate::stats::CENSUS_EVERY)
            );
            out.push_str("<table class=\"grid\"><thead><tr><th>namespace</th><th>app / actor type</th>");
            for state in STATES {
                let _ = write!(out, "<th>{}</th>", state.as_str());
            }
            out.push_str("<th>total</th></tr></thead><tbody>");
            for ((ns, kind, owner), states) in &count.by_owner {
                let total: u64 = states.values().sum();
                let base = format!("/jobs?ns={}&app={}", url(ns), url(owner));
                let kind = if *kind == "actor" { " <span class=\"muted\">(actor)</span>" } else { "" };
                let _ = write!(
                    out,
                    "<tr><td>{}</td><td><a href=\"{}\">{}</a>{kind}</td>",
                    esc(ns),
                    esc(&base),
                    esc(owner)
                );
                for state in STATES {
                    let n = states.get(state.as_str()).copied().unwrap_or(0);
                    let _ = write!(
                        out,
                        "<td class=\"num\"><a href=\"{}\">{n}</a></td>",
                        esc(&format!("{base}&state={}&sort={}", state.as_str(), sort_for(Some(state))))
                    );
                }
                let _ = write!(out, "<td class=\"num\">{total}</td></tr>");
            }
            out.push_str("</tbody></table>");
        }
    }
    Ok(out)
}

/// Jobs due before this are late: due more than the misfire threshold ago and not fired.
fn late_before(now: Timestamp) -> Timestamp {
    now.checked_sub(kairos_core::misfire::MISFIRE_THRESHOLD).unwrap_or(now)
}

/// Most late jobs the overview counts.
const LATE_COUNTED: usize = 500;

fn seconds(s: f64) -> String {
    if s.is_infinite() {
        "> 60 s".into()
    } else if s < 1.0 {
        format!("{:.1} ms", s * 1000.0)
    } else {
        format!("{s:.1} s")
    }
}

/// Staged jobs are not in the due index: they are listed by name.
fn sort_for(state: Option<JobState>) -> &'static str {
    if state == Some(JobState::WaitingForApp) { "name" } else { "next" }
}

// ------------------------------------------------------------------------------------------
// Jobs

/// The jobs page's query.
#[derive(Debug, Deserialize, Default)]
pub struct JobsQuery {
    #[serde(default)]
    ns: String,
    #[serde(default)]
    app: String,
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    sort: String,
    /// `1`: only jobs late now.
    #[serde(default)]
    late: String,
    #[serde(default)]
    after: String,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    flash: String,
    #[serde(default)]
    fragment: Option<String>,
}

impl JobsQuery {
    fn filter(&self, now: Timestamp) -> Result<Filter, String> {
        let state = match self.state.as_str() {
            "" => None,
            s => Some(s.parse::<JobState>().map_err(|e| e.to_string())?),
        };
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        Ok(Filter {
            namespace: opt(&self.ns),
            app: opt(&self.app),
            prefix: self.prefix.clone(),
            state,
            due_before: (self.late == "1").then(|| late_before(now)),
        })
    }

    fn sort(&self) -> Result<Sort, String> {
        match self.sort.as_str() {
            "" | "next" => Ok(Sort::Next),
            "name" => Ok(Sort::Name),
            other => Err(format!("invalid sort {other:?}: expected next or name")),
        }
    }

    /// This query's URL with `after` replaced.
    fn href(&self, after: Option<&str>, fragment: bool) -> String {
        let mut out = String::from("/jobs?");
        for (k, v) in [
            ("ns", &self.ns),
            ("app", &self.app),
            ("prefix", &self.prefix),
            ("state", &self.state),
            ("sort", &self.sort),
            ("late", &self.late),
        ] {
            if !v.is_empty() {
                let _ = write!(out, "{k}={}&", url(v));
            }
        }
        if let Some(limit) = self.limit {
            let _ = write!(out, "limit={limit}&");
        }
        if let Some(after) = after.filter(|a| !a.is_empty()) {
            let _ = write!(out, "after={}&", url(after));
        }
        if fragment {
            out.push_str("fragment=1&");
        }
        out.pop();
        out
    }
}

/// `GET /jobs`: one page of jobs, filtered, by next fire or by name.
pub async fn jobs(State(dash): Dash, Query(q): Query<JobsQuery>) -> Response {
    let (filter, sort) = match (q.filter(dash.config.clock.now()), q.sort()) {
        (Ok(f), Ok(s)) => (f, s),
        (Err(e), _) | (_, Err(e)) => return error_page(&dash, StatusCode::BAD_REQUEST, &e),
    };
    let limit = q.limit.unwrap_or(PAGE_SIZE).clamp(1, MAX_PAGE_SIZE);
    let after = (!q.after.is_empty()).then_some(q.after.as_str());
    let budget = listing::Budget { jobs: READ_BUDGET, time: READ_TIME, clock: dash.config.clock.as_ref() };
    let page = match listing::page(dash.config.engine.store(), &filter, sort, after, limit, budget).await {
        Ok(page) => page,
        Err(listing::ListError::Cursor(c)) => {
            return error_page(&dash, StatusCode::BAD_REQUEST, &format!("invalid page cursor {c:?}"));
        }
        Err(err) => return error_page(&dash, StatusCode::SERVICE_UNAVAILABLE, &err.to_string()),
    };
    let inner = jobs_table(&dash, &q, sort, &page);
    if q.fragment.as_deref() == Some("1") {
        return Html(inner).into_response();
    }
    let mut body = String::from("<h1>Jobs</h1>");
    if !q.flash.is_empty() {
        let _ = write!(body, "<p class=\"flash ok\" id=\"flash\">{}</p>", esc(&q.flash));
    }
    body.push_str(&filter_form(&q, sort));
    body.push_str(&live(&q.href(after, true), &inner));
    html_page(&dash, "Jobs", "jobs", &body)
}

fn filter_form(q: &JobsQuery, sort: Sort) -> String {
    let mut states = String::from("<option value=\"\">any state</option>");
    for state in STATES {
        let selected = if q.state == state.as_str() { " selected" } else { "" };
        let _ = write!(states, "<option value=\"{0}\"{selected}>{0}</option>", state.as_str());
    }
    let sorted = |s: Sort| if s == sort { " selected" } else { "" };
    format!(
        "<form method=\"get\" action=\"/jobs\" class=\"filters\">\
         <label>namespace <input name=\"ns\" value=\"{ns}\" placeholder=\"any\"></label>\
         <label>app / actor type <input name=\"app\" value=\"{app}\" placeholder=\"any\"></label>\
         <label>name prefix <input name=\"prefix\" value=\"{prefix}\"></label>\
         <label>state <select name=\"state\">{states}</select></label>\
         <label>sort <select name=\"sort\"><option value=\"next\"{next}>next fire</option><option value=\"name\"{name}>name</option></select></label>\
         <label class=\"check\"><span><input type=\"checkbox\" name=\"late\" value=\"1\"{late}> late only</span></label>\
         <button type=\"submit\" id=\"apply\">Apply</button> <a href=\"/jobs\">clear</a></form>",
        ns = esc(&q.ns),
        app = esc(&q.app),
        prefix = esc(&q.prefix),
        next = sorted(Sort::Next),
        name = sorted(Sort::Name),
        late = if q.late == "1" { " checked" } else { "" },
    )
}

fn owner_text(key: &JobKey) -> String {
    match &key.owner {
        Owner::App { app_id } => esc(app_id),
        Owner::Actor { actor_type, actor_id } => {
            format!("{} <span class=\"muted\">actor {}</span>", esc(actor_type), esc(actor_id))
        }
    }
}

fn job_href(key: &JobKey) -> String {
    encode_key(key).map(|k| format!("/job/{}", hex(&k))).unwrap_or_default()
}

fn next_fire_text(status: &JobStatus, job: &StoredJob, now: Timestamp) -> String {
    match status.state {
        JobState::Paused => "<span class=\"muted\">paused</span>".into(),
        JobState::Finished => "<span class=\"muted\">none</span>".into(),
        _ => time_rel(job.next_due, now),
    }
}

fn jobs_table(dash: &Dashboard, q: &JobsQuery, sort: Sort, page: &listing::Page) -> String {
    let now = dash.config.clock.now();
    let mut out = String::new();
    if page.rows.is_empty() {
        out.push_str("<p class=\"empty\">No job matches.</p>");
    } else {
        out.push_str(
            "<table class=\"grid jobs\" id=\"jobs\"><thead><tr><th>name</th><th>namespace</th><th>app / actor</th>\
             <th>state</th><th>next fire</th><th>last fire</th><th>last outcome</th><th class=\"num\">fired</th>\
             <th class=\"num\">failed</th></tr></thead><tbody>",
        );
        for row in &page.rows {
            let (job, status) = (&row.job, &row.status);
            let _ = write!(
                out,
                "<tr data-job=\"{name}\"><td><a class=\"job-link\" href=\"{href}\">{name}</a></td><td>{ns}</td><td>{owner}</td>\
                 <td>{state}</td><td>{next}</td><td>{last}</td><td>{outcome}</td><td class=\"num\">{fired}</td><td class=\"num\">{failed}</td></tr>",
                name = esc(&job.key.name),
                href = esc(&job_href(&job.key)),
                ns = esc(&job.key.namespace),
                owner = owner_text(&job.key),
                state = state_badge(status.state.as_str()),
                next = next_fire_text(status, job, now),
                last = status
                    .last_fire
                    .map_or_else(|| "<span class=\"muted\">never</span>".into(), |t| time_rel(t, now)),
                outcome = status
                    .last_outcome
                    .map_or_else(|| "<span class=\"muted\">–</span>".into(), |o| outcome_badge(o.as_str())),
                fired = status.fired,
                failed = status.failures,
            );
        }
        out.push_str("</tbody></table>");
    }
    let _ = write!(
        out,
        "<p class=\"pager\"><span class=\"muted\">{} shown, {} read",
        page.rows.len(),
        page.scanned
    );
    if page.budget_hit {
        let _ = write!(
            out,
            "; a page reads at most {READ_BUDGET} jobs for {}: continue for more",
            span(READ_TIME)
        );
    }
    out.push_str("</span>");
    if !q.after.is_empty() {
        let _ = write!(out, " <a href=\"{}\">first page</a>", esc(&q.href(None, false)));
    }
    if let Some(next) = &page.next {
        let _ =
            write!(out, " <a id=\"next-page\" href=\"{}\">next page →</a>", esc(&q.href(Some(next), false)));
    }
    out.push_str("</p>");
    if sort == Sort::Next {
        out.push_str(
            "<p class=\"muted\">By next fire: jobs waiting for their app (staged) are not in the due index; \
             list them by name (sort: name, state: waiting-for-app).</p>",
        );
    }
    out
}

fn outcome_badge(outcome: &str) -> String {
    format!("<span class=\"badge oc-{0}\">{0}</span>", esc(outcome))
}

// ------------------------------------------------------------------------------------------
// One job

/// A job page's query.
#[derive(Debug, Deserialize, Default)]
pub struct JobQuery {
    #[serde(default)]
    done: String,
    #[serde(default)]
    error: String,
    #[serde(default)]
    fragment: Option<String>,
}

fn key_of(hex_key: &str) -> Option<JobKey> {
    decode_key(&unhex(hex_key)?).ok()
}

/// `GET /job/{key}`: the job's spec in words, status, next fires, history and payload.
pub async fn job(State(dash): Dash, Path(hex_key): Path<String>, Query(q): Query<JobQuery>) -> Response {
    let Some(key) = key_of(&hex_key) else {
        return error_page(&dash, StatusCode::BAD_REQUEST, &format!("invalid job key {hex_key:?}"));
    };
    let engine = &dash.config.engine;
    let (job, status) = match engine.status(&key).await {
        Ok(Some(found)) => found,
        Ok(None) => {
            let message = format!("job not found: '{key}' (never created, deleted, or finished)");
            return error_page(&dash, StatusCode::NOT_FOUND, &message);
        }
        Err(err) => return error_page(&dash, StatusCode::SERVICE_UNAVAILABLE, &err.to_string()),
    };
    let history = match engine.history(&key, HISTORY_SHOWN).await {
        Ok(history) => history,
        Err(err) => return error_page(&dash, StatusCode::SERVICE_UNAVAILABLE, &err.to_string()),
    };
    let inner = job_live(&dash, &job, &status, &history);
    if q.fragment.as_deref() == Some("1") {
        return Html(inner).into_response();
    }
    let mut body = format!(
        "<p class=\"crumbs\"><a href=\"/jobs\">Jobs</a> / {ns} / {owner}</p><h1 id=\"job-name\">{name}</h1>",
        ns = esc(&key.namespace),
        owner = owner_text(&key),
        name = esc(&key.name)
    );
    if let Some(message) = done_message(&q.done) {
        let _ = write!(body, "<p class=\"flash ok\" id=\"flash\">{message}</p>");
    }
    if !q.error.is_empty() {
        let _ = write!(body, "<p class=\"flash error\" id=\"flash\">{}</p>", esc(&q.error));
    }
    body.push_str(&actions(&dash, &hex_key, &status));
    let _ = write!(
        body,
        "<h2>Schedule</h2><p class=\"words\" id=\"spec-words\">{}</p>",
        esc(&spec_in_words(&dash, &job))
    );
    body.push_str(&spec_table(&job.spec));
    body.push_str(&live(&format!("/job/{hex_key}?fragment=1"), &inner));
    body.push_str("<h2>Payload</h2>");
    body.push_str(&payload(&job.spec));
    html_page(&dash, &key.name, "jobs", &body)
}

/// What the job page says after an action (`?done=ACTION`); a deleted job has no page.
fn done_message(done: &str) -> Option<&'static str> {
    Some(match done.parse::<Action>().ok()? {
        Action::Pause => "Paused: the job fires nothing until it is resumed (its ttl still runs).",
        Action::Resume => {
            "Resumed: the job continues on its schedule, its misfire policy applied to the ticks it missed."
        }
        Action::Trigger => {
            "Triggered: one extra delivery is on its way now; it shows in the history once answered."
        }
        Action::Delete => return None,
    })
}

fn actions(dash: &Dashboard, hex_key: &str, status: &JobStatus) -> String {
    if dash.config.read_only {
        return "<p class=\"muted\">Read-only dashboard: no actions.</p>".into();
    }
    let toggle = if status.paused { ("resume", "Resume") } else { ("pause", "Pause") };
    let mut out = String::from("<div class=\"actions\">");
    for (action, label) in [toggle, ("trigger", "Trigger now"), ("delete", "Delete")] {
        let _ = write!(
            out,
            "<a class=\"button {action}\" id=\"action-{action}\" href=\"/job/{hex_key}/confirm/{action}\">{label}</a>"
        );
    }
    out.push_str("</div>");
    out
}

fn job_live(dash: &Dashboard, job: &StoredJob, status: &JobStatus, history: &[TriggerRecord]) -> String {
    let now = dash.config.clock.now();
    let mut out = String::from("<h2>Status</h2><table class=\"kv\" id=\"status\"><tbody>");
    let mut row = |k: &str, v: String| {
        let _ = write!(out, "<tr><th>{k}</th><td>{v}</td></tr>");
    };
    row("state", state_badge(status.state.as_str()));
    row("next attempt", next_fire_text(status, job, now));
    row("last fire", status.last_fire.map_or_else(|| "never".into(), |t| time_rel(t, now)));
    row("last outcome", status.last_outcome.map_or_else(|| "–".into(), |o| outcome_badge(o.as_str())));
    row("ticks done", status.ticks.to_string());
    row(
        "attempts",
        format!("{} fired, {} succeeded, {} failed", status.fired, status.successes, status.failures),
    );
    if status.attempt > 0 {
        row("current tick", format!("{} failed attempts so far, retrying", status.attempt));
    }
    row("created", time_rel(job.created, now));
    out.push_str("</tbody></table>");

    out.push_str("<h2>Next fire times</h2>");
    let fires = next_fires(dash, job);
    if fires.is_empty() && job.paused {
        out.push_str(
            "<p class=\"muted\">Paused: its upcoming ticks are more than 10,000 ticks past its last one.</p>",
        );
    } else if fires.is_empty() {
        out.push_str("<p class=\"muted\">No tick left.</p>");
    } else {
        if job.paused {
            out.push_str(
                "<p class=\"muted\">Paused: it fires none of these until resumed; missed ticks then follow its \
                 misfire policy.</p>",
            );
        }
        out.push_str("<ol class=\"fires\" id=\"next-fires\">");
        for t in fires {
            let _ = write!(out, "<li>{}</li>", time_rel(t, now));
        }
        out.push_str("</ol>");
    }

    let _ = write!(out, "<h2>History</h2>");
    if history.is_empty() {
        out.push_str("<p class=\"muted\" id=\"history-empty\">No delivery yet.</p>");
    } else {
        out.push_str(
            "<table class=\"grid\" id=\"history\"><thead><tr><th>tick</th><th>fired at</th><th>answered after</th>\
             <th>attempt</th><th>outcome</th><th>lateness</th><th>kind</th></tr></thead><tbody>",
        );
        for r in history.iter().rev() {
            let _ = write!(
                out,
                "<tr class=\"oc-{oc}\"><td>{tick}</td><td>{fired}</td><td>{answered}</td><td class=\"num\">{attempt}</td>\
                 <td>{badge}</td><td class=\"num\">{late}</td><td>{kind}</td></tr>",
                oc = r.outcome.as_str(),
                tick = time(r.tick),
                fired = time(r.fired_at),
                answered = span(r.answered_at.duration_since(r.fired_at)),
                attempt = r.attempt,
                badge = outcome_badge(r.outcome.as_str()),
                late = span(r.lateness()),
                kind = if r.manual { "trigger now" } else { "schedule" },
            );
        }
        out.push_str("</tbody></table>");
    }
    out
}

/// Ticks walked at most to find a paused job's next ones (past ticks are skipped).
const WALK_LIMIT: usize = 10_000;

/// The next [`NEXT_FIRES`] ticks after the job's progress (a retry under way comes first, at
/// its due time). For a paused job: the ticks after now, as they would fire once resumed (the
/// missed ones then follow its misfire policy).
fn next_fires(dash: &Dashboard, job: &StoredJob) -> Vec<Timestamp> {
    let Ok(timing) = job.spec.resolve(job.created, &dash.config.default_tz) else { return Vec::new() };
    let now = dash.config.clock.now();
    let mut out = Vec::with_capacity(NEXT_FIRES);
    let mut progress = job.progress;
    if progress.attempts > 0 && !job.paused {
        out.push(job.next_due);
        progress = Progress { attempts: 0, ..progress };
        if let Some(tick) = next_tick(&timing, &progress) {
            progress =
                Progress { count: progress.count.saturating_add(1), last_scheduled: Some(tick), attempts: 0 };
        }
    }
    for _ in 0..WALK_LIMIT {
        if out.len() == NEXT_FIRES {
            break;
        }
        let Some(tick) = next_tick(&timing, &progress) else { break };
        if !job.paused || tick > now {
            out.push(tick);
        }
        progress =
            Progress { count: progress.count.saturating_add(1), last_scheduled: Some(tick), attempts: 0 };
    }
    out
}

/// The job's spec in one sentence: `every 1s, 7 of 10 left, expires 2026-12-07 12:00:00Z`.
pub fn spec_in_words(dash: &Dashboard, job: &StoredJob) -> String {
    let spec = &job.spec;
    let timing = spec.resolve(job.created, &dash.config.default_tz).ok();
    let mut parts = Vec::new();
    match (&spec.schedule, &spec.due_time) {
        (Some(s), due) => {
            let every = timing.as_ref().and_then(|t| t.schedule.as_ref()).and_then(|s| s.every());
            parts.push(match every {
                Some(d) => format!("every {}", span(d)),
                None => format!("on cron \"{s}\""),
            });
            if due.is_some()
                && let Some(at) = timing.as_ref().and_then(|t| t.due)
            {
                parts.push(format!("first at {}", time(at)));
            }
        }
        (None, Some(_)) => {
            parts.push(match timing.as_ref().and_then(|t| t.due) {
                Some(at) => format!("once at {}", time(at)),
                None => "once".into(),
            });
        }
        (None, None) => parts.push("no schedule".into()),
    }
    if let Some(total) = spec.repeats {
        let left = total.saturating_sub(job.progress.count);
        parts.push(format!("{left} of {total} left"));
    }
    if let Some(expires) = timing.as_ref().and_then(|t| t.expires) {
        parts.push(format!("expires {}", time(expires)));
    }
    if job.paused {
        parts.push("paused".into());
    }
    parts.join(", ")
}

fn spec_table(spec: &JobSpec) -> String {
    let mut out = String::from("<table class=\"kv\" id=\"spec\"><tbody>");
    let mut row = |k: &str, v: &str| {
        let _ = write!(out, "<tr><th>{k}</th><td><code>{}</code></td></tr>", esc(v));
    };
    if let Some(s) = &spec.schedule {
        row("schedule", s);
    }
    if let Some(d) = &spec.due_time {
        row("dueTime", d);
    }
    if let Some(r) = spec.repeats {
        row("repeats", &r.to_string());
    }
    if let Some(t) = &spec.ttl {
        row("ttl", t);
    }
    row("failure policy", &failure_words(spec.failure_policy.as_ref()));
    if let Some(m) = &spec.misfire_policy {
        let window = m.window.map_or_else(String::new, |w| format!(", window {}", span(w)));
        row("misfire policy", &format!("{}{window}", m.catch_up));
    }
    out.push_str("</tbody></table>");
    out
}

fn failure_words(policy: Option<&FailurePolicy>) -> String {
    let times = |n: Option<u32>| n.map_or_else(|| "forever".to_owned(), |n| format!("up to {n} times"));
    match policy {
        None => "default".into(),
        Some(FailurePolicy::Drop) => "drop: no retry".into(),
        Some(FailurePolicy::Constant { interval, max_retries }) => format!(
            "constant: retry every {}, {}",
            span(interval.unwrap_or(SignedDuration::ZERO)),
            times(*max_retries)
        ),
        Some(FailurePolicy::Exponential(e)) => format!(
            "exponential: first retry after {}, ×{} each time{}, {}, jitter {}",
            span(e.initial_interval),
            e.multiplier,
            e.max_interval.map_or_else(String::new, |m| format!(" up to {}", span(m))),
            times(e.max_retries),
            e.jitter
        ),
    }
}

fn payload(spec: &JobSpec) -> String {
    let Some(data) = &spec.data else { return "<p class=\"muted\">No payload.</p>".into() };
    let json = serde_json::to_value(kairos_proto::json::AnyJson::new(&data.type_url, &data.value))
        .ok()
        .map(|v| match v {
            // A well-known type renders as {"@type": …, "value": …}: the type is shown above.
            serde_json::Value::Object(mut o) if o.len() == 2 && o.contains_key("@type") => {
                o.remove("value").unwrap_or_default()
            }
            other => other,
        })
        .and_then(|v| serde_json::to_string_pretty(&v).ok());
    match json {
        Some(text) => format!(
            "<p class=\"muted\">{} · {} bytes</p><pre id=\"payload\">{}</pre>",
            esc(&data.type_url),
            data.value.len(),
            esc(&text)
        ),
        None => format!(
            "<p class=\"muted\">{} · {} bytes (not JSON-renderable)</p><pre id=\"payload\">{}</pre>",
            esc(&data.type_url),
            data.value.len(),
            esc(&hex(&data.value))
        ),
    }
}

// ------------------------------------------------------------------------------------------
// Actions

/// What an action does; its name (`Display`, `FromStr`) is the path segment of its URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::Display, strum::EnumString, strum::VariantArray)]
#[strum(serialize_all = "lowercase")]
enum Action {
    Pause,
    Resume,
    Trigger,
    Delete,
}

impl Action {
    fn question(self) -> &'static str {
        match self {
            Action::Pause => "Pause this job? It fires nothing until resumed; its ttl still runs.",
            Action::Resume => "Resume this job? Ticks it missed while paused follow its misfire policy.",
            Action::Trigger => {
                "Deliver this job once more, now, with its data? It does not count against its repeats."
            }
            Action::Delete => "Delete this job and its history? This cannot be undone.",
        }
    }
}

/// `GET /job/{key}/confirm/{action}`: asks before acting.
pub async fn confirm(State(dash): Dash, Path((hex_key, action)): Path<(String, String)>) -> Response {
    let (Some(key), Some(action)) = (key_of(&hex_key), action.parse::<Action>().ok()) else {
        return error_page(&dash, StatusCode::NOT_FOUND, "no such job or action");
    };
    if dash.config.read_only {
        return error_page(&dash, StatusCode::FORBIDDEN, "the dashboard is read-only");
    }
    let body = format!(
        "<p class=\"crumbs\"><a href=\"/jobs\">Jobs</a> / {ns} / {owner}</p><h1>{name}</h1>\
         <div class=\"confirm\"><p id=\"question\">{question}</p>\
         <form method=\"post\" action=\"/job/{hex_key}/{action}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <button type=\"submit\" id=\"confirm\" class=\"button {action}\">Yes, {action}</button> \
         <a href=\"/job/{hex_key}\" id=\"cancel\">Cancel</a></form></div>",
        ns = esc(&key.namespace),
        owner = owner_text(&key),
        name = esc(&key.name),
        question = action.question(),
        csrf = esc(dash.csrf()),
    );
    html_page(&dash, "Confirm", "jobs", &body)
}

/// An action's form.
#[derive(Debug, Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /job/{key}/{action}`: pause, resume, trigger or delete, then back to the job with the
/// result.
pub async fn act(
    State(dash): Dash,
    Path((hex_key, action)): Path<(String, String)>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Response {
    if let Some(refused) = refuse_stale_form(&dash, &headers, &form.csrf, error_page) {
        return refused;
    }
    if dash.config.read_only {
        return error_page(&dash, StatusCode::FORBIDDEN, "the dashboard is read-only");
    }
    let (Some(key), Some(action)) = (key_of(&hex_key), action.parse::<Action>().ok()) else {
        return error_page(&dash, StatusCode::NOT_FOUND, "no such job or action");
    };
    let engine = &dash.config.engine;
    let result = match action {
        Action::Pause => engine.pause(&key).await.map(|_| ()),
        Action::Resume => engine.resume(&key).await.map(|_| ()),
        Action::Trigger => engine.trigger_now(&key).await,
        Action::Delete => engine.delete(&key).await.map(|_| ()),
    };
    tracing::info!(job = %key, action = %action, ok = result.is_ok(), "dashboard action");
    match (action, result) {
        (Action::Delete, Ok(())) => {
            let flash = format!("Deleted '{}' ({} / {}).", key.name, key.namespace, owner_plain(&key));
            Redirect::to(&format!("/jobs?flash={}", url(&flash))).into_response()
        }
        (_, Ok(())) => Redirect::to(&format!("/job/{hex_key}?done={action}")).into_response(),
        (_, Err(err)) => {
            let message = format!("{action} failed: {err}");
            Redirect::to(&format!("/job/{hex_key}?error={}", url(&message))).into_response()
        }
    }
}

fn owner_plain(key: &JobKey) -> String {
    match &key.owner {
        Owner::App { app_id } => app_id.clone(),
        Owner::Actor { actor_type, actor_id } => format!("{actor_type}/{actor_id}"),
    }
}

// ------------------------------------------------------------------------------------------
// Login

/// The login form's fields.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: String,
}

/// `GET /login`.
pub async fn login_form(State(dash): Dash) -> Response {
    login_page(&dash, StatusCode::OK, "")
}

fn login_page(dash: &Dashboard, status: StatusCode, error: &str) -> Response {
    let error =
        if error.is_empty() { String::new() } else { format!("<p class=\"flash error\">{}</p>", esc(error)) };
    let body = format!(
        "<h1>Log in</h1>{error}<form method=\"post\" action=\"/login\" class=\"login\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <label>API token <input type=\"password\" name=\"token\" id=\"token\" autocomplete=\"current-password\" autofocus></label>\
         <button type=\"submit\" id=\"login\">Log in</button></form>\
         <p class=\"muted\">The scheduler's API token (<code>--api-token-file</code> or <code>KAIROS_SCHEDULER_API_TOKEN</code>).</p>",
        csrf = esc(dash.csrf())
    );
    let frame = crate::html::Frame { logout: false, ..dash.frame("Log in", "login") };
    (status, Html(html::page(&frame, &body))).into_response()
}

/// `POST /login`: sets the token cookie when the token is right.
pub async fn login(State(dash): Dash, headers: HeaderMap, Form(form): Form<LoginForm>) -> Response {
    if let Some(refused) = refuse_stale_form(&dash, &headers, &form.csrf, login_page) {
        return refused;
    }
    let Some(token) = &dash.config.api_token else { return Redirect::to("/").into_response() };
    if !crate::same(&form.token, token) {
        return login_page(&dash, StatusCode::UNAUTHORIZED, "wrong token");
    }
    let secure = if dash.tls { "; Secure" } else { "" };
    let cookie =
        format!("{TOKEN_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict{secure}", hex(token.as_bytes()));
    ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
}

/// `POST /logout`: clears the cookie.
pub async fn logout(State(dash): Dash, headers: HeaderMap, Form(form): Form<ActionForm>) -> Response {
    if let Some(refused) = refuse_stale_form(&dash, &headers, &form.csrf, error_page) {
        return refused;
    }
    let cookie = format!("{TOKEN_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use strum::VariantArray;

    #[test]
    fn action_names_round_trip_and_unknown_ones_are_none() {
        let names = Action::VARIANTS.iter().map(Action::to_string).collect::<Vec<_>>();
        assert_eq!(names, ["pause", "resume", "trigger", "delete"]);
        assert!(Action::VARIANTS.iter().all(|a| a.to_string().parse::<Action>() == Ok(*a)));
        for unknown in ["Pause", "stop", ""] {
            assert!(unknown.parse::<Action>().is_err(), "{unknown}");
            assert_eq!(done_message(unknown), None, "{unknown}");
        }
        assert_eq!(done_message("delete"), None);
        assert!(done_message("trigger").is_some_and(|m| m.starts_with("Triggered:")));
    }
}
