use thiserror::Error;

/// Everything that can go wrong while building or running a machine.
#[derive(Debug, Error)]
pub enum MachineError {
    #[error("{0}")]
    Config(String),
}
