//! The host's monotonic clock for the machine.

use std::time::Instant;

use tci64_machine::HostClock;

/// Nanoseconds since this clock was made (so virtual time 0 is "now" at power-on).
#[derive(Debug, Clone, Copy)]
pub struct InstantClock {
    origin: Instant,
}

impl InstantClock {
    pub fn new() -> Self {
        InstantClock {
            origin: Instant::now(),
        }
    }
}

impl Default for InstantClock {
    fn default() -> Self {
        Self::new()
    }
}

impl HostClock for InstantClock {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_near_zero_and_never_goes_back() {
        let c = InstantClock::new();
        let a = c.now_ns();
        assert!(a < 1_000_000_000);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = c.now_ns();
        assert!(b >= a + 2_000_000);
    }
}
