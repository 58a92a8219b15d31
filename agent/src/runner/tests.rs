//! Tests of the runner: a task's environment carries its ids and parameters.

use std::collections::HashMap;

use super::*;

#[test]
fn env_carries_ids_and_params() {
    let a = AttemptRef {
        job_id: "j1".into(),
        task_id: "t1".into(),
        attempt: 2,
    };
    let assignment = Assignment {
        attempt: Some(a.clone()),
        job_name: "etl".into(),
        task: None,
        params: HashMap::from([("day".to_owned(), "$(reboot)".to_owned())]),
        inputs: Vec::new(),
        extract_range: None,
    };
    let env: HashMap<_, _> = task_env(&assignment, &a, std::path::Path::new("/w/j1/t1/2"))
        .into_iter()
        .collect();
    assert_eq!(env["FERRY_JOB_ID"], "j1");
    assert_eq!(env["FERRY_JOB_NAME"], "etl");
    assert_eq!(env["FERRY_TASK_ID"], "t1");
    assert_eq!(env["FERRY_ATTEMPT"], "2");
    assert_eq!(env["FERRY_WORK_DIR"], "/w/j1/t1/2");
    assert_eq!(env["FERRY_INPUTS"], "/w/j1/t1/2/inputs");
    assert_eq!(env["FERRY_PARAM_DAY"], "$(reboot)");
}
