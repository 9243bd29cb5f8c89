//! Golden bytes: each message is encoded with prost and compared with bytes worked out by hand
//! from the spec's field tables, so a wrong field number, wire type or label in a `.proto` file
//! fails here.
//!
//! The expected bytes are written in a tiny notation read by [`wire`]: two-digit hex bytes,
//! `"quoted ascii"` for string contents, and `#` comments to the end of the line. A tag byte is
//! `field_number << 3 | wire_type`, with wire type 0 = varint and 2 = length-delimited, so
//! field 1 LEN is `0a`, field 2 varint is `10`, field 3 LEN is `1a`, and so on. A length byte
//! counts the bytes of everything after it up to the end of that field.

use kairos_proto::common::job_failure_policy::Policy;
use kairos_proto::{common, runtime, scheduler};
use prost::Message;
use prost_types::{Any, Duration};

/// Reads the notation described at the top of this file into bytes.
fn wire(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut rest = line.trim_start();
        while !rest.is_empty() {
            if rest.starts_with('#') {
                break;
            }
            if let Some(quoted) = rest.strip_prefix('"') {
                let end = quoted.find('"').expect("unterminated string in golden text");
                out.extend_from_slice(&quoted.as_bytes()[..end]);
                rest = quoted[end + 1..].trim_start();
                continue;
            }
            let (pair, tail) = rest.split_at(2);
            out.push(u8::from_str_radix(pair, 16).expect("two hex digits in golden text"));
            rest = tail.trim_start();
        }
    }
    out
}

/// Encodes `msg`, compares with `expected`, and decodes `expected` back into an equal message.
#[track_caller]
fn assert_golden<M: Message + Default + PartialEq + std::fmt::Debug>(msg: &M, expected: &str) {
    let expected = wire(expected);
    assert_eq!(
        msg.encode_to_vec(),
        expected,
        "encoding of {msg:?} differs (left: prost, right: hand-written)"
    );
    assert_eq!(
        &M::decode(expected.as_slice()).expect("golden bytes decode"),
        msg,
        "decoding the golden bytes gave another message"
    );
}

/// A failure policy message holding `policy` (its oneof).
fn failure_policy(policy: Policy) -> common::JobFailurePolicy {
    common::JobFailurePolicy { policy: Some(policy) }
}

/// The payload used throughout: `Any{type_url: "x/y", value: "hi"}`, 9 bytes encoded.
fn any() -> Any {
    Any { type_url: "x/y".into(), value: b"hi".to_vec() }
}
const ANY: &str = r#"0a 03 "x/y"   # Any.type_url (1, LEN)
                     12 02 "hi"    # Any.value (2, LEN)"#;

/// Owner of an app job: 13 bytes encoded.
fn app_metadata() -> scheduler::JobMetadata {
    scheduler::JobMetadata {
        app_id: "app".into(),
        namespace: "ns".into(),
        target: Some(scheduler::JobTargetMetadata {
            r#type: Some(scheduler::job_target_metadata::Type::Job(scheduler::TargetJob {})),
        }),
        concurrency_key: None,
    }
}
const APP_METADATA: &str = r#"0a 03 "app"    # app_id (1, LEN)
                              12 02 "ns"     # namespace (2, LEN)
                              1a 02          # target (3, LEN), 2 bytes
                                 0a 00       #   oneof type: job (1, LEN), an empty TargetJob is still sent"#;

#[test]
fn notation_reads_hex_strings_and_comments() {
    assert_eq!(wire("0a 01 \"j\" # name\n  ff"), vec![0x0a, 0x01, b'j', 0xff]);
}

// ---- dapr.proto.common.v1 ----

#[test]
fn failure_policy_drop_is_an_empty_message_in_field_1() {
    let policy = failure_policy(Policy::Drop(common::JobFailurePolicyDrop {}));
    assert_golden(&policy, "0a 00   # drop (1, LEN), empty");
}

#[test]
fn failure_policy_constant_carries_interval_and_max_retries() {
    let policy = failure_policy(Policy::Constant(common::JobFailurePolicyConstant {
        interval: Some(Duration { seconds: 1, nanos: 500_000_000 }),
        max_retries: Some(300),
    }));
    assert_golden(
        &policy,
        r#"12 0d          # constant (2, LEN), 13 bytes
              0a 08       #   interval (1, LEN), a Duration of 8 bytes
                 08 01    #     seconds (1, varint) = 1
                 10 80 ca b5 ee 01  # nanos (2, varint) = 500_000_000:
                                    # 7-bit groups low first 0x00 0x4a 0x35 0x6e 0x01
              10 ac 02    #   max_retries (2, varint) = 300 = 0x2c | 0x80, then 300 >> 7 = 2"#,
    );
}

#[test]
fn explicit_zero_max_retries_is_sent_and_unset_is_not() {
    let never = common::JobFailurePolicyConstant { interval: None, max_retries: Some(0) };
    assert_golden(&never, "10 00   # max_retries (2, varint) = 0, present: never retry");
    let forever = common::JobFailurePolicyConstant { interval: None, max_retries: None };
    assert_golden(&forever, "# nothing at all: retry forever");
}

// ---- dapr.proto.runtime.v1 ----

fn full_runtime_job() -> runtime::Job {
    runtime::Job {
        name: "j".into(),
        schedule: Some("@every 1s".into()),
        repeats: Some(5),
        due_time: Some("10s".into()),
        ttl: Some("1h".into()),
        data: Some(any()),
        failure_policy: Some(failure_policy(Policy::Constant(common::JobFailurePolicyConstant {
            interval: Some(Duration { seconds: 3, nanos: 0 }),
            max_retries: Some(3),
        }))),
        misfire_policy: None,
    }
}

#[test]
fn runtime_job_with_every_field() {
    let expected = format!(
        r#"0a 01 "j"            # name (1, LEN)
           12 09 "@every 1s"    # schedule (2, LEN)
           18 05                # repeats (3, varint) = 5
           22 03 "10s"          # due_time (4, LEN)
           2a 02 "1h"           # ttl (5, LEN)
           32 09                # data (6, LEN), 9 bytes
              {ANY}
           3a 08                # failure_policy (7, LEN), 8 bytes
              12 06             #   constant (2, LEN), 6 bytes
                 0a 02          #     interval (1, LEN)
                    08 03       #       seconds (1, varint) = 3; nanos 0 is not sent
                 10 03          #     max_retries (2, varint) = 3"#
    );
    assert_golden(&full_runtime_job(), &expected);
}

#[test]
fn runtime_job_optional_fields_have_presence() {
    let unset = runtime::Job { name: "j".into(), ..Default::default() };
    assert_golden(&unset, r#"0a 01 "j"   # name only: no repeats, no data"#);

    let zero = runtime::Job {
        name: "j".into(),
        repeats: Some(0),
        schedule: Some(String::new()),
        data: Some(Any::default()),
        ..Default::default()
    };
    assert_golden(
        &zero,
        r#"0a 01 "j"   # name (1, LEN)
           12 00       # schedule (2, LEN) = "", set so sent
           18 00       # repeats (3, varint) = 0, set so sent
           32 00       # data (6, LEN) = Any{}, what the Python SDK sends without data"#,
    );
}

#[test]
fn runtime_schedule_job_request_with_overwrite() {
    let request = runtime::ScheduleJobRequest {
        job: Some(runtime::Job {
            name: "j".into(),
            schedule: Some("@every 1s".into()),
            ..Default::default()
        }),
        overwrite: true,
    };
    assert_golden(
        &request,
        r#"0a 0e                   # job (1, LEN), 14 bytes
              0a 01 "j"            #   name (1, LEN)
              12 09 "@every 1s"    #   schedule (2, LEN)
           10 01                   # overwrite (2, varint) = true"#,
    );
}

#[test]
fn runtime_get_and_delete_requests_carry_only_the_name() {
    let name = r#"0a 01 "j"   # name (1, LEN)"#;
    assert_golden(&runtime::GetJobRequest { name: "j".into() }, name);
    assert_golden(&runtime::DeleteJobRequest { name: "j".into() }, name);
}

#[test]
fn runtime_delete_by_prefix_distinguishes_unset_from_empty() {
    assert_golden(
        &runtime::DeleteJobsByPrefixRequest { name_prefix: Some("p".into()) },
        r#"0a 01 "p"   # name_prefix (1, LEN)"#,
    );
    assert_golden(
        &runtime::DeleteJobsByPrefixRequestAlpha1 { name_prefix: Some(String::new()) },
        "0a 00   # name_prefix (1, LEN) = \"\", set so sent",
    );
    assert_golden(&runtime::DeleteJobsByPrefixRequest { name_prefix: None }, "# nothing");
}

#[test]
fn runtime_list_jobs_response_repeats_field_1() {
    let job = |name: &str| runtime::Job { name: name.into(), ..Default::default() };
    let expected = r#"0a 03 0a 01 "a"   # jobs (1, LEN) { name (1, LEN) "a" }
                      0a 03 0a 01 "b"   # jobs (1, LEN) { name (1, LEN) "b" }"#;
    assert_golden(&runtime::ListJobsResponse { jobs: vec![job("a"), job("b")] }, expected);
    assert_golden(&runtime::ListJobsResponseAlpha1 { jobs: vec![job("a"), job("b")] }, expected);
}

#[test]
fn job_event_request_as_the_sidecar_sends_it() {
    let event = runtime::JobEventRequest {
        name: "j".into(),
        data: Some(any()),
        method: "job/j".into(),
        content_type: "x/y".into(),
        http_extension: Some(common::HttpExtension {
            verb: common::http_extension::Verb::Post.into(),
            querystring: String::new(),
        }),
    };
    let expected = format!(
        r#"0a 01 "j"        # name (1, LEN)
           12 09            # data (2, LEN), 9 bytes
              {ANY}
           1a 05 "job/j"    # method (3, LEN)
           22 03 "x/y"      # content_type (4, LEN)
           2a 02            # http_extension (5, LEN)
              08 03         #   verb (1, varint) = POST = 3"#
    );
    assert_golden(&event, &expected);
}

#[test]
fn http_verb_numbers_match_the_spec() {
    use common::http_extension::Verb;
    let verbs = [
        (Verb::None, 0),
        (Verb::Get, 1),
        (Verb::Head, 2),
        (Verb::Post, 3),
        (Verb::Put, 4),
        (Verb::Delete, 5),
        (Verb::Connect, 6),
        (Verb::Options, 7),
        (Verb::Trace, 8),
        (Verb::Patch, 9),
    ];
    for (verb, number) in verbs {
        assert_eq!(verb as i32, number, "{verb:?}");
    }
}

// ---- dapr.proto.scheduler.v1 ----

#[test]
fn scheduler_job_numbers_its_fields_from_schedule() {
    let job = scheduler::Job {
        schedule: Some("@daily".into()),
        repeats: Some(2),
        due_time: Some("1s".into()),
        ttl: Some("2s".into()),
        data: Some(any()),
        failure_policy: Some(failure_policy(Policy::Drop(common::JobFailurePolicyDrop {}))),
        misfire_policy: None,
    };
    let expected = format!(
        r#"0a 06 "@daily"   # schedule (1, LEN)
           10 02            # repeats (2, varint) = 2
           1a 02 "1s"       # due_time (3, LEN)
           22 02 "2s"       # ttl (4, LEN)
           2a 09            # data (5, LEN), 9 bytes
              {ANY}
           32 02 0a 00      # failure_policy (6, LEN) {{ drop (1, LEN), empty }}"#
    );
    assert_golden(&job, &expected);

    let zero = scheduler::Job { repeats: Some(0), ..Default::default() };
    assert_golden(&zero, "10 00   # repeats (2, varint) = 0, set so sent");
    assert_golden(&scheduler::Job::default(), "# nothing");
}

#[test]
fn scheduler_schedule_job_request_for_an_app() {
    let request = scheduler::ScheduleJobRequest {
        name: "j".into(),
        job: Some(scheduler::Job { due_time: Some("10s".into()), ..Default::default() }),
        metadata: Some(app_metadata()),
        overwrite: true,
    };
    let expected = format!(
        r#"0a 01 "j"            # name (1, LEN)
           12 05                # job (2, LEN), 5 bytes
              1a 03 "10s"       #   due_time (3, LEN)
           1a 0d                # metadata (3, LEN), 13 bytes
              {APP_METADATA}
           20 01                # overwrite (4, varint) = true"#
    );
    assert_golden(&request, &expected);
}

#[test]
fn scheduler_schedule_job_request_for_an_actor_reminder() {
    let request = scheduler::ScheduleJobRequest {
        name: "r".into(),
        job: Some(scheduler::Job { due_time: Some("10s".into()), ..Default::default() }),
        metadata: Some(scheduler::JobMetadata {
            app_id: "app".into(),
            namespace: "ns".into(),
            target: Some(scheduler::JobTargetMetadata {
                r#type: Some(scheduler::job_target_metadata::Type::Actor(scheduler::TargetActorReminder {
                    id: "a1".into(),
                    r#type: "T".into(),
                })),
            }),
            concurrency_key: Some("k".into()),
        }),
        overwrite: false,
    };
    assert_golden(
        &request,
        r#"0a 01 "r"            # name (1, LEN)
           12 05                # job (2, LEN), 5 bytes
              1a 03 "10s"       #   due_time (3, LEN)
           1a 17                # metadata (3, LEN), 23 bytes
              0a 03 "app"       #   app_id (1, LEN)
              12 02 "ns"        #   namespace (2, LEN)
              1a 09             #   target (3, LEN), 9 bytes
                 12 07          #     oneof type: actor (2, LEN), 7 bytes
                    0a 02 "a1"  #       id (1, LEN)
                    12 01 "T"   #       type (2, LEN)
              22 01 "k"         #   concurrency_key (4, LEN)
                                # overwrite = false is not sent"#,
    );
}

#[test]
fn watch_jobs_initial_request() {
    let request = scheduler::WatchJobsRequest {
        watch_job_request_type: Some(scheduler::watch_jobs_request::WatchJobRequestType::Initial(
            scheduler::WatchJobsRequestInitial {
                app_id: "app".into(),
                namespace: "ns".into(),
                actor_types: vec!["A".into(), "B".into()],
                accept_job_types: vec![
                    scheduler::JobTargetType::Job.into(),
                    scheduler::JobTargetType::ActorReminder.into(),
                ],
                concurrency_limits: vec![scheduler::ConcurrencyLimit {
                    max_concurrent: 2,
                    name: Some("n".into()),
                    target: Some(scheduler::concurrency_limit::Target::Actor(
                        scheduler::ConcurrencyLimitActor { r#type: "T".into() },
                    )),
                }],
            },
        )),
    };
    assert_golden(
        &request,
        r#"0a 1f                 # initial (1, LEN), 31 bytes
              0a 03 "app"        #   app_id (1, LEN)
              12 02 "ns"         #   namespace (2, LEN)
              1a 01 "A"          #   actor_types (3, LEN), one entry per element
              1a 01 "B"
              22 02 00 01        #   accept_job_types (4, LEN): packed enums JOB = 0, ACTOR_REMINDER = 1
              2a 0a              #   concurrency_limits (5, LEN), 10 bytes
                 08 02           #     max_concurrent (1, varint) = 2
                 12 01 "n"       #     name (2, LEN)
                 1a 03           #     oneof target: actor (3, LEN), 3 bytes
                    0a 01 "T"    #       type (1, LEN)"#,
    );
}

#[test]
fn watch_jobs_result_requests() {
    use scheduler::watch_jobs_request::WatchJobRequestType;
    use scheduler::{WatchJobsRequestResult, WatchJobsRequestResultStatus};
    let result = |id, status: WatchJobsRequestResultStatus| scheduler::WatchJobsRequest {
        watch_job_request_type: Some(WatchJobRequestType::Result(WatchJobsRequestResult {
            id,
            status: status.into(),
        })),
    };
    assert_golden(
        &result(300, WatchJobsRequestResultStatus::Failed),
        r#"12 05              # result (2, LEN), 5 bytes
              08 ac 02        #   id (1, varint) = 300
              10 01           #   status (2, varint) = FAILED = 1"#,
    );

    assert_golden(
        &result(1, WatchJobsRequestResultStatus::Success),
        r#"12 02              # result (2, LEN), 2 bytes
              08 01           #   id (1, varint) = 1; status SUCCESS = 0 is not sent"#,
    );
}

#[test]
fn watch_jobs_response_is_one_trigger() {
    let response = scheduler::WatchJobsResponse {
        name: "j".into(),
        id: 7,
        data: Some(any()),
        metadata: Some(app_metadata()),
    };
    let expected = format!(
        r#"0a 01 "j"     # name (1, LEN)
           10 07         # id (2, varint) = 7
           1a 09         # data (3, LEN), 9 bytes
              {ANY}
           22 0d         # metadata (4, LEN), 13 bytes
              {APP_METADATA}"#
    );
    assert_golden(&response, &expected);
}

#[test]
fn delete_by_metadata_sends_id_prefix_match_when_set_even_if_false() {
    let request = |id_prefix_match| scheduler::DeleteByMetadataRequest {
        metadata: Some(app_metadata()),
        id_prefix_match,
    };
    let with = |tail: &str| format!("0a 0d {APP_METADATA}\n{tail}");
    assert_golden(&request(Some(true)), &with("10 01   # id_prefix_match (2, varint) = true"));
    assert_golden(&request(Some(false)), &with("10 00   # id_prefix_match (2, varint) = false, set so sent"));
    assert_golden(&request(None), &with("# id_prefix_match unset: absent"));
}

#[test]
fn scheduler_requests_keyed_by_name_and_metadata() {
    let expected = format!(
        r#"0a 01 "j"   # name (1, LEN)
           12 0d       # metadata (2, LEN), 13 bytes
              {APP_METADATA}"#
    );
    assert_golden(&scheduler::GetJobRequest { name: "j".into(), metadata: Some(app_metadata()) }, &expected);
    assert_golden(
        &scheduler::DeleteJobRequest { name: "j".into(), metadata: Some(app_metadata()) },
        &expected,
    );
    assert_golden(
        &scheduler::DeleteByNamePrefixRequest { name_prefix: "j".into(), metadata: Some(app_metadata()) },
        &expected,
    );
    assert_golden(
        &scheduler::ListJobsRequest { metadata: Some(app_metadata()) },
        &format!("0a 0d {APP_METADATA}   # metadata (1, LEN)"),
    );
}

#[test]
fn list_jobs_response_holds_named_jobs() {
    let response = scheduler::ListJobsResponse {
        jobs: vec![scheduler::NamedJob {
            name: "j".into(),
            metadata: Some(app_metadata()),
            job: Some(scheduler::Job { ttl: Some("1h".into()), ..Default::default() }),
        }],
    };
    let expected = format!(
        r#"0a 18               # jobs (1, LEN), 24 bytes
              0a 01 "j"        #   name (1, LEN)
              12 0d            #   metadata (2, LEN), 13 bytes
                 {APP_METADATA}
              1a 04            #   job (3, LEN), 4 bytes
                 22 02 "1h"    #     ttl (4, LEN)"#
    );
    assert_golden(&response, &expected);
}

#[test]
fn watch_hosts_response_lists_addresses() {
    let response = scheduler::WatchHostsResponse {
        hosts: vec![scheduler::Host { address: "h:1".into() }, scheduler::Host { address: "h:2".into() }],
    };
    assert_golden(
        &response,
        r#"0a 05 0a 03 "h:1"   # hosts (1, LEN) { address (1, LEN) }
           0a 05 0a 03 "h:2""#,
    );
}

#[test]
fn scheduler_enum_numbers_match_the_spec() {
    assert_eq!(scheduler::JobTargetType::Job as i32, 0);
    assert_eq!(scheduler::JobTargetType::ActorReminder as i32, 1);
    assert_eq!(scheduler::WatchJobsRequestResultStatus::Success as i32, 0);
    assert_eq!(scheduler::WatchJobsRequestResultStatus::Failed as i32, 1);
}

#[test]
fn empty_messages_encode_to_nothing() {
    assert_golden(&runtime::ScheduleJobResponse {}, "");
    assert_golden(&runtime::JobEventResponse {}, "");
    assert_golden(&runtime::HealthCheckResponse {}, "");
    assert_golden(&scheduler::WatchHostsRequest {}, "");
    assert_golden(&scheduler::TargetJob {}, "");
}

// ---- kairos extensions (field numbers far above upstream's) ----

/// Field 1000, wire type LEN: `1000 << 3 | 2` = 8002 = 0x42 | 0x80, then 8002 >> 7 = 62.
const FIELD_1000_LEN: &str = "c2 3e";

#[test]
fn failure_policy_exponential_is_field_1000_of_the_oneof() {
    let policy = failure_policy(Policy::Exponential(common::JobFailurePolicyExponential {
        initial_interval: Some(Duration { seconds: 1, nanos: 0 }),
        multiplier: Some(2.0),
        max_interval: Some(Duration { seconds: 60, nanos: 0 }),
        max_retries: Some(5),
        jitter: Some(0.5),
    }));
    assert_golden(
        &policy,
        &format!(
            r#"{FIELD_1000_LEN} 1c          # exponential (1000, LEN), 28 bytes
              0a 02 08 01                   #   initial_interval (1, LEN): seconds 1
              11 00 00 00 00 00 00 00 40    #   multiplier (2, I64) = 2.0, little-endian
              1a 02 08 3c                   #   max_interval (3, LEN): seconds 60
              20 05                         #   max_retries (4, varint) = 5
              29 00 00 00 00 00 00 e0 3f    #   jitter (5, I64) = 0.5"#
        ),
    );
}

#[test]
fn scheduler_job_misfire_policy_is_field_1000() {
    let job = scheduler::Job {
        schedule: Some("@every 1s".into()),
        misfire_policy: Some(common::JobMisfirePolicy {
            catch_up: common::JobMisfireCatchUp::Skip.into(),
            window: Some(Duration { seconds: 3600, nanos: 0 }),
        }),
        ..Default::default()
    };
    assert_golden(
        &job,
        &format!(
            r#"0a 09 "@every 1s"      # schedule (1, LEN)
               {FIELD_1000_LEN} 07    # misfire_policy (1000, LEN), 7 bytes
                  08 02               #   catch_up (1, varint) = SKIP
                  12 03 08 90 1c      #   window (2, LEN): seconds 3600"#
        ),
    );
    // The default catch-up (ALL) with no window is an empty message, still present.
    let all =
        scheduler::Job { misfire_policy: Some(common::JobMisfirePolicy::default()), ..Default::default() };
    assert_golden(&all, &format!("{FIELD_1000_LEN} 00"));
}

#[test]
fn runtime_job_misfire_policy_is_field_1000() {
    let job = runtime::Job {
        name: "j".into(),
        misfire_policy: Some(common::JobMisfirePolicy {
            catch_up: common::JobMisfireCatchUp::Once.into(),
            window: None,
        }),
        ..Default::default()
    };
    assert_golden(&job, &format!("0a 01 \"j\" {FIELD_1000_LEN} 02 08 01"));
}

/// Upstream's `JobFailurePolicy` and scheduler `Job`, without the extensions.
mod upstream {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Job {
        #[prost(string, optional, tag = "1")]
        pub schedule: Option<String>,
        #[prost(message, optional, tag = "6")]
        pub failure_policy: Option<JobFailurePolicy>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct JobFailurePolicy {
        #[prost(message, optional, tag = "2")]
        pub constant: Option<super::common::JobFailurePolicyConstant>,
    }
}

#[test]
fn upstream_peers_skip_the_extensions() {
    let kairos = scheduler::Job {
        schedule: Some("@every 1s".into()),
        failure_policy: Some(failure_policy(Policy::Exponential(common::JobFailurePolicyExponential {
            initial_interval: Some(Duration { seconds: 1, nanos: 0 }),
            ..Default::default()
        }))),
        misfire_policy: Some(common::JobMisfirePolicy {
            catch_up: common::JobMisfireCatchUp::Skip.into(),
            window: None,
        }),
        ..Default::default()
    };
    let seen = upstream::Job::decode(kairos.encode_to_vec().as_slice()).expect("upstream decodes");
    assert_eq!(seen.schedule.as_deref(), Some("@every 1s"));
    // A policy message with no known member: upstream applies its default policy.
    assert_eq!(seen.failure_policy, Some(upstream::JobFailurePolicy { constant: None }));

    // And a kairos peer reads an upstream job as one without extensions.
    let upstream = upstream::Job { schedule: Some("@every 2s".into()), failure_policy: None };
    let read = scheduler::Job::decode(upstream.encode_to_vec().as_slice()).unwrap();
    assert_eq!(read, scheduler::Job { schedule: Some("@every 2s".into()), ..Default::default() });
}
