//! Everything that touches the host: the terminal, stdin and debugger sockets, disk files and
//! the clock.
//! The machine itself never sees any of it (it gets trait objects and bytes).

pub mod clock;
pub mod disk;
pub mod events;
pub mod signals;
pub mod terminal;
