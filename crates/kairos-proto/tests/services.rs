//! The gRPC surface: every service and method path, its request/response types and streaming
//! kind, checked against the spec's tables (§3.1, §4.1, §5.1) through the file descriptor set
//! that reflection will serve; and the generated clients and servers checked to agree on those
//! paths, with left-out methods answering UNIMPLEMENTED.

use std::collections::BTreeSet;

use kairos_proto::{FILE_DESCRIPTOR_SET, runtime, scheduler};
use prost::Message;
use prost_types::FileDescriptorSet;
use tonic::server::NamedService;
use tonic::{Code, Request, Response, Status};

/// One RPC: full path, request type, response type, client streaming, server streaming.
type Rpc = (&'static str, &'static str, &'static str, bool, bool);

const R: &str = ".dapr.proto.runtime.v1.";

/// The spec's tables, in its order.
#[rustfmt::skip]
const RUNTIME_RPCS: &[Rpc] = &[
    ("/dapr.proto.runtime.v1.Dapr/ScheduleJobAlpha1", "ScheduleJobRequest", "ScheduleJobResponse", false, false),
    ("/dapr.proto.runtime.v1.Dapr/ScheduleJob", "ScheduleJobRequest", "ScheduleJobResponse", false, false),
    ("/dapr.proto.runtime.v1.Dapr/GetJobAlpha1", "GetJobRequest", "GetJobResponse", false, false),
    ("/dapr.proto.runtime.v1.Dapr/GetJob", "GetJobRequest", "GetJobResponse", false, false),
    ("/dapr.proto.runtime.v1.Dapr/DeleteJobAlpha1", "DeleteJobRequest", "DeleteJobResponse", false, false),
    ("/dapr.proto.runtime.v1.Dapr/DeleteJob", "DeleteJobRequest", "DeleteJobResponse", false, false),
    ("/dapr.proto.runtime.v1.Dapr/DeleteJobsByPrefixAlpha1", "DeleteJobsByPrefixRequestAlpha1", "DeleteJobsByPrefixResponseAlpha1", false, false),
    ("/dapr.proto.runtime.v1.Dapr/DeleteJobsByPrefix", "DeleteJobsByPrefixRequest", "DeleteJobsByPrefixResponse", false, false),
    ("/dapr.proto.runtime.v1.Dapr/ListJobsAlpha1", "ListJobsRequestAlpha1", "ListJobsResponseAlpha1", false, false),
    ("/dapr.proto.runtime.v1.Dapr/ListJobs", "ListJobsRequest", "ListJobsResponse", false, false),
    // Not in the spec's Jobs tables: daprd's metadata API (issue 16), SDKs' readiness probe.
    ("/dapr.proto.runtime.v1.Dapr/GetMetadata", "GetMetadataRequest", "GetMetadataResponse", false, false),
    ("/dapr.proto.runtime.v1.AppCallback/OnJobEvent", "JobEventRequest", "JobEventResponse", false, false),
    ("/dapr.proto.runtime.v1.AppCallbackAlpha/OnJobEventAlpha1", "JobEventRequest", "JobEventResponse", false, false),
];

const S: &str = ".dapr.proto.scheduler.v1.";

#[rustfmt::skip]
const SCHEDULER_RPCS: &[Rpc] = &[
    ("/dapr.proto.scheduler.v1.Scheduler/ScheduleJob", "ScheduleJobRequest", "ScheduleJobResponse", false, false),
    ("/dapr.proto.scheduler.v1.Scheduler/GetJob", "GetJobRequest", "GetJobResponse", false, false),
    ("/dapr.proto.scheduler.v1.Scheduler/DeleteJob", "DeleteJobRequest", "DeleteJobResponse", false, false),
    ("/dapr.proto.scheduler.v1.Scheduler/WatchJobs", "WatchJobsRequest", "WatchJobsResponse", true, true),
    ("/dapr.proto.scheduler.v1.Scheduler/ListJobs", "ListJobsRequest", "ListJobsResponse", false, false),
    ("/dapr.proto.scheduler.v1.Scheduler/WatchHosts", "WatchHostsRequest", "WatchHostsResponse", false, true),
    ("/dapr.proto.scheduler.v1.Scheduler/DeleteByMetadata", "DeleteByMetadataRequest", "DeleteByMetadataResponse", false, false),
    ("/dapr.proto.scheduler.v1.Scheduler/DeleteByNamePrefix", "DeleteByNamePrefixRequest", "DeleteByNamePrefixResponse", false, false),
];

fn descriptor_set() -> FileDescriptorSet {
    FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).expect("FILE_DESCRIPTOR_SET decodes")
}

/// (path, request, response, client streaming, server streaming), with full type names.
fn described_rpcs() -> BTreeSet<(String, String, String, bool, bool)> {
    let mut rpcs = BTreeSet::new();
    for file in descriptor_set().file {
        let package = file.package();
        for service in &file.service {
            for method in &service.method {
                rpcs.insert((
                    format!("/{package}.{}/{}", service.name(), method.name()),
                    method.input_type().to_owned(),
                    method.output_type().to_owned(),
                    method.client_streaming(),
                    method.server_streaming(),
                ));
            }
        }
    }
    rpcs
}

fn expected_rpcs() -> BTreeSet<(String, String, String, bool, bool)> {
    let qualify = |rpcs: &[Rpc], prefix: &str| -> Vec<(String, String, String, bool, bool)> {
        rpcs.iter()
            .map(|(path, req, res, cs, ss)| {
                ((*path).to_owned(), format!("{prefix}{req}"), format!("{prefix}{res}"), *cs, *ss)
            })
            .collect()
    };
    let mut rpcs: BTreeSet<_> = qualify(RUNTIME_RPCS, R).into_iter().collect();
    rpcs.extend(qualify(SCHEDULER_RPCS, S));
    rpcs.insert((
        "/dapr.proto.runtime.v1.AppCallbackHealthCheck/HealthCheck".into(),
        ".google.protobuf.Empty".into(),
        format!("{R}HealthCheckResponse"),
        false,
        false,
    ));
    rpcs
}

#[test]
fn descriptor_set_describes_exactly_the_spec_rpcs() {
    let described = described_rpcs();
    let expected = expected_rpcs();
    let missing: Vec<_> = expected.difference(&described).collect();
    let extra: Vec<_> = described.difference(&expected).collect();
    assert!(missing.is_empty() && extra.is_empty(), "missing: {missing:#?}\nextra: {extra:#?}");
}

#[test]
fn descriptor_set_carries_the_imported_well_known_types() {
    // Reflection must be able to answer for every file a service's file depends on.
    let names: BTreeSet<String> =
        descriptor_set().file.into_iter().map(|file| file.name().to_owned()).collect();
    for needed in [
        "dapr/proto/common/v1/common.proto",
        "dapr/proto/runtime/v1/jobs.proto",
        "dapr/proto/runtime/v1/dapr.proto",
        "dapr/proto/runtime/v1/metadata.proto",
        "dapr/proto/runtime/v1/appcallback.proto",
        "dapr/proto/scheduler/v1/scheduler.proto",
        "google/protobuf/any.proto",
        "google/protobuf/duration.proto",
        "google/protobuf/empty.proto",
    ] {
        assert!(names.contains(needed), "{needed} missing from {names:?}");
    }
}

#[test]
fn alpha_rpcs_are_marked_deprecated_and_stable_ones_are_not() {
    for file in descriptor_set().file {
        for service in &file.service {
            for method in &service.method {
                let deprecated = method.options.as_ref().is_some_and(|o| o.deprecated());
                assert_eq!(
                    deprecated,
                    method.name().ends_with("Alpha1"),
                    "{}/{}",
                    service.name(),
                    method.name()
                );
            }
        }
    }
}

#[test]
fn generated_servers_are_named_after_the_full_service() {
    use runtime::app_callback_alpha_server::AppCallbackAlphaServer;
    use runtime::app_callback_health_check_server::AppCallbackHealthCheckServer;
    use runtime::app_callback_server::AppCallbackServer;
    use runtime::dapr_server::DaprServer;
    use scheduler::scheduler_server::SchedulerServer;

    assert_eq!(DaprServer::<Stub>::NAME, "dapr.proto.runtime.v1.Dapr");
    assert_eq!(AppCallbackServer::<Stub>::NAME, "dapr.proto.runtime.v1.AppCallback");
    assert_eq!(AppCallbackAlphaServer::<Stub>::NAME, "dapr.proto.runtime.v1.AppCallbackAlpha");
    assert_eq!(AppCallbackHealthCheckServer::<Stub>::NAME, "dapr.proto.runtime.v1.AppCallbackHealthCheck");
    assert_eq!(SchedulerServer::<Stub>::NAME, "dapr.proto.scheduler.v1.Scheduler");
}

/// Implements one method of each service and leaves the rest to the default stubs.
#[derive(Debug, Clone, Copy)]
struct Stub;

#[tonic::async_trait]
impl runtime::dapr_server::Dapr for Stub {
    async fn schedule_job(
        &self,
        request: Request<runtime::ScheduleJobRequest>,
    ) -> Result<Response<runtime::ScheduleJobResponse>, Status> {
        match request.into_inner().job {
            Some(job) if job.name == "j" => Ok(Response::new(runtime::ScheduleJobResponse {})),
            _ => Err(Status::invalid_argument("job j expected")),
        }
    }
}

#[tonic::async_trait]
impl runtime::app_callback_server::AppCallback for Stub {}

#[tonic::async_trait]
impl runtime::app_callback_alpha_server::AppCallbackAlpha for Stub {
    async fn on_job_event_alpha1(
        &self,
        request: Request<runtime::JobEventRequest>,
    ) -> Result<Response<runtime::JobEventResponse>, Status> {
        assert_eq!(request.into_inner().method, "job/j");
        Ok(Response::new(runtime::JobEventResponse {}))
    }
}

#[tonic::async_trait]
impl runtime::app_callback_health_check_server::AppCallbackHealthCheck for Stub {}

#[tonic::async_trait]
impl scheduler::scheduler_server::Scheduler for Stub {
    async fn list_jobs(
        &self,
        _request: Request<scheduler::ListJobsRequest>,
    ) -> Result<Response<scheduler::ListJobsResponse>, Status> {
        Ok(Response::new(scheduler::ListJobsResponse { jobs: vec![] }))
    }
}

#[tokio::test]
async fn dapr_client_reaches_implemented_methods_and_stubs_answer_unimplemented() {
    use runtime::dapr_client::DaprClient;
    use runtime::dapr_server::DaprServer;

    // The client talks to the server in process, so routing uses the generated path strings
    // on both sides.
    let mut client = DaprClient::new(DaprServer::new(Stub));
    let job = runtime::Job { name: "j".into(), ..Default::default() };
    client
        .schedule_job(runtime::ScheduleJobRequest { job: Some(job.clone()), overwrite: false })
        .await
        .expect("ScheduleJob is implemented");

    let left_out = client
        .get_job(runtime::GetJobRequest { name: "j".into() })
        .await
        .expect_err("GetJob is left to the default stub");
    assert_eq!(left_out.code(), Code::Unimplemented);

    // The alpha twin is a separate route; SDKs fall back to it only on UNIMPLEMENTED.
    #[allow(deprecated)] // calling the deprecated name is the point here
    let alpha = client
        .schedule_job_alpha1(runtime::ScheduleJobRequest { job: Some(job), overwrite: false })
        .await
        .expect_err("ScheduleJobAlpha1 is left to the default stub");
    assert_eq!(alpha.code(), Code::Unimplemented);
}

#[tokio::test]
async fn app_callback_fallback_from_stable_to_alpha() {
    use runtime::app_callback_alpha_client::AppCallbackAlphaClient;
    use runtime::app_callback_alpha_server::AppCallbackAlphaServer;
    use runtime::app_callback_client::AppCallbackClient;
    use runtime::app_callback_health_check_client::AppCallbackHealthCheckClient;
    use runtime::app_callback_health_check_server::AppCallbackHealthCheckServer;
    use runtime::app_callback_server::AppCallbackServer;

    let event = runtime::JobEventRequest { name: "j".into(), method: "job/j".into(), ..Default::default() };
    // An app that serves only the alpha callback, as the Go and JS SDKs do.
    let stable = AppCallbackClient::new(AppCallbackServer::new(Stub))
        .on_job_event(event.clone())
        .await
        .expect_err("OnJobEvent is left to the default stub");
    assert_eq!(stable.code(), Code::Unimplemented);

    #[allow(deprecated)] // the fallback the sidecar must make
    AppCallbackAlphaClient::new(AppCallbackAlphaServer::new(Stub))
        .on_job_event_alpha1(event)
        .await
        .expect("OnJobEventAlpha1 is implemented");

    let health = AppCallbackHealthCheckClient::new(AppCallbackHealthCheckServer::new(Stub))
        .health_check(())
        .await
        .expect_err("HealthCheck is left to the default stub");
    assert_eq!(health.code(), Code::Unimplemented);
}

#[tokio::test]
async fn scheduler_streaming_stubs_answer_unimplemented() {
    use scheduler::scheduler_client::SchedulerClient;
    use scheduler::scheduler_server::SchedulerServer;

    let mut client = SchedulerClient::new(SchedulerServer::new(Stub));
    client.list_jobs(scheduler::ListJobsRequest { metadata: None }).await.expect("ListJobs is implemented");
    let hosts = client
        .watch_hosts(scheduler::WatchHostsRequest {})
        .await
        .expect_err("WatchHosts is left to the default stub");
    assert_eq!(hosts.code(), Code::Unimplemented);
}
