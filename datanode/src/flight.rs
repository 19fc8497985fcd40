//! Arrow Flight on the data node: `DoGet` executes one partition of an encoded plan fragment
//! and streams its batches. Dropping the response stream (client gone, query cancelled) drops
//! the DataFusion stream and with it the shard scan.
//!
//! The same service runs twice: on the transport port for coordinators, taking bare fragment
//! tickets, and on the client Flight port (`--flight-port`), where it takes only tickets a
//! coordinator signed for this node (`creek_proto::ticket`), so a client pulls a scan's
//! batches straight from the data node. It never plans anything itself.

use std::pin::Pin;
use std::sync::Arc;

use creek_proto::arrow_flight::encode::FlightDataEncoderBuilder;
use creek_proto::arrow_flight::error::FlightError;
use creek_proto::arrow_flight::flight_service_server::FlightService;
use creek_proto::arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use creek_proto::ticket::TicketError;
use creek_proto::v1::FragmentTicket;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::bytes::physical_plan_from_bytes_with_extension_codec;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use tonic::{Request, Response, Status, Streaming};

use crate::codec::DatanodeCodec;
use crate::node::DataNode;

/// The Flight service of a data node.
pub struct FlightFragmentService {
    node: Arc<DataNode>,
    /// Whether this instance serves clients: tickets must then be signed for this node.
    for_clients: bool,
    /// Resolves the functions fragments call: DataFusion's built-in ones and Creek's shared
    /// ones, the only ones the coordinator sends (`creek_common::functions`). Built once and
    /// shared by
    /// every fragment: making a task context copies every function registry.
    task_ctx: Arc<TaskContext>,
}

impl FlightFragmentService {
    /// Creates the service coordinators call on the transport port.
    pub fn new(node: Arc<DataNode>) -> FlightFragmentService {
        FlightFragmentService {
            node,
            for_clients: false,
            task_ctx: creek_common::functions::fragment_task_context(),
        }
    }

    /// Creates the service clients call on the client Flight port.
    pub fn for_clients(node: Arc<DataNode>) -> FlightFragmentService {
        FlightFragmentService {
            for_clients: true,
            ..FlightFragmentService::new(node)
        }
    }

    fn status(&self, error: DataFusionError) -> Status {
        error_status(self.for_clients, error)
    }

    /// The fragment a client's signed ticket carries, with the schema it was promised.
    fn client_fragment(&self, bytes: &[u8]) -> Result<(FragmentTicket, SchemaRef), Status> {
        let key = creek_proto::ticket::key_bytes(self.node.state().ticket_key.expose());
        let ticket = creek_proto::ticket::verify(
            &key,
            bytes,
            self.node.node_id(),
            creek_proto::ticket::now_ms(),
        )
        .map_err(|error| match error {
            TicketError::NoKey => Status::unavailable(error.to_string()),
            TicketError::Expired { .. } => Status::deadline_exceeded(error.to_string()),
            _ => Status::unauthenticated(error.to_string()),
        })?;
        let fragment = FragmentTicket::decode(ticket.fragment.as_slice())
            .map_err(|e| Status::invalid_argument(format!("bad fragment in ticket: {e}")))?;
        let schema = creek_proto::ipc::schema_from_ipc(&ticket.schema)
            .map_err(|e| Status::invalid_argument(format!("bad schema in ticket: {e}")))?;
        tracing::debug!(query = %ticket.query_id, "serving a client ticket");
        Ok((fragment, schema))
    }
}

/// Maps a DataFusion error to a status that keeps Creek's error code.
/// Fragments evaluate expressions here, so a division by zero or a bad cast is classified as
/// the coordinator would classify it.
pub fn status_from_datafusion(error: DataFusionError) -> Status {
    creek_proto::status::status_from_error(&creek_common::error::CodedError::from_datafusion(
        &error,
    ))
}

/// The status of a failed fragment: for coordinators with Creek's code in metadata (they
/// rebuild the error), for clients as Flight SQL's front end would answer it (SQLSTATE).
fn error_status(for_clients: bool, error: DataFusionError) -> Status {
    if for_clients {
        let coded = creek_common::error::CodedError::from_datafusion(&error);
        creek_proto::status::client_status(coded.code, coded.message)
    } else {
        status_from_datafusion(error)
    }
}

/// Runs every partition of `plan` as one: merged in order when the plan's output is sorted
/// (a per-shard top-N), else interleaved as batches arrive.
fn one_partition(plan: Arc<dyn ExecutionPlan>) -> Arc<dyn ExecutionPlan> {
    if plan.properties().partitioning.partition_count() <= 1 {
        return plan;
    }
    match plan.properties().output_ordering() {
        Some(ordering) => Arc::new(SortPreservingMergeExec::new(ordering.clone(), plan)),
        None => Arc::new(CoalescePartitionsExec::new(plan)),
    }
}

type FlightStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl FlightService for FlightFragmentService {
    type HandshakeStream = FlightStream<HandshakeResponse>;
    type ListFlightsStream = FlightStream<FlightInfo>;
    type DoGetStream = BoxStream<'static, Result<FlightData, Status>>;
    type DoPutStream = FlightStream<PutResult>;
    type DoExchangeStream = FlightStream<FlightData>;
    type DoActionStream = FlightStream<creek_proto::arrow_flight::Result>;
    type ListActionsStream = FlightStream<ActionType>;

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        let bytes = request.into_inner().ticket;
        let (ticket, promised) = if self.for_clients {
            let (ticket, schema) = self.client_fragment(&bytes)?;
            (ticket, Some(schema))
        } else {
            let ticket = FragmentTicket::decode(bytes)
                .map_err(|e| Status::invalid_argument(format!("bad fragment ticket: {e}")))?;
            (ticket, None)
        };
        let task_ctx = self.task_ctx.clone();
        let codec = DatanodeCodec::new(self.node.clone());
        let plan = physical_plan_from_bytes_with_extension_codec(&ticket.plan, &task_ctx, &codec)
            .and_then(crate::scan::fulltext::prune_score_top_k)
            .and_then(crate::scan::late_fetch::defer_columns)
            .map_err(|e| self.status(e))?;
        let (plan, partition) = if ticket.all_partitions {
            (one_partition(plan), 0)
        } else {
            (plan, ticket.partition as usize)
        };
        let partitions = plan.properties().partitioning.partition_count();
        if partition >= partitions {
            return Err(Status::invalid_argument(format!(
                "partition {partition} out of range, fragment has {partitions}"
            )));
        }
        let stream = creek_proto::exec::execute_stream(plan, Some(partition), task_ctx)
            .map_err(|e| self.status(e))?;
        let schema = promised.clone().unwrap_or_else(|| stream.schema());
        let for_clients = self.for_clients;
        let batches = stream
            .map_err(move |e| FlightError::Tonic(Box::new(error_status(for_clients, e))))
            .and_then(move |batch| {
                let conformed = match &promised {
                    Some(schema) => {
                        creek_proto::ipc::conform_to_schema(&batch, schema).map_err(|e| {
                            let error = DataFusionError::ArrowError(Box::new(e), None);
                            FlightError::Tonic(Box::new(error_status(for_clients, error)))
                        })
                    }
                    None => Ok(batch),
                };
                futures::future::ready(conformed)
            });
        let encoded = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(batches)
            .map_err(|e| match e {
                FlightError::Tonic(status) => *status,
                other => Status::internal(other.to_string()),
            });
        Ok(Response::new(encoded.boxed()))
    }

    async fn handshake(
        &self,
        _request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        Err(Status::unimplemented("handshake is not used between nodes"))
    }

    async fn list_flights(
        &self,
        _request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        Err(Status::unimplemented("data nodes do not list flights"))
    }

    async fn get_flight_info(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Err(Status::unimplemented("data nodes serve tickets only"))
    }

    async fn poll_flight_info(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        Err(Status::unimplemented("data nodes serve tickets only"))
    }

    async fn get_schema(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        Err(Status::unimplemented("data nodes serve tickets only"))
    }

    async fn do_put(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        Err(Status::unimplemented("writes go through ShardService"))
    }

    async fn do_exchange(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        Err(Status::unimplemented("exchange is not used"))
    }

    async fn do_action(
        &self,
        _request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        Err(Status::unimplemented("no actions"))
    }

    async fn list_actions(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        Err(Status::unimplemented("no actions"))
    }
}
