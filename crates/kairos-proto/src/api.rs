//! The Scheduler API as a Rust trait: what a sidecar needs from a scheduler.
//!
//! [`SchedulerApi`] has one method per RPC of `dapr.proto.scheduler.v1.Scheduler`, without the
//! tonic request/response wrappers. The sidecar is written against it; two implementations
//! exist: the gRPC client (here), and the scheduler service itself (in `kairos-scheduler`), which
//! `kairos run` hands to its embedded sidecar so the single-machine path has no network hop.
//! [`SchedulerGrpc`] serves any implementation as the gRPC service. [`SteerApi`] is the same for
//! the steering RPCs of `kairos.admin.v1.Admin`, which a sidecar calls for its app's own jobs:
//! the Admin gRPC client, or [`AdminInProcess`] over the Admin service in `kairos run`.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use tonic::Status;
use tonic::codegen::BoxStream;

use crate::admin::admin_client::AdminClient;
use crate::admin::admin_server::Admin;
use crate::admin::{
    GetJobHistoryRequest, GetJobHistoryResponse, GetJobStatusRequest, GetJobStatusResponse,
    ListJobStatusRequest, ListJobStatusResponse, PauseJobRequest, PauseJobResponse, ResumeJobRequest,
    ResumeJobResponse, TriggerJobRequest, TriggerJobResponse,
};
use crate::scheduler::scheduler_client::SchedulerClient;
use crate::scheduler::scheduler_server::Scheduler;
use crate::scheduler::{
    DeleteByMetadataRequest, DeleteByMetadataResponse, DeleteByNamePrefixRequest, DeleteByNamePrefixResponse,
    DeleteJobRequest, DeleteJobResponse, GetJobRequest, GetJobResponse, ListJobsRequest, ListJobsResponse,
    ScheduleJobRequest, ScheduleJobResponse, WatchHostsRequest, WatchHostsResponse, WatchJobsRequest,
    WatchJobsResponse,
};

/// A stream of results, as tonic's streaming RPCs use.
pub type ApiStream<T> = BoxStream<T>;

/// Writes one of the API traits (`pub trait A`), or an `#[async_trait]` impl of one in which
/// every listed unary method forwards its request the same way; streaming methods come first,
/// written out, then the list of unary ones.
///
/// * `client C`: the gRPC client `C<T>` over any channel (plain, or wrapped in layers such as an
///   interceptor that adds an API token) calls the RPC of the same name.
/// * `in_process W<T: S>`: `W(Arc<T>)` calls the tonic service trait `S` of the same process.
/// * `serve W<T: A>`: `W(Arc<T>)` serves the API trait `A` as the tonic service trait, with
///   status messages cut by [`bounded_status`].
macro_rules! forwarding_impl {
    (
        $(#[$doc:meta])*
        pub trait $api:ident;
        { $($streaming:tt)* }
        $($method:ident($request:ty) -> $response:ty;)*
    ) => {
        $(#[$doc])*
        #[async_trait]
        pub trait $api: Send + Sync + fmt::Debug + 'static {
            $(async fn $method(&self, request: $request) -> Result<$response, Status>;)*
            $($streaming)*
        }
    };
    (
        impl $api:ident for client $client:ident;
        { $($streaming:tt)* }
        $($method:ident($request:ty) -> $response:ty;)*
    ) => {
        #[async_trait]
        impl<T> $api for $client<T>
        where
            T: tonic::client::GrpcService<tonic::body::Body> + Clone + fmt::Debug + Send + Sync + 'static,
            T::Future: Send,
            T::Error: Into<tonic::codegen::StdError>,
            T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
            <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
        {
            $(
                async fn $method(&self, request: $request) -> Result<$response, Status> {
                    Ok($client::$method(&mut self.clone(), request).await?.into_inner())
                }
            )*
            $($streaming)*
        }
    };
    (
        impl $api:ident for in_process $wrapper:ident<T: $service:ident>;
        {}
        $($method:ident($request:ty) -> $response:ty;)*
    ) => {
        #[async_trait]
        impl<T: $service + fmt::Debug> $api for $wrapper<T> {
            $(
                async fn $method(&self, request: $request) -> Result<$response, Status> {
                    Ok(self.0.$method(tonic::Request::new(request)).await?.into_inner())
                }
            )*
        }
    };
    (
        impl $service:ident for serve $wrapper:ident<T: $api:ident>;
        { $($streaming:tt)* }
        $($method:ident($request:ty) -> $response:ty;)*
    ) => {
        #[async_trait]
        impl<T: $api + ?Sized> $service for $wrapper<T> {
            $(
                async fn $method(
                    &self,
                    request: tonic::Request<$request>,
                ) -> Result<tonic::Response<$response>, Status> {
                    let response = self.0.$method(request.into_inner()).await;
                    response.map(tonic::Response::new).map_err(bounded_status)
                }
            )*
            $($streaming)*
        }
    };
}

/// [`forwarding_impl!`] with the unary RPCs of the Scheduler service.
macro_rules! scheduler_unary_impl {
    ($($head:tt)*) => {
        forwarding_impl! {
            $($head)*
            schedule_job(ScheduleJobRequest) -> ScheduleJobResponse;
            get_job(GetJobRequest) -> GetJobResponse;
            delete_job(DeleteJobRequest) -> DeleteJobResponse;
            list_jobs(ListJobsRequest) -> ListJobsResponse;
            delete_by_metadata(DeleteByMetadataRequest) -> DeleteByMetadataResponse;
            delete_by_name_prefix(DeleteByNamePrefixRequest) -> DeleteByNamePrefixResponse;
        }
    };
}

/// [`forwarding_impl!`] with the steering RPCs of the Admin service.
macro_rules! steer_unary_impl {
    ($($head:tt)*) => {
        forwarding_impl! {
            $($head)*
            get_job_status(GetJobStatusRequest) -> GetJobStatusResponse;
            get_job_history(GetJobHistoryRequest) -> GetJobHistoryResponse;
            pause_job(PauseJobRequest) -> PauseJobResponse;
            resume_job(ResumeJobRequest) -> ResumeJobResponse;
            trigger_job(TriggerJobRequest) -> TriggerJobResponse;
            list_job_status(ListJobStatusRequest) -> ListJobStatusResponse;
        }
    };
}

scheduler_unary_impl! {
    /// One method per Scheduler RPC; errors are gRPC statuses, as the wire carries them.
    pub trait SchedulerApi;
    {
        /// Opens a trigger stream. The first request must be `initial`; later ones are results.
        async fn watch_jobs(
            &self,
            requests: ApiStream<WatchJobsRequest>,
        ) -> Result<ApiStream<WatchJobsResponse>, Status>;
        /// The scheduler replicas' addresses, now and whenever they change.
        async fn watch_hosts(&self) -> Result<ApiStream<WatchHostsResponse>, Status>;
    }
}

steer_unary_impl! {
    /// The steering RPCs of `kairos.admin.v1.Admin` (status, history, pause, resume, trigger,
    /// list with status): what a sidecar needs to let its app steer its own jobs. Implemented by the
    /// Admin gRPC client (a remote kairos scheduler) and, through [`AdminInProcess`], by any Admin
    /// service in the same process (`kairos run`). An upstream Dapr scheduler has no Admin service:
    /// every call then fails with UNIMPLEMENTED.
    pub trait SteerApi;
    {}
}

scheduler_unary_impl! {
    impl SchedulerApi for client SchedulerClient;
    {
        async fn watch_jobs(
            &self,
            requests: ApiStream<WatchJobsRequest>,
        ) -> Result<ApiStream<WatchJobsResponse>, Status> {
            // The client sends requests until the stream ends or yields an error.
            let outbound = UntilError { inner: requests, done: false };
            let responses = SchedulerClient::watch_jobs(&mut self.clone(), outbound).await?.into_inner();
            Ok(Box::pin(responses))
        }

        async fn watch_hosts(&self) -> Result<ApiStream<WatchHostsResponse>, Status> {
            let responses =
                SchedulerClient::watch_hosts(&mut self.clone(), WatchHostsRequest {}).await?.into_inner();
            Ok(Box::pin(responses))
        }
    }
}

/// The items of a result stream up to its first error (tonic's client wants plain items).
struct UntilError<T> {
    inner: ApiStream<T>,
    done: bool,
}

impl<T> Stream for UntilError<T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(item))) => Poll::Ready(Some(item)),
            Poll::Ready(_) => {
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Longest status message sent back, in bytes. Messages echo user input (a schedule, a name),
/// and the message travels in an HTTP/2 trailer: a megabyte of it breaks the stream (the client
/// sees an h2 protocol error instead of the validation error).
pub const MAX_STATUS_MESSAGE: usize = 4096;

/// `status` with its message cut to [`MAX_STATUS_MESSAGE`] bytes (at a character boundary),
/// saying how much was cut.
pub fn bounded_status(status: Status) -> Status {
    let message = status.message();
    if message.len() <= MAX_STATUS_MESSAGE {
        return status;
    }
    let mut end = MAX_STATUS_MESSAGE;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let cut = format!("{}… ({} more bytes)", &message[..end], message.len() - end);
    // Keep the details (the sidecar's ErrorInfo carries the Dapr error code there).
    Status::with_details_and_metadata(
        status.code(),
        cut,
        status.details().to_vec().into(),
        status.metadata().clone(),
    )
}

/// Serves any [`SchedulerApi`] as the `dapr.proto.scheduler.v1.Scheduler` gRPC service.
#[derive(Debug)]
pub struct SchedulerGrpc<T: ?Sized>(pub Arc<T>);

impl<T: ?Sized> Clone for SchedulerGrpc<T> {
    fn clone(&self) -> Self {
        SchedulerGrpc(self.0.clone())
    }
}

scheduler_unary_impl! {
    impl Scheduler for serve SchedulerGrpc<T: SchedulerApi>;
    {
        async fn watch_jobs(
            &self,
            request: tonic::Request<tonic::Streaming<WatchJobsRequest>>,
        ) -> Result<tonic::Response<BoxStream<WatchJobsResponse>>, Status> {
            self.0
                .watch_jobs(Box::pin(request.into_inner()))
                .await
                .map(tonic::Response::new)
                .map_err(bounded_status)
        }

        async fn watch_hosts(
            &self,
            _request: tonic::Request<WatchHostsRequest>,
        ) -> Result<tonic::Response<BoxStream<WatchHostsResponse>>, Status> {
            self.0.watch_hosts().await.map(tonic::Response::new).map_err(bounded_status)
        }
    }
}

steer_unary_impl! {
    impl SteerApi for client AdminClient;
    {}
}

/// An `kairos.admin.v1.Admin` service in this process, called without the network (no token:
/// the sidecar in front of it checks its app's).
#[derive(Debug)]
pub struct AdminInProcess<T>(pub Arc<T>);

steer_unary_impl! {
    impl SteerApi for in_process AdminInProcess<T: Admin>;
    {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_status_messages_are_cut_at_a_char_boundary() {
        let short = Status::unknown("job failed validation: x");
        assert_eq!(bounded_status(short.clone()).message(), short.message());
        let long = Status::unknown(format!("job failed validation: {}", "é".repeat(MAX_STATUS_MESSAGE)));
        let cut = bounded_status(long);
        assert_eq!(cut.code(), tonic::Code::Unknown);
        assert!(cut.message().len() < MAX_STATUS_MESSAGE + 40, "{}", cut.message().len());
        assert!(cut.message().starts_with("job failed validation: éé"));
        assert!(cut.message().ends_with("more bytes)"));
        let detailed = Status::with_details(tonic::Code::Internal, "x".repeat(10_000), b"info"[..].into());
        assert_eq!(bounded_status(detailed).details(), b"info");
    }
}
