//! Tests of the guardian protocol: every message survives the wire, and frames are put back
//! together however they arrive.

use super::super::confine::Resource;
use super::*;

fn round_trip_to(msg: ToGuard) {
    let bytes = msg.encode();
    let (frames, used) = split_frames(&bytes).unwrap();
    assert_eq!(used, bytes.len());
    assert_eq!(ToGuard::decode(frames[0]).unwrap(), msg);
}

#[test]
fn every_message_survives_the_wire() {
    round_trip_to(ToGuard::Spec(Box::new(Spec {
        label: "j/t/1".into(),
        lease_end: Duration::from_nanos(123_456_789_012),
        agent_timeout: Duration::from_secs(15),
        kill_grace: Duration::from_millis(5),
        timeout: Some(Duration::from_millis(1500)),
        cgroup_parent: Some("/sys/fs/cgroup/x y".into()),
        records: None,
        cwd: "/w/attempt-1".into(),
        argv: vec!["/bin/sh".into(), "-c".into(), "echo \"$A\" \u{e9}\n".into()],
        env: vec![("A".into(), OsString::from_vec(vec![0xff, b'=', b'x']))],
        confine: Confine::default(),
    })));
    round_trip_to(ToGuard::Spec(Box::new(Spec {
        label: "j/t/2".into(),
        lease_end: Duration::from_secs(1),
        agent_timeout: Duration::from_secs(15),
        kill_grace: Duration::from_secs(5),
        timeout: None,
        cgroup_parent: None,
        records: Some("/w/.ferry-agent/guards".into()),
        cwd: "/w/attempt-2".into(),
        argv: vec!["/bin/sh".into()],
        env: Vec::new(),
        confine: Confine {
            user: Some(Creds {
                uid: 65534,
                gid: 65534,
                groups: vec![65534, 4_000_000_000],
            }),
            rlimits: vec![
                Rlimit::new(Resource::Cpu, 10),
                Rlimit::new(Resource::FileSize, u64::MAX),
            ],
            memory_max: Some(64 << 20),
            cpu_max: Some(CpuMax::cpus(0.5)),
        },
    })));
    round_trip_to(ToGuard::Lease(Duration::from_nanos(u64::MAX)));
    round_trip_to(ToGuard::Term);
    round_trip_to(ToGuard::Kill);
    for msg in [
        FromGuard::Started {
            guard_pid: 42,
            shell_pid: 4_194_304,
            cgroup: Some("/sys/fs/cgroup/a/attempt-42-1".into()),
        },
        FromGuard::Started {
            guard_pid: 42,
            shell_pid: 43,
            cgroup: None,
        },
        FromGuard::Ended(Ending::Exited(-1)),
        FromGuard::Ended(Ending::Signaled(9)),
        FromGuard::Ended(Ending::TimedOut),
        FromGuard::Ended(Ending::LeaseExpired),
        FromGuard::Ended(Ending::Stopped),
        FromGuard::Failed("cannot start /bin/sh: no such file".into()),
        FromGuard::OomKills(3),
    ] {
        let bytes = msg.encode();
        let (frames, _) = split_frames(&bytes).unwrap();
        assert_eq!(FromGuard::decode(frames[0]).unwrap(), msg);
    }
}

#[test]
fn frames_are_split_as_they_arrive() {
    let mut stream = ToGuard::Lease(Duration::from_secs(1)).encode();
    stream.extend(ToGuard::Term.encode());
    let whole = stream.len();
    stream.extend(&ToGuard::Kill.encode()[..3]);
    let (frames, used) = split_frames(&stream).unwrap();
    assert_eq!(frames.len(), 2);
    assert_eq!(used, whole);
    assert_eq!(ToGuard::decode(frames[1]).unwrap(), ToGuard::Term);
    assert_eq!(
        split_frames(&[0xff, 0xff, 0xff, 0x7f]).unwrap_err(),
        FrameError::TooLarge(0x7fff_ffff)
    );
    assert!(ToGuard::decode(b"Zx").is_err());
    assert!(ToGuard::decode(b"T!").is_err());
}
