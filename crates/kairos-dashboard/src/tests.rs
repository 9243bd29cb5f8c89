//! The dashboard's routes over an engine on the in-memory store: escaping, login, CSRF,
//! read-only, and the listing's order and paging.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use jiff::{SignedDuration, Timestamp};
use kairos_core::{Clock, JobKey, JobSpec, JobState, JobStats, ManualClock, Owner, Progress};
use kairos_engine::{Engine, EngineConfig};
use kairos_store::keys::encode_key;
use kairos_store::memory::MemoryStore;
use kairos_store::{JobStore, PutMode, StoredJob};
use tower::ServiceExt;

use crate::listing::{self, Budget, Filter, Sort};
use crate::{Dashboard, DashboardConfig};

const T0: i64 = 1_800_000_000;

fn setup(token: Option<&str>, read_only: bool) -> (Arc<Dashboard>, Engine, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(Timestamp::from_second(T0).unwrap()));
    let store: Arc<dyn JobStore> = Arc::new(MemoryStore::new(8));
    let config = EngineConfig { default_tz: jiff::tz::TimeZone::UTC, ..EngineConfig::default() };
    let engine = Engine::new(store, clock.clone(), config);
    engine.own_all();
    let dash = Dashboard::new(
        DashboardConfig {
            engine: engine.clone(),
            clock: clock.clone(),
            default_tz: jiff::tz::TimeZone::UTC,
            api_token: token.map(str::to_owned),
            read_only,
            metrics: None,
        },
        false,
    );
    (dash, engine, clock)
}

async fn send(dash: &Arc<Dashboard>, request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
    let response = dash.router().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 24).await.unwrap();
    (parts.status, parts.headers, String::from_utf8_lossy(&bytes).into_owned())
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

fn post(path: &str, form: &str) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::HOST, "127.0.0.1:1")
        .body(Body::from(form.to_owned()))
        .unwrap()
}

fn hex_of(key: &JobKey) -> String {
    crate::html::hex(&kairos_store::keys::encode_key(key).unwrap())
}

async fn every_second(engine: &Engine, name: &str) -> JobKey {
    let key = JobKey::app("default", "app", name);
    let spec = JobSpec { schedule: Some("@every 1s".into()), repeats: Some(10), ..JobSpec::default() };
    engine.schedule(key.clone(), spec, PutMode::Overwrite).await.unwrap();
    key
}

#[tokio::test]
async fn a_job_named_like_markup_renders_as_text() {
    let (dash, engine, _) = setup(None, false);
    let key = every_second(&engine, "<script>alert('x')").await;
    for path in ["/jobs".to_owned(), format!("/job/{}", hex_of(&key))] {
        let (status, headers, body) = send(&dash, get(&path)).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(body.contains("&lt;script&gt;alert(&#39;x&#39;)"), "{path}: {body}");
        assert!(!body.contains("<script>alert"), "{path}");
        let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("script-src 'self'"), "{csp}");
    }
}

#[tokio::test]
async fn with_a_token_every_page_wants_a_login_and_the_cookie_is_httponly_and_strict() {
    let (dash, engine, _) = setup(Some("tok3n; x"), false);
    every_second(&engine, "a").await;
    let (status, headers, _) = send(&dash, get("/jobs")).await;
    assert_eq!((status, headers[header::LOCATION].to_str().unwrap()), (StatusCode::SEE_OTHER, "/login"));
    assert_eq!(send(&dash, get("/assets/app.js")).await.0, StatusCode::OK, "assets need no login");

    let csrf = dash.csrf().to_owned();
    let (status, _, body) = send(&dash, post("/login", &format!("csrf={csrf}&token=nope"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("wrong token"));
    assert_eq!(
        send(&dash, post("/login", "token=tok3n")).await.0,
        StatusCode::FORBIDDEN,
        "login needs its CSRF token"
    );

    let (status, headers, _) = send(&dash, post("/login", &format!("csrf={csrf}&token=tok3n%3B+x"))).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let cookie = headers[header::SET_COOKIE].to_str().unwrap();
    assert!(
        cookie.starts_with(&format!("kairos_token={};", crate::html::hex(b"tok3n; x")))
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );

    let with_cookie = Request::get("/jobs")
        .header(header::COOKIE, format!("other=1; kairos_token={}", crate::html::hex(b"tok3n; x")))
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&dash, with_cookie).await.0, StatusCode::OK);
    let bearer =
        Request::get("/").header(header::AUTHORIZATION, "Bearer tok3n; x").body(Body::empty()).unwrap();
    assert_eq!(send(&dash, bearer).await.0, StatusCode::OK);
    let wrong =
        Request::get("/").header(header::COOKIE, "kairos_token=tok3n; x").body(Body::empty()).unwrap();
    assert_eq!(send(&dash, wrong).await.0, StatusCode::SEE_OTHER);
    let action = post("/job/00/pause", &format!("csrf={csrf}"));
    assert_eq!(send(&dash, action).await.0, StatusCode::UNAUTHORIZED, "an action without the token");
}

#[tokio::test]
async fn actions_need_the_pages_csrf_token_and_the_same_origin() {
    let (dash, engine, _) = setup(None, false);
    let key = every_second(&engine, "steered").await;
    let path = format!("/job/{}/pause", hex_of(&key));
    let csrf = dash.csrf().to_owned();
    let paused =
        |engine: Engine, key: JobKey| async move { engine.status(&key).await.unwrap().unwrap().1.paused };

    for (what, request) in [
        ("no token", post(&path, "")),
        ("a wrong token", post(&path, "csrf=0123")),
        ("another origin", {
            let mut r = post(&path, &format!("csrf={csrf}"));
            r.headers_mut().insert(header::ORIGIN, "http://evil.example".parse().unwrap());
            r
        }),
        ("a cross-site fetch", {
            let mut r = post(&path, &format!("csrf={csrf}"));
            r.headers_mut().insert("sec-fetch-site", "cross-site".parse().unwrap());
            r
        }),
    ] {
        assert_eq!(send(&dash, request).await.0, StatusCode::FORBIDDEN, "{what}");
        assert!(!paused(engine.clone(), key.clone()).await, "{what} paused the job");
    }

    let mut same = post(&path, &format!("csrf={csrf}"));
    same.headers_mut().insert(header::ORIGIN, "http://127.0.0.1:1".parse().unwrap());
    same.headers_mut().insert("sec-fetch-site", "same-origin".parse().unwrap());
    let (status, headers, _) = send(&dash, same).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION].to_str().unwrap(), format!("/job/{}?done=pause", hex_of(&key)));
    assert!(paused(engine.clone(), key.clone()).await);
    let (_, _, page) = send(&dash, get(&format!("/job/{}?done=pause", hex_of(&key)))).await;
    assert!(page.contains("Paused: the job fires nothing") && page.contains("st-paused"), "{page}");

    // An action on a job that is gone says so, on the job's page.
    engine.delete(&key).await.unwrap();
    let (status, headers, _) =
        send(&dash, post(&format!("/job/{}/resume", hex_of(&key)), &format!("csrf={csrf}"))).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let location = headers[header::LOCATION].to_str().unwrap();
    assert!(location.contains("error=resume%20failed%3A%20job%20not%20found"), "{location}");
}

#[tokio::test]
async fn a_read_only_dashboard_shows_no_action_and_refuses_them() {
    let (dash, engine, _) = setup(None, true);
    let key = every_second(&engine, "look-only").await;
    let (_, _, page) = send(&dash, get(&format!("/job/{}", hex_of(&key)))).await;
    assert!(page.contains("Read-only dashboard") && !page.contains("action-pause"));
    assert_eq!(
        send(&dash, get(&format!("/job/{}/confirm/pause", hex_of(&key)))).await.0,
        StatusCode::FORBIDDEN
    );
    let (status, _, _) =
        send(&dash, post(&format!("/job/{}/delete", hex_of(&key)), &format!("csrf={}", dash.csrf()))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(engine.get(&key).await.unwrap().is_some(), "not deleted");
}

#[tokio::test]
async fn the_job_page_says_the_spec_in_words_and_lists_ten_fires() {
    let (dash, engine, clock) = setup(None, false);
    let key = JobKey::app("default", "app", "worded");
    let spec = JobSpec {
        schedule: Some("@every 1s".into()),
        repeats: Some(10),
        ttl: Some("1h".into()),
        data: None,
        ..JobSpec::default()
    };
    engine.schedule(key.clone(), spec, PutMode::Overwrite).await.unwrap();
    let mut job = engine.get(&key).await.unwrap().unwrap();
    job.progress =
        Progress { count: 3, last_scheduled: Some(clock.now() + SignedDuration::from_secs(3)), attempts: 0 };
    assert_eq!(
        crate::pages::spec_in_words(&dash, &job),
        "every 1 s, 7 of 10 left, expires 2027-01-15 09:00:00Z"
    );
    let (_, _, page) = send(&dash, get(&format!("/job/{}", hex_of(&key)))).await;
    assert_eq!(page.matches("<li>").count(), 10, "ten next fires of a 10-repeat job not yet fired");
    assert!(page.contains("every 1 s, 10 of 10 left"), "{page}");
    assert_eq!(send(&dash, get("/job/zz")).await.0, StatusCode::BAD_REQUEST);
    let absent = JobKey::app("default", "app", "absent");
    assert_eq!(send(&dash, get(&format!("/job/{}", hex_of(&absent)))).await.0, StatusCode::NOT_FOUND);
}

/// A stored job due at `due`, put straight into the store.
fn stored(name: &str, app: &str, due: Timestamp, paused: bool) -> StoredJob {
    StoredJob {
        key: JobKey::app("default", app, name),
        spec: JobSpec { schedule: Some("@every 1h".into()), ..JobSpec::default() }.with_default_policy(),
        created: Timestamp::from_second(T0).unwrap(),
        incarnation: 1,
        version: 0,
        progress: Progress::default(),
        next_due: if paused { Timestamp::MAX } else { due },
        staged: false,
        paused,
        stats: JobStats::default(),
        manual: Vec::new(),
    }
}

/// Every page of a listing, each from the cursor the previous one ended with.
async fn every_page(
    store: &Arc<dyn JobStore>,
    filter: &Filter,
    sort: Sort,
    limit: usize,
    budget: Budget<'_>,
) -> Vec<listing::Page> {
    let mut pages: Vec<listing::Page> = Vec::new();
    loop {
        let cursor = pages.last().and_then(|p| p.next.as_deref());
        let page = listing::page(store, filter, sort, cursor, limit, budget).await.unwrap();
        let last = page.next.is_none();
        pages.push(page);
        if last {
            return pages;
        }
    }
}

#[tokio::test]
async fn pages_by_next_fire_merge_the_partitions_in_order_and_visit_every_job_once() {
    let store: Arc<dyn JobStore> = Arc::new(MemoryStore::new(16));
    let clock = ManualClock::new(Timestamp::from_second(T0).unwrap());
    let t0 = clock.now();
    let mut expected = Vec::new();
    for i in 0..300i64 {
        // Several jobs share a due time, so ties are broken by key across partitions.
        let due = t0 + SignedDuration::from_secs((i * 37) % 101);
        let job = stored(&format!("job-{i:03}"), if i % 3 == 0 { "a" } else { "b" }, due, i % 50 == 7);
        expected.push((job.next_due, job.key.name.clone()));
        store.put(job, PutMode::CreateOnly).await.unwrap();
    }
    let budget = Budget { jobs: 10_000, time: SignedDuration::from_secs(60), clock: &clock };
    let pages = every_page(&store, &Filter::default(), Sort::Next, 7, budget).await;
    let seen: Vec<_> =
        pages.iter().flat_map(|p| &p.rows).map(|r| (r.job.next_due, r.job.key.name.clone())).collect();
    assert_eq!(seen.len(), 300, "every job once");
    assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0), "soonest first, paused last");
    let names: BTreeSet<_> = seen.iter().map(|(_, n)| n.clone()).collect();
    assert_eq!(names.len(), 300);

    // A filter that matches little stops at the read budget with a cursor, and continuing
    // reaches every match.
    let paused = Filter { state: Some(JobState::Paused), ..Filter::default() };
    let small = Budget { jobs: 40, ..budget };
    for sort in [Sort::Next, Sort::Name] {
        let pages = every_page(&store, &paused, sort, 50, small).await;
        assert!(pages.iter().all(|p| p.scanned <= 50), "{sort:?}");
        let found = pages.iter().map(|p| p.rows.len()).sum::<usize>();
        assert_eq!(found, 6, "{sort:?}: jobs 7, 57, …, 257 are paused");
        let stops = pages.iter().filter(|p| p.budget_hit).count();
        assert!(stops > 1, "{sort:?}: the budget stopped pages on the way");
    }

    // By name over every owner: key order (namespace, owner, name), every job once.
    let pages = every_page(&store, &Filter::default(), Sort::Name, 7, budget).await;
    let keys: Vec<_> = pages.iter().flat_map(|p| &p.rows).map(|r| encode_key(&r.job.key).unwrap()).collect();
    assert_eq!(keys.len(), 300, "every job once");
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "in key order, none twice");

    // By name within one app, from a prefix on.
    let filter = Filter {
        namespace: Some("default".into()),
        app: Some("a".into()),
        prefix: "job-1".into(),
        state: None,
        due_before: None,
    };
    let page = listing::page(&store, &filter, Sort::Name, None, 500, budget).await.unwrap();
    let names: Vec<_> = page.rows.iter().map(|r| r.job.key.name.as_str()).collect();
    let want: Vec<String> = (100..200).filter(|i| i % 3 == 0).map(|i| format!("job-{i:03}")).collect();
    assert_eq!(names, want);

    // Late jobs: due before an instant; by next fire the page ends at the first one due later.
    let late = Filter { due_before: Some(t0 + SignedDuration::from_secs(10)), ..Filter::default() };
    let page = listing::page(&store, &late, Sort::Next, None, 500, budget).await.unwrap();
    let want = expected.iter().filter(|(due, _)| *due < t0 + SignedDuration::from_secs(10)).count();
    assert_eq!(page.rows.len(), want);
    assert_eq!(page.next, None);
    assert!(page.scanned <= want + 1, "read {} for {want}", page.scanned);
    assert!(matches!(
        listing::page(&store, &filter, Sort::Next, Some("garbage"), 5, budget).await,
        Err(listing::ListError::Cursor(_))
    ));

    // By name within one namespace and "app" that is also an actor type: the app's jobs, then
    // the reminders of actors of that type, both by the prefix.
    let actor = |actor_type: &str, id: &str, name: &str| JobKey {
        namespace: "default".into(),
        owner: Owner::actor(actor_type, id),
        name: name.into(),
    };
    let spec = JobSpec { schedule: Some("@every 1s".into()), ..JobSpec::default() };
    for key in [
        actor("a", "id-2", "job-1x"),
        actor("a", "id-1", "job-1y"),
        actor("a", "id-1", "other"),
        actor("ab", "id-1", "job-1z"),
    ] {
        store.put(StoredJob::new(key, spec.clone(), t0, 1, t0), PutMode::CreateOnly).await.unwrap();
    }
    let pages = every_page(&store, &filter, Sort::Name, 7, budget).await;
    let seen: Vec<JobKey> = pages.iter().flat_map(|p| &p.rows).map(|r| r.job.key.clone()).collect();
    let mut want: Vec<JobKey> = (100..200)
        .filter(|i| i % 3 == 0)
        .map(|i| JobKey::app("default", "a", format!("job-{i:03}")))
        .collect();
    want.extend([actor("a", "id-1", "job-1y"), actor("a", "id-2", "job-1x")]);
    assert_eq!(seen, want);
}

#[tokio::test]
async fn the_overview_counts_jobs_by_app_and_state_in_the_background() {
    let (dash, engine, _) = setup(None, false);
    every_second(&engine, "one").await;
    let paused = every_second(&engine, "two").await;
    engine.pause(&paused).await.unwrap();
    let (status, _, first) = send(&dash, get("/")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(first.contains("Jobs stored</div><div class=\"value\">2<"), "{first}");
    assert!(first.contains("id=\"late\">0</a>"), "nothing is late: {first}");
    // The census runs on its own task; the next page shows what it counted.
    let mut counted = String::new();
    for _ in 0..100 {
        tokio::task::yield_now().await;
        counted = send(&dash, get("/?fragment=1")).await.2;
        if counted.contains("2 jobs counted") {
            break;
        }
    }
    assert!(counted.contains("2 jobs counted"), "{counted}");
    assert!(!counted.contains("<html"), "a fragment is not a whole page");
    let row = "<a href=\"/jobs?ns=default&amp;app=app\">app</a></td><td class=\"num\"><a href=\"/jobs?ns=default&amp;app=app&amp;state=scheduled&amp;sort=next\">1</a>";
    assert!(counted.contains(row), "{counted}");
    assert!(counted.contains("state=paused&amp;sort=next\">1</a>"), "{counted}");
}

#[test]
fn tokens_are_128_random_bits_and_compare_only_when_equal() {
    let tokens: BTreeSet<String> = (0..64).map(|_| crate::random_token()).collect();
    assert_eq!(tokens.len(), 64, "no two tokens alike");
    assert!(tokens.iter().all(|t| t.len() == 32 && is_lower_hex(t)), "{tokens:?}");
    let token = tokens.first().unwrap();
    assert!(crate::same(token, &token.clone()));
    assert!(!crate::same(token, tokens.last().unwrap()));
    assert!(!crate::same(token, &token[..31]), "a prefix is not the token");
    assert!(!crate::same("", token));
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}
