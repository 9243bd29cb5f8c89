//! The HTTP Jobs API's JSON bodies (spec §2.2, §2.3) through the public decoder and renderer:
//! the spec's table cases, the protojson rules the module documents, and round trips.

use kairos_core::{JobSpec, Payload};
use kairos_proto::json::{self as proto_json, MAX_DATA_DEPTH, MAX_JSON_DEPTH, VALUE_TYPE_URL};
use kairos_sidecar::errors::ApiError;
use kairos_sidecar::http_json::{ScheduleRequest, job_to_json, parse_schedule_body};
use policies::*;
use prost::Message;
use prost_types::value::Kind;
use serde_json::json;

/// Failure policies without a jiff dependency: built through the proto conversions.
mod policies {
    use kairos_core::FailurePolicy;
    use kairos_proto::{common, convert};

    pub fn constant(seconds: i64, nanos: i32, max_retries: Option<u32>) -> FailurePolicy {
        let proto = common::JobFailurePolicy {
            policy: Some(common::job_failure_policy::Policy::Constant(common::JobFailurePolicyConstant {
                interval: Some(prost_types::Duration { seconds, nanos }),
                max_retries,
            })),
        };
        convert::policy_from_proto(proto).unwrap().unwrap()
    }

    pub fn constant_unset() -> FailurePolicy {
        FailurePolicy::Constant { interval: None, max_retries: None }
    }
}

fn parse(body: &str) -> Result<ScheduleRequest, ApiError> {
    parse_schedule_body("job", body.as_bytes())
}

fn parse_ok(body: &str) -> JobSpec {
    parse(body).unwrap_or_else(|e| panic!("{body}: {e}")).spec
}

fn malformed(body: &str) -> String {
    match parse(body) {
        Err(ApiError::MalformedBody(msg)) => msg,
        other => panic!("{body}: expected a malformed body, got {other:?}"),
    }
}

fn data_json(spec: &JobSpec) -> serde_json::Value {
    let json: serde_json::Value = serde_json::from_str(&job_to_json("job", spec).unwrap()).unwrap();
    json["data"].clone()
}

fn value_payload(json: serde_json::Value) -> Payload {
    Payload {
        type_url: VALUE_TYPE_URL.into(),
        value: proto_json::value_from_json(json).unwrap().encode_to_vec(),
    }
}

// spec §2.2: the accepted example, verbatim.
#[test]
fn spec_2_2_accepts_the_upstream_example_body() {
    let body = r#"{"schedule":"@every 1m","repeats":123,"dueTime":"1000s","ttl":"123s","data":"hello world","failure_policy":{"constant":{"interval":"3s","max_retries":5}}}"#;
    let req = parse_schedule_body("  my-job ", body.as_bytes()).unwrap();
    assert_eq!(req.name, "my-job");
    assert!(!req.overwrite);
    assert_eq!(req.spec, upstream_example_spec());
}

/// The job of the upstream example body (spec §2.2), as parsed and as rendered.
fn upstream_example_spec() -> JobSpec {
    JobSpec {
        schedule: Some("@every 1m".into()),
        repeats: Some(123),
        due_time: Some("1000s".into()),
        ttl: Some("123s".into()),
        data: Some(value_payload(json!("hello world"))),
        failure_policy: Some(constant(3, 0, Some(5))),
        misfire_policy: None,
    }
}

#[test]
fn spec_2_2_both_name_styles_are_accepted() {
    let camel = parse_ok(
        r#"{"dueTime":"1s","failurePolicy":{"constant":{"interval":"2s","maxRetries":1}},"overwrite":true}"#,
    );
    let snake = parse_ok(
        r#"{"due_time":"1s","failure_policy":{"constant":{"interval":"2s","max_retries":1}},"overwrite":true}"#,
    );
    assert_eq!(camel, snake);
    assert_eq!(camel.due_time.as_deref(), Some("1s"));
    assert_eq!(camel.failure_policy, Some(constant(2, 0, Some(1))));
    assert!(parse(r#"{"dueTime":"1s","overwrite":true}"#).unwrap().overwrite);
    // Only the exact JSON or proto name: other spellings are unknown, hence ignored.
    assert_eq!(parse(r#"{"DueTime":"1s"}"#), Err(ApiError::EmptySchedule));
    assert_eq!(parse(r#"{"duetime":"1s"}"#), Err(ApiError::EmptySchedule));
}

#[test]
fn spec_2_2_unknown_fields_are_ignored_but_must_be_valid_json() {
    let spec = parse_ok(r#"{"schedule":"@daily","foo":{"bar":[1,2,{"x":null}]},"foo":1,"@type":"x"}"#);
    assert_eq!(spec, JobSpec { schedule: Some("@daily".into()), ..JobSpec::default() });
    malformed(r#"{"schedule":"@daily","foo":[1,}"#);
    malformed(r#"{"schedule":"@daily","foo":tru}"#);
}

#[test]
fn spec_2_2_data_takes_every_json_type() {
    for data in [
        json!("hello world"),
        json!(123),
        json!(-1.5),
        json!(1e300),
        json!(true),
        json!(false),
        json!(null),
        json!([1, "two", {"three": 3}, [], {}]),
        json!({}),
        json!({"Task": "db-backup", "Metadata": {"DBName": "my-prod-db", "BackupLocation": "/backup-dir"}}),
        // spec §2.2: an Any look-alike is a plain object
        json!({"@type": "type.googleapis.com/google.protobuf.StringValue", "value": "x"}),
    ] {
        let body = json!({"schedule": "@every 1s", "data": data}).to_string();
        let spec = parse_ok(&body);
        assert_eq!(spec.data, Some(value_payload(data.clone())), "{body}");
        assert_eq!(data_json(&spec), json!({"@type": VALUE_TYPE_URL, "value": data}), "{body}");
    }
}

#[test]
fn spec_2_2_absent_data_is_none_and_null_data_is_a_null_value() {
    assert_eq!(parse_ok(r#"{"schedule":"@daily"}"#).data, None);
    let spec = parse_ok(r#"{"schedule":"@daily","data":null}"#);
    assert_eq!(spec.data, Some(Payload { type_url: VALUE_TYPE_URL.into(), value: vec![0x08, 0x00] }));
    assert_eq!(
        job_to_json("j", &spec).unwrap(),
        format!(r#"{{"name":"j","schedule":"@daily","data":{{"@type":"{VALUE_TYPE_URL}","value":null}}}}"#)
    );
}

#[test]
fn spec_2_2_null_means_unset_for_every_other_field() {
    let spec = parse_ok(
        r#"{"name":null,"schedule":"@daily","repeats":null,"dueTime":null,"ttl":null,"overwrite":null,"failurePolicy":null}"#,
    );
    assert_eq!(spec, JobSpec { schedule: Some("@daily".into()), ..JobSpec::default() });
    assert_eq!(parse(r#"{"schedule":null}"#), Err(ApiError::EmptySchedule));
    // inside the policy too; an empty policy message means "no policy"
    assert_eq!(parse_ok(r#"{"dueTime":"1s","failurePolicy":{"drop":null}}"#).failure_policy, None);
    assert_eq!(
        parse_ok(
            r#"{"dueTime":"1s","failurePolicy":{"drop":null,"constant":{"interval":null,"maxRetries":null}}}"#
        )
        .failure_policy,
        Some(constant_unset())
    );
}

#[test]
fn spec_2_2_failure_policies() {
    use kairos_core::FailurePolicy;
    let p = |body: &str| parse_ok(&format!(r#"{{"dueTime":"1s","failurePolicy":{body}}}"#)).failure_policy;
    assert_eq!(p(r#"{"drop":{}}"#), Some(FailurePolicy::Drop));
    assert_eq!(p(r#"{"drop":{"unknown":1}}"#), Some(FailurePolicy::Drop));
    assert_eq!(p(r#"{"constant":{}}"#), Some(constant_unset()));
    assert_eq!(p(r#"{"constant":{"interval":"1.5s"}}"#), Some(constant(1, 500_000_000, None)));
    assert_eq!(
        p(r#"{"constant":{"maxRetries":"7"}}"#),
        Some(FailurePolicy::Constant { interval: None, max_retries: Some(7) })
    );
    assert_eq!(p("{}"), None);
    malformed(r#"{"dueTime":"1s","failurePolicy":{"drop":{},"constant":{}}}"#);
    malformed(r#"{"dueTime":"1s","failurePolicy":{"drop":true}}"#);
    malformed(r#"{"dueTime":"1s","failurePolicy":"drop"}"#);
    malformed(r#"{"dueTime":"1s","failurePolicy":{"constant":{"maxRetries":-1}}}"#);
    malformed(r#"{"dueTime":"1s","failurePolicy":{"constant":{"interval":3}}}"#);
}

// spec §2.2: interval is a protojson Duration string.
#[test]
fn spec_2_2_interval_uses_protojson_duration_syntax() {
    // the syntax table is kairos_proto::json's; here: it is what the body reads
    let interval = |i: &str| {
        parse(&format!(r#"{{"dueTime":"1s","failurePolicy":{{"constant":{{"interval":"{i}"}}}}}}"#))
            .map(|r| r.spec.failure_policy)
    };
    assert_eq!(interval("1.5s"), Ok(Some(constant(1, 500_000_000, None))));
    assert_eq!(interval(".s"), Ok(Some(constant(0, 0, None))));
    assert_eq!(interval("-.5s"), Ok(Some(constant(0, -500_000_000, None))));
    for bad in ["1m", "1", "01s", "1.0000000001s", " 1s", "1h30ms"] {
        assert!(matches!(interval(bad), Err(ApiError::MalformedBody(_))), "{bad}");
    }
    let body = |i: &str| format!(r#"{{"dueTime":"1s","failurePolicy":{{"constant":{{"interval":"{i}"}}}}}}"#);
    let msg = malformed(&body("1m"));
    assert!(msg.contains(r#"invalid google.protobuf.Duration value "1m""#), "{msg}");
    let msg = malformed(&body("315576000001s"));
    assert!(msg.contains("out of range"), "{msg}");
}

// spec §2.2 / §2.4: repeats is a uint32; anything else is a 400 ERR_MALFORMED_REQUEST.
#[test]
fn spec_2_2_repeats_is_a_uint32_number_or_quoted_number() {
    let r = |v: &str| parse(&format!(r#"{{"schedule":"@daily","repeats":{v}}}"#)).map(|r| r.spec.repeats);
    for (v, want) in [
        ("5", 5),
        ("0", 0),
        ("\"5\"", 5),
        ("4294967295", u32::MAX),
        ("\"4294967295\"", u32::MAX),
        ("1e2", 100),
        ("1E+2", 100),
        ("5.0", 5),
        ("0.5e1", 5),
        ("10e-1", 1),
        ("-0", 0),
        ("\"1e1\"", 10),
        // protojson reads only the first JSON token of the string
        ("\"5 6\"", 5),
    ] {
        assert_eq!(r(v), Ok(Some(want)), "{v}");
    }
    for v in [
        "-1",
        "1.5",
        "4294967296",
        "1e10",
        "1e-1",
        "true",
        "[1]",
        "{}",
        "\"\"",
        "\" 5\"",
        "\"5 \"",
        "\"abc\"",
        "\"-1\"",
        "\"0x10\"",
        "\"5x\"",
        "01",
        "1.",
        "+1",
        ".5",
        "NaN",
        "Infinity",
    ] {
        let Err(ApiError::MalformedBody(msg)) = r(v) else { panic!("{v}: {:?}", r(v)) };
        assert!(msg.starts_with("proto: "), "{v}: {msg}");
    }
    // The position is where the reader stopped (protojson gives the token's start, 1:32).
    let msg = malformed(r#"{"schedule":"@daily","repeats":-1}"#);
    assert_eq!(msg, "proto: (line 1:34): invalid value for uint32 field repeats: -1");
    // exactness on the decimal digits, which a double would round to an integer
    malformed(r#"{"schedule":"@daily","repeats":4294967295.00000000001}"#);
    let (status, body) = ApiError::MalformedBody(msg).http_body("app", "ns");
    assert_eq!(status, 400);
    assert!(
        body.starts_with(
            r#"{"errorCode":"ERR_MALFORMED_REQUEST","message":"failed deserializing HTTP body: "#
        )
    );
}

#[test]
fn spec_2_2_wrong_types_are_malformed() {
    for body in [
        r#"{"schedule":1}"#,
        r#"{"schedule":["@daily"]}"#,
        r#"{"dueTime":true}"#,
        r#"{"ttl":{}}"#,
        r#"{"overwrite":"true"}"#,
        r#"{"overwrite":1}"#,
        r#"{"name":1}"#,
        r#"{"data":1e400}"#,
        r#"{"data":-1e400}"#,
    ] {
        malformed(body);
    }
}

#[test]
fn spec_2_2_body_must_be_one_json_object() {
    let msg = malformed("[{}]");
    assert!(msg.starts_with("proto: (line 1:"), "{msg}");
    assert!(msg.contains("invalid type: sequence"), "{msg}");
    // objects only, for the nested messages too (serde would read an array of fields)
    malformed(r#"{"dueTime":"1s","failurePolicy":{"constant":["3s",5]}}"#);
    malformed(r#"{"dueTime":"1s","failurePolicy":[{"drop":{}}]}"#);
    malformed(r#"{"dueTime":"1s","failurePolicy":{"drop":[]}}"#);
    for body in [
        "\"x\"",
        "1",
        "null",
        "true",
        " ",
        "{",
        "{\"schedule\":\"@daily\"",
        "{}{}",
        "{} x",
        "{\"a\":1,}",
        "{\"a\" 1}",
        "{'a':1}",
        "{\"a\":01}",
        "{\"a\":\"\\x\"}",
        "{\"a\":\"\\ud800\"}",
        "{\"a\":\"\\udc00\\ud800\"}",
        // unpaired surrogates inside data and known strings too
        "{\"schedule\":\"\\ud800x\"}",
        "{\"dueTime\":\"1s\",\"data\":[\"\\udc00\"]}",
        "{\"dueTime\":\"1s\",\"data\":{\"\\ud800\\u0041\":1}}",
        "{\"a\":\"tab\there\"}",
        "\u{feff}{}",
    ] {
        malformed(body);
    }
    assert!(matches!(parse_schedule_body("j", b"{\"schedule\":\"\xff\"}"), Err(ApiError::MalformedBody(_))));
    // whitespace around the object is fine
    assert_eq!(parse_ok(" \n\t{\"schedule\":\"@daily\"}\r\n ").schedule.as_deref(), Some("@daily"));
}

#[test]
fn spec_2_2_duplicate_fields_are_malformed_under_either_name() {
    let msg = malformed(r#"{"dueTime":"1s","due_time":"2s"}"#);
    assert!(msg.starts_with("proto: (line 1:") && msg.contains("duplicate field `dueTime`"), "{msg}");
    malformed(r#"{"schedule":"a","schedule":"b"}"#);
    // a null still counts as given
    malformed(r#"{"schedule":null,"schedule":"b"}"#);
    malformed(r#"{"dueTime":"1s","failurePolicy":{"constant":{"maxRetries":1,"max_retries":2}}}"#);
    let msg = malformed(r#"{"dueTime":"1s","data":{"a":1,"a":2}}"#);
    assert!(msg.contains(r#"duplicate map key "a""#), "{msg}");
}

#[test]
fn json_escapes_are_decoded() {
    let spec = parse_ok(r#"{"schedule":"\u0040daily","data":"\ud83d\ude00 \"q\" \\ \/ \b\f\n\r\t"}"#);
    assert_eq!(spec.schedule.as_deref(), Some("@daily"));
    assert_eq!(data_json(&spec)["value"], json!("😀 \"q\" \\ / \u{8}\u{c}\n\r\t"));
}

// spec §2.4: daprd's checks and their order.
#[test]
fn spec_2_4_checks_run_in_daprd_order() {
    assert_eq!(parse_schedule_body("j", b""), Err(ApiError::EmptySchedule));
    assert_eq!(parse_schedule_body("j", b"{}"), Err(ApiError::EmptySchedule));
    assert_eq!(parse_schedule_body(" \t", br#"{"schedule":"@daily"}"#), Err(ApiError::EmptyName));
    assert_eq!(parse_schedule_body("\u{a0}\u{3000}", b""), Err(ApiError::EmptyName));
    assert_eq!(parse_schedule_body(" ", br#"{"name":"x"}"#), Err(ApiError::NameInBody));
    assert_eq!(parse_schedule_body("j", br#"{"name":"x","schedule":"@daily"}"#), Err(ApiError::NameInBody));
    assert!(matches!(parse_schedule_body(" ", br#"{"name":1}"#), Err(ApiError::MalformedBody(_))));
    // an empty name in the body is no name
    assert_eq!(parse_schedule_body("j", br#"{"name":"","dueTime":"1s"}"#).unwrap().name, "j");
    // an empty schedule string is present: the scheduler judges it
    assert_eq!(parse_ok(r#"{"schedule":""}"#).schedule.as_deref(), Some(""));
}

#[test]
fn deep_nesting_is_refused_without_overflowing() {
    let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    let data = |n: usize| format!(r#"{{"schedule":"@daily","data":{}}}"#, deep(n));
    let spec = parse_ok(&data(MAX_DATA_DEPTH));
    // what kairos accepts it can render again
    assert!(job_to_json("j", &spec).is_ok());
    let msg = malformed(&data(MAX_DATA_DEPTH + 1));
    assert!(msg.contains("nests deeper"), "{msg}");
    // unknown fields may nest up to the JSON limit
    let unknown = |n: usize| format!(r#"{{"schedule":"@daily","x":{}}}"#, deep(n));
    parse_ok(&unknown(MAX_JSON_DEPTH - 1));
    malformed(&unknown(MAX_JSON_DEPTH));
    malformed(&"[".repeat(100_000));
}

// spec §2.3: the GET body.
#[test]
fn spec_2_3_job_renders_as_protojson_in_field_order() {
    let spec = upstream_example_spec();
    assert_eq!(
        job_to_json("my-job", &spec).unwrap(),
        r#"{"name":"my-job","schedule":"@every 1m","repeats":123,"dueTime":"1000s","ttl":"123s","data":{"@type":"type.googleapis.com/google.protobuf.Value","value":"hello world"},"failurePolicy":{"constant":{"interval":"3s","maxRetries":5}}}"#
    );
    let spec = JobSpec { due_time: Some("10s".into()), ..JobSpec::default() }.with_default_policy();
    assert_eq!(
        job_to_json("j", &spec).unwrap(),
        r#"{"name":"j","dueTime":"10s","failurePolicy":{"constant":{"interval":"1s","maxRetries":3}}}"#
    );
    let spec = JobSpec {
        schedule: Some(String::new()),
        repeats: Some(0),
        failure_policy: Some(kairos_core::FailurePolicy::Drop),
        ..JobSpec::default()
    };
    assert_eq!(job_to_json("", &spec).unwrap(), r#"{"schedule":"","repeats":0,"failurePolicy":{"drop":{}}}"#);
    let spec = JobSpec { failure_policy: Some(constant_unset()), ..JobSpec::default() };
    assert_eq!(job_to_json("j\"<", &spec).unwrap(), r#"{"name":"j\"<","failurePolicy":{"constant":{}}}"#);
}

// spec §2.3 / §7.9: data from gRPC SDKs (the Any table itself is tested in kairos_proto::json).
#[test]
fn spec_2_3_unrenderable_data_is_a_500() {
    for (url, value) in [
        ("type.googleapis.com/io.dapr.RustTest", b"x".to_vec()),
        ("dapr.io/schedule/jobpayload", b"x".to_vec()),
        ("", b"{\"a\":1}".to_vec()),
        (VALUE_TYPE_URL, vec![0xff]),
        (VALUE_TYPE_URL, prost_types::Value { kind: Some(Kind::NumberValue(f64::NAN)) }.encode_to_vec()),
    ] {
        let spec = JobSpec { data: Some(Payload { type_url: url.into(), value }), ..JobSpec::default() };
        let err = job_to_json("j", &spec).unwrap_err();
        assert!(err.to_string().starts_with("failed to encode response as JSON: proto: "), "{err}");
        assert_eq!(err.http_status(), 500);
    }
    // the Python SDK's empty Any
    let spec = JobSpec { data: Some(Payload::default()), ..JobSpec::default() };
    assert_eq!(job_to_json("j", &spec).unwrap(), r#"{"name":"j","data":{}}"#);
}

// The numbers GET shows are the ones an HTTP app receives (app_channel's tests).
#[test]
fn spec_2_3_numbers_render_as_protojson() {
    let spec = parse_ok(r#"{"dueTime":"1s","data":{"b":1e20,"d":-0.0,"e":1e21,"f":1e-7,"g":123.0}}"#);
    assert_eq!(
        data_json_text(&spec),
        r#"{"@type":"type.googleapis.com/google.protobuf.Value","value":{"b":100000000000000000000,"d":-0,"e":1e+21,"f":1e-7,"g":123}}"#
    );
}

fn data_json_text(spec: &JobSpec) -> String {
    let rendered = job_to_json("j", spec).unwrap();
    let start = rendered.find(r#""data":"#).unwrap() + r#""data":"#.len();
    rendered[start..rendered.len() - 1].to_owned()
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            ".*".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
                prop::collection::btree_map(".*", inner, 0..6)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn parse_never_panics_on_bytes(body in prop::collection::vec(any::<u8>(), 0..256), name in ".*") {
            let _ = parse_schedule_body(&name, &body);
        }

        #[test]
        fn parse_never_panics_on_near_json(body in r#"[\{\}\[\]":,0-9a-z_.eE+\- \\]{0,64}"#) {
            let _ = parse_schedule_body("j", body.as_bytes());
            let _ = parse_schedule_body("j", format!(r#"{{"schedule":"x","repeats":{body}}}"#).as_bytes());
            let _ = parse_schedule_body("j", format!(r#"{{"dueTime":"1s","data":{body}}}"#).as_bytes());
        }

        #[test]
        fn data_round_trips_through_parse_and_render(data in json_value()) {
            let body = json!({"dueTime": "1s", "data": data}).to_string();
            let spec = parse_schedule_body("j", body.as_bytes()).unwrap().spec;
            let payload = spec.data.clone().unwrap();
            // parsed as the codec encodes the same JSON
            prop_assert_eq!(&payload, &value_payload(data.clone()));
            // rendered, then read back, it is the same value
            let value = prost_types::Value::decode(payload.value.as_slice()).unwrap();
            let text = proto_json::value_to_string(&value).unwrap();
            let rendered = job_to_json("j", &spec).unwrap();
            let expected = format!(r#""data":{{"@type":"{VALUE_TYPE_URL}","value":{text}}}"#);
            prop_assert!(rendered.contains(&expected));
            let again = parse_schedule_body("j", format!(r#"{{"dueTime":"1s","data":{text}}}"#).as_bytes());
            prop_assert_eq!(again.unwrap().spec.data, Some(payload));
            // and it is JSON any parser reads
            let _: serde_json::Value = serde_json::from_str(&rendered).unwrap();
        }
    }
}

// ---- kairos extensions: misfirePolicy and failurePolicy.exponential ----

#[test]
fn extensions_are_read_and_rendered_back() {
    let body = r#"{"schedule":"@every 1s","misfirePolicy":{"catchUp":"once","window":"1h"},
        "failurePolicy":{"exponential":{"initialInterval":"1s","multiplier":2,"maxInterval":"1m","maxRetries":5,"jitter":0.1}}}"#;
    let spec = parse_ok(body);
    let misfire = spec.misfire_policy.expect("misfire policy read");
    assert_eq!(misfire.catch_up, kairos_core::CatchUp::Once);
    assert_eq!(misfire.window.map(|w| w.as_secs()), Some(3600));
    let kairos_core::FailurePolicy::Exponential(e) = spec.failure_policy.clone().expect("policy read") else {
        panic!("not exponential: {:?}", spec.failure_policy)
    };
    assert_eq!((e.initial_interval.as_secs(), e.multiplier.as_f64(), e.max_retries), (1, 2.0, Some(5)));
    assert_eq!((e.max_interval.map(|m| m.as_secs()), e.jitter.as_f64()), (Some(60), 0.1));
    let rendered = job_to_json("job", &spec).unwrap();
    assert_eq!(
        rendered,
        r#"{"name":"job","schedule":"@every 1s","failurePolicy":{"exponential":{"initialInterval":"1s","multiplier":2,"maxInterval":"60s","maxRetries":5,"jitter":0.1}},"misfirePolicy":{"catchUp":"once","window":"3600s"}}"#
    );
    // What GET renders reads back as the same job.
    let again: serde_json::Value = serde_json::from_str(&rendered).unwrap();
    let mut again = again.as_object().unwrap().clone();
    again.remove("name");
    assert_eq!(parse_ok(&serde_json::Value::Object(again).to_string()), spec);
}

#[test]
fn extension_members_are_optional_and_snake_case_works() {
    let spec = parse_ok(
        r#"{"dueTime":"1s","misfire_policy":{},"failure_policy":{"exponential":{"initial_interval":"250ms"}}}"#,
    );
    assert_eq!(spec.misfire_policy, Some(kairos_core::MisfirePolicy::DEFAULT));
    let Some(kairos_core::FailurePolicy::Exponential(e)) = spec.failure_policy else { panic!() };
    assert_eq!((e.initial_interval.as_millis(), e.multiplier.as_f64(), e.jitter.as_f64()), (250, 2.0, 0.0));
    assert_eq!((e.max_interval, e.max_retries), (None, None));
    let spec = parse_ok(r#"{"schedule":"@every 1s","misfirePolicy":{"catchUp":"skip"}}"#);
    assert_eq!(
        job_to_json("j", &spec).unwrap(),
        r#"{"name":"j","schedule":"@every 1s","misfirePolicy":{"catchUp":"skip"}}"#
    );
}

#[test]
fn bad_extension_values_are_malformed_bodies() {
    let cases = [
        (r#"{"misfirePolicy":{"catchUp":"sometimes"}}"#, "expected all, once or skip"),
        (r#"{"misfirePolicy":{"catchUp":"ALL"}}"#, "expected all, once or skip"),
        (r#"{"misfirePolicy":{"window":"500ms"}}"#, "invalid misfire window"),
        (r#"{"misfirePolicy":{"window":"-1h"}}"#, "invalid misfire window"),
        (r#"{"misfirePolicy":{"window":"soon"}}"#, "invalid duration"),
        (r#"{"failurePolicy":{"exponential":{}}}"#, "initial interval"),
        (r#"{"failurePolicy":{"exponential":{"initialInterval":"0s"}}}"#, "initial interval"),
        (r#"{"failurePolicy":{"exponential":{"initialInterval":"-1s"}}}"#, "initial interval"),
        (r#"{"failurePolicy":{"exponential":{"initialInterval":"1s","multiplier":0.5}}}"#, "multiplier"),
        (r#"{"failurePolicy":{"exponential":{"initialInterval":"1s","jitter":1.5}}}"#, "jitter"),
        (r#"{"failurePolicy":{"exponential":{"initialInterval":"1s","jitter":-0.5}}}"#, "ratio"),
        (r#"{"failurePolicy":{"exponential":{"initialInterval":"1m","maxInterval":"1s"}}}"#, "max interval"),
        (r#"{"failurePolicy":{"constant":{},"exponential":{"initialInterval":"1s"}}}"#, "already set"),
        (r#"{"failurePolicy":{"drop":{},"exponential":{"initialInterval":"1s"}}}"#, "already set"),
    ];
    for (extension, expected) in cases {
        let mut body: serde_json::Value = serde_json::from_str(extension).unwrap();
        body["schedule"] = json!("@every 1s");
        let err = parse(&body.to_string()).unwrap_err();
        assert!(matches!(err, ApiError::MalformedBody(_)), "{extension}: {err:?}");
        assert!(err.to_string().contains(expected), "{extension}: {err}");
    }
}

/// A body part of the wrong JSON type is named by its field and message, not by our types.
#[test]
fn wrong_types_are_named_by_the_message_they_should_be() {
    for (body, expected) in [
        ("[]", "invalid type: sequence, expected a job object"),
        (
            r#"{"failurePolicy":5}"#,
            "invalid type: integer `5`, expected a failurePolicy object (JobFailurePolicy)",
        ),
        (r#"{"failurePolicy":{"constant":[]}}"#, "expected a constant object (JobFailurePolicyConstant)"),
        (r#"{"failurePolicy":{"drop":"x"}}"#, "expected a drop object (JobFailurePolicyDrop)"),
        (
            r#"{"failurePolicy":{"exponential":true}}"#,
            "expected an exponential object (JobFailurePolicyExponential)",
        ),
        (r#"{"misfirePolicy":"x"}"#, "expected a misfirePolicy object (JobMisfirePolicy)"),
    ] {
        let message = malformed(body);
        assert!(message.contains(expected), "{body}: {message}");
        assert!(!message.contains("struct"), "{body}: {message}");
    }
}
