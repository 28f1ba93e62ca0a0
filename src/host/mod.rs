//! Everything that touches the host: the terminal, stdin, disk files and the clock.
//! The machine itself never sees any of it (it gets trait objects and bytes).

pub mod clock;
pub mod disk;
pub mod signals;
pub mod stdin;
pub mod terminal;
