//! Type aliases of a node, so modules that only need the names (metrics,
//! the network) do not depend on the node itself.

use sen_raft::TypeConfig;
use sen_store::StateMachine;

/// The openraft instance of a node.
pub type Raft = openraft::Raft<TypeConfig, StateMachine>;
