use thiserror::Error;

/// Everything that can go wrong while building or running a machine.
#[derive(Debug, Error)]
pub enum MachineError {
    #[error("{0}")]
    Config(String),
    /// The kernel (or its initrd or command line) cannot be booted; `file` is the kernel's name.
    #[error("{file}: {source}")]
    Boot {
        file: String,
        #[source]
        source: crate::boot::BootError,
    },
    /// The requested RAM size or disk count does not make a valid memory map.
    #[error("memory map: {0}")]
    MemoryMap(#[from] crate::memmap::MemMapError),
}
