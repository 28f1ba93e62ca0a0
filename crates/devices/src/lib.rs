//! PC hardware models for tci64. Each device is one file named after the hardware, with its
//! unit tests beside it. Devices know nothing about the CPU: the machine wires them.

pub mod block;
