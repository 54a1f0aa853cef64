//! Where a RUN step's network comes from. The solver asks a [`NetworkProvider`] for each step
//! (BuildKit's "network provider"); runtime/'s build network is the one the CLI wires in. The
//! executor only defines the contract, so that neither the solver nor the sandbox knows about
//! bridges, and a library user can bring another provider.

use std::fmt;

use crate::{Mount, NetworkMode};

/// The network a RUN step asks for (`RUN --network=...`, or the build's `--network`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum StepNetwork {
    /// The build network: its own namespace, on a bridge with outbound NAT.
    #[default]
    Default,
    /// Only `lo`.
    None,
    /// The host's namespace.
    Host,
}

impl StepNetwork {
    /// As the flag spells it (errors name it so).
    pub fn as_str(self) -> &'static str {
        match self {
            StepNetwork::Default => "default",
            StepNetwork::None => "none",
            StepNetwork::Host => "host",
        }
    }
}

impl fmt::Display for StepNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One step's network, held for as long as the step runs: dropping it releases what was made
/// for the step (its namespace, its address).
pub struct ProvidedNetwork {
    pub mode: NetworkMode,
    /// /etc/resolv.conf and /etc/hosts, bind-mounted read-only: the step's
    /// layer never holds them.
    pub mounts: Vec<Mount>,
    _release: Box<dyn Send>,
}

impl ProvidedNetwork {
    /// `release` is dropped when the step is done with the network.
    pub fn new(mode: NetworkMode, mounts: Vec<Mount>, release: Box<dyn Send>) -> ProvidedNetwork {
        ProvidedNetwork { mode, mounts, _release: release }
    }
}

impl fmt::Debug for ProvidedNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProvidedNetwork").field("mode", &self.mode).field("mounts", &self.mounts).finish()
    }
}

/// Why a provider could not give a step its network: its own typed error, boxed.
pub type ProviderError = Box<dyn std::error::Error + Send + Sync>;

/// Gives each RUN step the network it asks for.
pub trait NetworkProvider: Send + Sync {
    /// A network for one sandbox whose hostname is `hostname`.
    fn provide(&self, network: StepNetwork, hostname: &str) -> Result<ProvidedNetwork, ProviderError>;
}
