//! The limits of the fields of every request but a job's spec (`engine::validate` checks that):
//! ids, list limits, an agent's registration, the attempts and log chunks of its calls. Each
//! refusal is `INVALID_ARGUMENT` naming the field, the problem and the limit.

use ferry_jobspec::check::{self, shown, Chars};
use ferry_jobspec::limits as l;
use ferry_proto::v1 as pb;
use tonic::Status;

fn refuse(field: &str, problem: Option<String>) -> Result<(), Status> {
    match problem {
        Some(problem) => Err(Status::invalid_argument(format!("{field} {problem}"))),
        None => Ok(()),
    }
}

/// An id a call looks up (a job id): bounded before it reaches the store.
pub fn lookup_id(field: &str, id: &str) -> Result<(), Status> {
    refuse(
        field,
        check::text(id, l::LOOKUP_ID_MAX, Chars::NoNul, false),
    )
}

/// A task id a call names (may be empty where the call allows it).
pub fn task_id(field: &str, id: &str) -> Result<(), Status> {
    refuse(field, check::text(id, l::TASK_ID_MAX, Chars::NoNul, false))
}

/// A job name a call names (may be empty where the call allows it).
pub fn job_name(field: &str, name: &str) -> Result<(), Status> {
    refuse(
        field,
        check::text(name, l::JOB_NAME_MAX, Chars::NoNul, false),
    )
}

/// `ListJobs`' limit: 0 is the default; above the maximum is refused, not cut.
pub fn list_limit(limit: u32) -> Result<u32, Status> {
    match limit {
        0 => Ok(l::LIST_JOBS_DEFAULT),
        n if n > l::LIST_JOBS_MAX => Err(Status::invalid_argument(format!(
            "limit {n} is above the maximum of {}",
            l::LIST_JOBS_MAX
        ))),
        n => Ok(n),
    }
}

/// An agent's registration; answers its `max_tasks` (0 is 1).
pub fn registration(r: &pb::RegisterRequest) -> Result<u32, Status> {
    refuse(
        "agent name",
        check::text(&r.name, l::AGENT_NAME_MAX, Chars::Graphic, true),
    )?;
    refuse(
        "agent hostname",
        check::text(&r.hostname, l::HOSTNAME_MAX, Chars::Graphic, false),
    )?;
    refuse(
        "agent version",
        check::text(&r.version, l::VERSION_MAX, Chars::PrintableAscii, false),
    )?;
    refuse(
        "agent instance",
        check::text(&r.instance, l::AGENT_NAME_MAX, Chars::Graphic, false),
    )?;
    refuse(
        "agent queues",
        check::count(r.queues.len(), l::AGENT_QUEUES_MAX),
    )?;
    for queue in &r.queues {
        refuse(
            &format!("agent queue {}", shown(queue)),
            ferry_jobspec::fields::queue(queue),
        )?;
    }
    let labels = r.labels.clone().into_iter().collect();
    let mut problem = None;
    crate::engine::validate::labels("agent", &labels, &mut |field, p| {
        if problem.is_none() {
            problem = p.map(|p| format!("{field} {p}"));
        }
    });
    if let Some(problem) = problem {
        return Err(Status::invalid_argument(problem));
    }
    refuse(
        "agent datasources",
        check::count(r.datasources.len(), l::AGENT_DATASOURCES_MAX),
    )?;
    for name in &r.datasources {
        let problem = match name.is_empty() {
            true => Some("is empty".to_string()),
            false => ferry_jobspec::fields::sql_name(name),
        };
        refuse(&format!("agent datasource {}", shown(name)), problem)?;
    }
    if r.max_tasks > l::AGENT_TASKS_MAX {
        return Err(Status::invalid_argument(format!(
            "agent max_tasks {} is above the limit of {}",
            r.max_tasks,
            l::AGENT_TASKS_MAX
        )));
    }
    Ok(r.max_tasks.max(1))
}

/// A poll's free slots: at most the largest `max_tasks` an agent may register (the engine cuts
/// them to the agent's own).
pub fn free_slots(n: u32) -> Result<(), Status> {
    if n > l::AGENT_TASKS_MAX {
        return Err(Status::invalid_argument(format!(
            "free_slots {n} is above the limit of {}",
            l::AGENT_TASKS_MAX
        )));
    }
    Ok(())
}

/// The attempts one agent call names (`running`, `attempts`).
pub fn attempts(field: &str, refs: &[pb::AttemptRef]) -> Result<(), Status> {
    refuse(field, check::count(refs.len(), l::ATTEMPTS_PER_CALL_MAX))?;
    for r in refs {
        attempt(field, r)?;
    }
    Ok(())
}

/// A list's length within what one call may carry.
pub fn count(field: &str, n: usize) -> Result<(), Status> {
    refuse(field, check::count(n, l::ATTEMPTS_PER_CALL_MAX))
}

/// One attempt's reference: bounded ids.
pub fn attempt(field: &str, r: &pb::AttemptRef) -> Result<(), Status> {
    lookup_id(&format!("{field} job id"), &r.job_id)?;
    task_id(&format!("{field} task id"), &r.task_id)
}

/// The log chunks of one call.
pub fn log_chunks(chunks: &[pb::LogChunk]) -> Result<(), Status> {
    refuse("log chunks", check::count(chunks.len(), l::LOG_CHUNKS_MAX))?;
    let mut total = 0;
    for chunk in chunks {
        if chunk.data.len() > l::LOG_CHUNK_MAX {
            return Err(Status::invalid_argument(format!(
                "log chunk is {} bytes long; the limit is {}",
                chunk.data.len(),
                l::LOG_CHUNK_MAX
            )));
        }
        total += chunk.data.len();
    }
    if total > l::LOG_BYTES_PER_CALL_MAX {
        return Err(Status::invalid_argument(format!(
            "log chunks take {total} bytes together; the limit is {}",
            l::LOG_BYTES_PER_CALL_MAX
        )));
    }
    Ok(())
}

/// A watermark's value.
pub fn watermark_value(value: &str) -> Result<(), Status> {
    refuse(
        "watermark value",
        check::text(value, l::WATERMARK_VALUE_MAX, Chars::NoNul, false),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(r: Result<impl std::fmt::Debug, Status>) -> String {
        let e = r.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        e.message().to_owned()
    }

    fn agent() -> pb::RegisterRequest {
        pb::RegisterRequest {
            name: "agent-a".into(),
            queues: vec!["default".into()],
            max_tasks: 4,
            hostname: "host-a".into(),
            version: "0.1.0".into(),
            ..Default::default()
        }
    }

    #[test]
    fn list_limits_above_the_maximum_are_refused() {
        assert_eq!(list_limit(0).unwrap(), 50);
        assert_eq!(list_limit(10_000).unwrap(), 10_000);
        assert_eq!(
            message(list_limit(10_001)),
            "limit 10001 is above the maximum of 10000"
        );
    }

    #[test]
    fn registrations_are_bounded_and_printable() {
        assert_eq!(registration(&agent()).unwrap(), 4);
        assert_eq!(
            registration(&pb::RegisterRequest {
                max_tasks: 0,
                ..agent()
            })
            .unwrap(),
            1
        );
        let bad = |r: pb::RegisterRequest| message(registration(&r));
        assert_eq!(
            bad(pb::RegisterRequest {
                name: "evil\u{1b}[2J".into(),
                ..agent()
            }),
            "agent name holds a character other than printable ASCII without spaces ('\\u{1b}')"
        );
        assert_eq!(
            bad(pb::RegisterRequest {
                name: "a".repeat(129),
                ..agent()
            }),
            "agent name is 129 bytes long; the limit is 128"
        );
        assert_eq!(
            bad(pb::RegisterRequest {
                max_tasks: 1_025,
                ..agent()
            }),
            "agent max_tasks 1025 is above the limit of 1024"
        );
        assert_eq!(
            bad(pb::RegisterRequest {
                queues: vec!["q".into(); 65],
                ..agent()
            }),
            "agent queues 65 are given; the limit is 64"
        );
        assert_eq!(
            bad(pb::RegisterRequest {
                labels: [("site".to_string(), "a\nb".to_string())].into(),
                ..agent()
            }),
            "agent label \"site\" holds a control character ('\\n')"
        );
        assert!(bad(pb::RegisterRequest {
            version: "1\u{7f}".into(),
            ..agent()
        })
        .starts_with("agent version holds"));
        // The agent's id: printable, bounded; empty (an older agent) is allowed.
        assert!(bad(pb::RegisterRequest {
            instance: "a b".into(),
            ..agent()
        })
        .starts_with("agent instance holds"));
        assert_eq!(
            bad(pb::RegisterRequest {
                instance: "f".repeat(129),
                ..agent()
            }),
            "agent instance is 129 bytes long; the limit is 128"
        );
        assert_eq!(
            bad(pb::RegisterRequest {
                datasources: vec!["sales".into(), String::new()],
                ..agent()
            }),
            "agent datasource \"\" is empty"
        );
        assert_eq!(
            bad(pb::RegisterRequest {
                datasources: vec!["\u{1}x".into()],
                ..agent()
            }),
            "agent datasource \"\\u{1}x\" holds a control character ('\\u{1}')"
        );
        assert_eq!(
            bad(pb::RegisterRequest {
                datasources: vec!["d".into(); 65],
                ..agent()
            }),
            "agent datasources 65 are given; the limit is 64"
        );
    }

    #[test]
    fn attempts_ids_and_logs_are_bounded() {
        assert!(free_slots(1_024).is_ok());
        assert_eq!(
            message(free_slots(1_025)),
            "free_slots 1025 is above the limit of 1024"
        );
        let r = pb::AttemptRef {
            job_id: "j".into(),
            task_id: "t".into(),
            attempt: 1,
        };
        assert!(attempts("running", std::slice::from_ref(&r)).is_ok());
        assert_eq!(
            message(attempts("running", &vec![r; 1_025])),
            "running 1025 are given; the limit is 1024"
        );
        assert_eq!(
            message(lookup_id("job id", &"x".repeat(1 << 20))),
            "job id is 1048576 bytes long; the limit is 128"
        );
        let chunk = |n: usize| pb::LogChunk {
            data: vec![b'x'; n],
            ..Default::default()
        };
        assert!(log_chunks(&[chunk(64 << 10)]).is_ok());
        assert_eq!(
            message(log_chunks(&[chunk((1 << 20) + 1)])),
            "log chunk is 1048577 bytes long; the limit is 1048576"
        );
        assert_eq!(
            message(log_chunks(&vec![chunk(1 << 20); 5])),
            "log chunks take 5242880 bytes together; the limit is 4194304"
        );
    }
}
