//! The fault schedule, drawn from the seed before anything starts: one fault at a time, each
//! with its target, its length and the pause after it, until the run's duration is spent.

use std::{fmt, str::FromStr, time::Duration};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `kill -9` of an agent, restarted after the fault's length.
    AgentKill,
    /// SIGSTOP of an agent, SIGCONT after the fault's length (mostly past the agent timeout).
    AgentPause,
    /// `kill -9` of a controller, restarted after the fault's length.
    ControllerKill,
    /// Every connection of an agent closed and new ones refused.
    NetCut,
    /// An agent's connections stay open but carry nothing.
    NetBlackhole,
    /// Every chunk an agent sends or receives delayed.
    NetDelay,
    /// The controller's data directory filled past its disk reserve.
    DiskFull,
    /// Every write, fsync, read and metadata change of the controllers' data directory slowed
    /// (the suite's FUSE filesystem).
    SlowDisk,
}

pub const ALL: [Kind; 8] = [
    Kind::AgentKill,
    Kind::AgentPause,
    Kind::ControllerKill,
    Kind::NetCut,
    Kind::NetBlackhole,
    Kind::NetDelay,
    Kind::DiskFull,
    Kind::SlowDisk,
];

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::AgentKill => "agent-kill",
            Kind::AgentPause => "agent-pause",
            Kind::ControllerKill => "controller-kill",
            Kind::NetCut => "net-cut",
            Kind::NetBlackhole => "net-blackhole",
            Kind::NetDelay => "net-delay",
            Kind::DiskFull => "disk-full",
            Kind::SlowDisk => "slow-disk",
        }
    }

    /// Whether it hits one agent (else the controllers' side: every agent may feel it).
    pub fn hits_one_agent(self) -> bool {
        !matches!(self, Kind::ControllerKill | Kind::DiskFull | Kind::SlowDisk)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ALL.into_iter().find(|k| k.name() == s).ok_or_else(|| {
            let names: Vec<&str> = ALL.iter().map(|k| k.name()).collect();
            format!("unknown fault kind {s:?} (kinds: {})", names.join(", "))
        })
    }
}

/// One planned fault.
#[derive(Clone, Debug)]
pub struct Fault {
    /// When to inject it, from the start of the run.
    pub at: Duration,
    pub kind: Kind,
    /// The agent or controller it hits (an index; unused by a full disk).
    pub target: usize,
    /// How long it lasts.
    pub length: Duration,
    /// The delay of a `NetDelay`, the latency of a `SlowDisk`.
    pub delay: Duration,
}

/// Faults from 5 s into the run until `duration`, 2 to 6 s apart. Lengths relative to the
/// agent timeout `t`: kills down 0.5-5 s; pauses 1.25-2 t (a fifth of them 0.3-0.7 t, short of
/// it); cuts and blackholes 0.3-2 t; delays of 0.1-1 s for 2-10 s; a full disk 3-10 s; a
/// slow disk of 50-500 ms per operation for 5-20 s.
pub fn plan(
    rng: &mut fastrand::Rng,
    kinds: &[Kind],
    duration: Duration,
    agents: usize,
    controllers: usize,
    t: Duration,
) -> Vec<Fault> {
    let mut faults = Vec::new();
    let mut at = Duration::from_secs(5);
    let ms = |rng: &mut fastrand::Rng, lo: f64, hi: f64| {
        Duration::from_millis((lo + rng.f64() * (hi - lo)) as u64)
    };
    let tm = t.as_millis() as f64;
    while at < duration && !kinds.is_empty() {
        let kind = kinds[rng.usize(0..kinds.len())];
        let target = match kind {
            Kind::ControllerKill => rng.usize(0..controllers),
            Kind::DiskFull | Kind::SlowDisk => 0,
            _ => rng.usize(0..agents),
        };
        let mut delay = Duration::ZERO;
        let length = match kind {
            Kind::AgentKill | Kind::ControllerKill => ms(rng, 500.0, 5000.0),
            Kind::AgentPause if rng.u8(0..5) == 0 => ms(rng, 0.3 * tm, 0.7 * tm),
            Kind::AgentPause => ms(rng, 1.25 * tm, 2.0 * tm),
            Kind::NetCut | Kind::NetBlackhole => ms(rng, 0.3 * tm, 2.0 * tm),
            Kind::NetDelay => {
                delay = ms(rng, 100.0, 1000.0);
                ms(rng, 2000.0, 10_000.0)
            }
            Kind::DiskFull => ms(rng, 3000.0, 10_000.0),
            Kind::SlowDisk => {
                delay = ms(rng, 50.0, 500.0);
                ms(rng, 5000.0, 20_000.0)
            }
        };
        faults.push(Fault {
            at,
            kind,
            target,
            length,
            delay,
        });
        at += length + ms(rng, 2000.0, 6000.0);
    }
    faults
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_one_schedule_of_the_kinds_asked_within_the_duration() {
        let t = Duration::from_secs(4);
        let d = Duration::from_secs(300);
        let a = plan(&mut fastrand::Rng::with_seed(3), &ALL, d, 4, 2, t);
        let b = plan(&mut fastrand::Rng::with_seed(3), &ALL, d, 4, 2, t);
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        assert!(a.len() > 20, "{}", a.len());
        assert!(a.iter().all(|f| f.at < d));
        for kind in ALL {
            assert!(a.iter().any(|f| f.kind == kind), "no {kind}");
        }
        let only = plan(
            &mut fastrand::Rng::with_seed(3),
            &[Kind::NetCut],
            d,
            4,
            2,
            t,
        );
        assert!(only.iter().all(|f| f.kind == Kind::NetCut && f.target < 4));
        assert_eq!("agent-pause".parse::<Kind>(), Ok(Kind::AgentPause));
        assert!("nope".parse::<Kind>().is_err());
    }
}
