//! Connections to other nodes.
//!
//! One lazily-connected HTTP/2 channel per peer address carries Raft
//! traffic, forwarded client requests and status calls; snapshot streams get
//! their own channel so a multi-GB transfer does not delay heartbeats. Every
//! call made through [`Peers::raft`] carries the cluster id and the from/to
//! node ids, which the receiver checks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use sen_core::{ClusterId, NodeId};
use sen_proto::meta;
use sen_proto::raft::v1::raft_client::RaftClient;
use sen_proto::v1::cluster_client::ClusterClient;
use sen_proto::v1::content_client::ContentClient;
use sen_proto::v1::incidents_client::IncidentsClient;
use sen_proto::v1::kv_client::KvClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

/// Adds the peer-call metadata to every request.
#[derive(Clone)]
pub struct PeerMeta {
    cluster_id: Arc<RwLock<Option<ClusterId>>>,
    from: NodeId,
    to: Option<NodeId>,
}

impl tonic::service::Interceptor for PeerMeta {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let md = req.metadata_mut();
        if let Some(c) = *self.cluster_id.read().unwrap_or_else(|p| p.into_inner())
            && let Ok(v) = c.to_string().parse()
        {
            md.insert(meta::CLUSTER_ID, v);
        }
        if let Ok(v) = self.from.to_string().parse() {
            md.insert(meta::FROM_NODE, v);
        }
        if let Some(to) = self.to
            && let Ok(v) = to.to_string().parse()
        {
            md.insert(meta::TO_NODE, v);
        }
        Ok(req)
    }
}

/// Clients for the node-to-node service.
pub type PeerRaftClient = RaftClient<InterceptedService<Channel, PeerMeta>>;

/// A cached channel: to which node (if known), at which address, bulk.
type ChannelKey = (Option<NodeId>, String, bool);

/// How peers are dialled.
#[derive(Debug, Clone)]
pub struct PeerSettings {
    pub connect_timeout: Duration,
    /// Largest forwarded client request.
    pub max_message_bytes: usize,
    /// Largest node-to-node message (the receiver uses the same limit).
    pub raft_message_bytes: usize,
    /// `network.peer-addresses`: where to dial a node instead of its
    /// advertised address.
    pub overrides: std::collections::BTreeMap<NodeId, String>,
}

/// The channel pool.
pub struct Peers {
    me: NodeId,
    cluster_id: Arc<RwLock<Option<ClusterId>>>,
    channels: Mutex<HashMap<ChannelKey, Channel>>,
    connect_timeout: Duration,
    max_message_bytes: usize,
    raft_message_bytes: usize,
    overrides: std::collections::BTreeMap<NodeId, String>,
    /// Drill faults: an isolated node opens no peer call at all.
    faults: Arc<crate::faults::Faults>,
    /// This node's certificates: peers are called over mutual TLS.
    tls: Option<Arc<sen_security::Reloader>>,
    /// Peers whose Raft calls fail: since when, and how many failed.
    failing: Mutex<HashMap<NodeId, (std::time::Instant, u64)>>,
}

impl Peers {
    pub fn new(
        me: NodeId,
        cluster_id: Arc<RwLock<Option<ClusterId>>>,
        settings: PeerSettings,
        faults: Arc<crate::faults::Faults>,
        tls: Option<Arc<sen_security::Reloader>>,
    ) -> Self {
        Self {
            me,
            cluster_id,
            channels: Mutex::new(HashMap::new()),
            connect_timeout: settings.connect_timeout,
            max_message_bytes: settings.max_message_bytes,
            raft_message_bytes: settings.raft_message_bytes,
            overrides: settings.overrides,
            faults,
            tls,
            failing: Mutex::new(HashMap::new()),
        }
    }

    /// A Raft call to `target` failed: one line when it starts failing,
    /// then only counted (a down peer is retried every heartbeat).
    pub fn call_failed(&self, target: NodeId, what: &dyn std::fmt::Display) {
        let mut failing = self.failing.lock().unwrap_or_else(|p| p.into_inner());
        let entry = failing.entry(target).or_insert((std::time::Instant::now(), 0));
        entry.1 += 1;
        if entry.1 == 1 {
            tracing::warn!(
                peer = target,
                "node {target} does not answer Raft calls: {what}; further failures are counted until it answers again"
            );
        }
    }

    /// A Raft call to `target` succeeded: one line if it was failing.
    pub fn call_succeeded(&self, target: NodeId) {
        let was = self.failing.lock().unwrap_or_else(|p| p.into_inner()).remove(&target);
        if let Some((since, n)) = was {
            tracing::info!(
                peer = target,
                "node {target} answers again after {n} failed calls over {:.1}s",
                since.elapsed().as_secs_f64()
            );
        }
    }

    /// Drop every cached channel: the next call connects again (with
    /// certificates reloaded meanwhile).
    pub fn reset_channels(&self) {
        self.channels.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// The shared channel to node `id` advertised at `addr` (dialled through
    /// `network.peer-addresses` when set; `bulk` = the separate snapshot
    /// channel). Over TLS the peer must prove it is node `id` (its
    /// certificate names `node-<id>.sen`), whatever address or proxy it is
    /// reached through; with no id, the address is verified instead.
    fn channel(&self, id: Option<NodeId>, addr: &str, bulk: bool) -> Result<Channel, Status> {
        let addr = self.resolve(id, addr);
        if let Some(drill) = self.faults.isolated_by() {
            return Err(Status::unavailable(format!(
                "node {} is isolated from its peers by drill {drill}",
                self.me
            )));
        }
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        let key = (id, addr.to_owned(), bulk);
        if let Some(c) = map.get(&key) {
            return Ok(c.clone());
        }
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
            .map_err(|e| Status::invalid_argument(format!("bad peer address {addr:?}: {e}")))?;
        if let Some(tls) = &self.tls {
            let set = tls.current();
            let mut cfg = tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(&set.ca_pem))
                .identity(tonic::transport::Identity::from_pem(&set.cert_pem, &set.key_pem));
            if let Some(id) = id {
                cfg = cfg.domain_name(sen_security::identity::node_dns_name(id));
            }
            endpoint = endpoint
                .tls_config(cfg)
                .map_err(|e| Status::internal(format!("TLS for peer {addr}: {e}")))?;
        }
        let endpoint = endpoint
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(2))
            .keep_alive_timeout(Duration::from_secs(3))
            .keep_alive_while_idle(true)
            .http2_adaptive_window(bulk);
        let channel = endpoint.connect_lazy();
        map.insert(key, channel.clone());
        Ok(channel)
    }

    fn meta(&self, to: Option<NodeId>) -> PeerMeta {
        PeerMeta {
            cluster_id: self.cluster_id.clone(),
            from: self.me,
            to,
        }
    }

    /// Where to dial node `id` advertised at `addr`.
    pub fn resolve<'a>(&'a self, id: Option<NodeId>, addr: &'a str) -> &'a str {
        id.and_then(|id| self.overrides.get(&id)).map_or(addr, String::as_str)
    }

    /// A node-to-node client for node `to` at `addr` (`to` = `None` when the
    /// id is what we want to learn, as in a join).
    pub fn raft(&self, to: Option<NodeId>, addr: &str, bulk: bool) -> Result<PeerRaftClient, Status> {
        Ok(
            RaftClient::with_interceptor(self.channel(to, addr, bulk)?, self.meta(to))
                .max_decoding_message_size(self.raft_message_bytes)
                .max_encoding_message_size(self.raft_message_bytes),
        )
    }

    /// A client for asking the node at `addr` to join as node `id`: its
    /// certificate must be node `id`'s, but the request carries no `to`
    /// (the node checks the id in the request itself, before it has one).
    pub fn raft_join(&self, id: NodeId, addr: &str) -> Result<PeerRaftClient, Status> {
        Ok(RaftClient::with_interceptor(
            self.channel(Some(id), addr, false)?,
            self.meta(None),
        ))
    }

    /// A public-API client for forwarding requests to the leader `id`.
    pub fn kv(&self, id: NodeId, addr: &str) -> Result<KvClient<InterceptedService<Channel, PeerMeta>>, Status> {
        Ok(
            KvClient::with_interceptor(self.channel(Some(id), addr, false)?, self.meta(None))
                .max_decoding_message_size(self.max_message_bytes)
                .max_encoding_message_size(self.max_message_bytes),
        )
    }

    /// A public-API client for forwarding content writes to the leader
    /// `id` (chunk uploads use the bulk channel).
    pub fn content(
        &self,
        id: NodeId,
        addr: &str,
    ) -> Result<ContentClient<InterceptedService<Channel, PeerMeta>>, Status> {
        Ok(
            ContentClient::with_interceptor(self.channel(Some(id), addr, true)?, self.meta(None))
                .max_decoding_message_size(self.max_message_bytes)
                .max_encoding_message_size(self.max_message_bytes),
        )
    }

    /// A public-API client for forwarding cluster calls to the leader `id`.
    pub fn cluster(
        &self,
        id: NodeId,
        addr: &str,
    ) -> Result<ClusterClient<InterceptedService<Channel, PeerMeta>>, Status> {
        Ok(ClusterClient::with_interceptor(
            self.channel(Some(id), addr, false)?,
            self.meta(None),
        ))
    }

    /// A follower's backup service (the leader's scheduler asks it to take
    /// a scheduled backup; the bulk channel, it may run for hours).
    pub fn backup(
        &self,
        id: NodeId,
        addr: &str,
    ) -> Result<sen_proto::v1::backup_client::BackupClient<InterceptedService<Channel, PeerMeta>>, Status> {
        Ok(sen_proto::v1::backup_client::BackupClient::with_interceptor(
            self.channel(Some(id), addr, true)?,
            self.meta(None),
        ))
    }

    /// The leader's audit service (a node hands it its audit records).
    pub fn audit(
        &self,
        id: NodeId,
        addr: &str,
    ) -> Result<sen_proto::v1::audit_client::AuditClient<InterceptedService<Channel, PeerMeta>>, Status> {
        Ok(sen_proto::v1::audit_client::AuditClient::with_interceptor(
            self.channel(Some(id), addr, false)?,
            self.meta(None),
        ))
    }

    /// The leader's control-plane service (a node hands it its probe
    /// results).
    pub fn control(
        &self,
        id: NodeId,
        addr: &str,
    ) -> Result<sen_proto::v1::control_client::ControlClient<InterceptedService<Channel, PeerMeta>>, Status> {
        Ok(sen_proto::v1::control_client::ControlClient::with_interceptor(
            self.channel(Some(id), addr, false)?,
            self.meta(None),
        ))
    }

    /// This node's certificates (`None` without TLS).
    pub fn tls(&self) -> Option<Arc<sen_security::Reloader>> {
        self.tls.clone()
    }

    /// A public-API client for forwarding incident writes to the leader.
    pub fn incidents(
        &self,
        id: NodeId,
        addr: &str,
    ) -> Result<IncidentsClient<InterceptedService<Channel, PeerMeta>>, Status> {
        Ok(IncidentsClient::with_interceptor(
            self.channel(Some(id), addr, false)?,
            self.meta(None),
        ))
    }
}
