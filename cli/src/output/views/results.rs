//! Views of published outputs: `results list` and the files saved by `results get`.

use ferry_proto::v1::{ResultFile, TaskExtract};
use serde::Serialize;

use crate::output::{bytes, extracts::ExtractView, short_timestamp, timestamp, Table};

/// One published output, in `results list`.
#[derive(Debug, Clone, Serialize)]
pub struct ResultView {
    pub task: String,
    pub attempt: u32,
    pub name: String,
    /// Bytes.
    pub size: u64,
    /// SHA-256 of the whole file, lowercase hex.
    pub sha256: String,
    pub created_at: Option<String>,
    /// The files of an sql task: what its attempt extracted (rows, schema…).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extract: Option<ExtractView>,
    #[serde(skip)]
    created_ms: i64,
}

/// Hex digits of a checksum shown in tables.
const SHORT_SHA: usize = 12;

impl From<&ResultFile> for ResultView {
    fn from(file: &ResultFile) -> Self {
        ResultView {
            task: file.task_id.clone(),
            attempt: file.attempt,
            name: file.name.clone(),
            size: file.size,
            sha256: file.sha256.clone(),
            created_at: timestamp(file.created_at_ms),
            extract: None,
            created_ms: file.created_at_ms,
        }
    }
}

impl ResultView {
    /// The files of a listing, each file of an sql task with its task's extract.
    pub fn list(files: &[ResultFile], extracts: &[TaskExtract]) -> Vec<ResultView> {
        files
            .iter()
            .map(|file| {
                let mut view = ResultView::from(file);
                view.extract = extracts
                    .iter()
                    .find(|e| e.task_id == file.task_id && e.attempt == file.attempt)
                    .and_then(|e| e.extract.as_ref())
                    .map(ExtractView::from);
                view
            })
            .collect()
    }

    pub fn table(results: &[ResultView]) -> String {
        let mut table = Table::new(&["TASK", "ATTEMPT", "NAME", "SIZE", "SHA256", "CREATED"]);
        for file in results {
            table.row(vec![
                file.task.clone(),
                file.attempt.to_string(),
                file.name.clone(),
                bytes(file.size),
                file.sha256.chars().take(SHORT_SHA).collect(),
                short_timestamp(file.created_ms),
            ]);
        }
        let mut out = table.render();
        let mut extracts: Vec<(&str, Option<u32>, &ExtractView)> = Vec::new();
        for file in results {
            if let Some(e) = &file.extract {
                if !extracts
                    .iter()
                    .any(|(t, a, _)| *t == file.task && *a == Some(file.attempt))
                {
                    extracts.push((&file.task, Some(file.attempt), e));
                }
            }
        }
        if !extracts.is_empty() {
            out.push('\n');
            out.push_str(&ExtractView::table(&extracts));
        }
        out
    }
}

/// One file saved by `results get`.
#[derive(Debug, Clone, Serialize)]
pub struct SavedView {
    pub task: String,
    pub attempt: u32,
    pub name: String,
    pub size: u64,
    pub sha256: String,
    /// Where it was saved.
    pub path: String,
}

impl SavedView {
    /// The saved paths, one a line.
    pub fn table(saved: &[SavedView]) -> String {
        saved.iter().map(|s| format!("{}\n", s.path)).collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn results_list_shows_the_extract_of_sql_files() {
        let files = [result_file("extract.csv", 10), {
            let mut other = result_file("x", 1);
            other.task_id = "other".into();
            other
        }];
        let extracts = [TaskExtract {
            task_id: "extract".into(),
            attempt: 2,
            extract: Some(ferry_proto::v1::ExtractInfo {
                rows: 7,
                bytes: 10,
                files: vec!["extract.csv".into()],
                ..Default::default()
            }),
        }];
        let views = ResultView::list(&files, &extracts);
        assert_eq!(views[0].extract.as_ref().map(|e| e.rows), Some(7));
        assert!(views[1].extract.is_none());
        let json = serde_json::to_value(&views).unwrap();
        assert_eq!(json[0]["extract"]["rows"], 7);
        assert!(json[1].get("extract").is_none());
        assert!(
            ResultView::table(&views).ends_with(
                "\n\
TASK       ROWS  SIZE  FILES        WATERMARK  SCHEMA
extract#2  7     10 B  extract.csv  -          -
"
            ),
            "{}",
            ResultView::table(&views)
        );
    }

    fn result_file(name: &str, size: u64) -> ResultFile {
        ResultFile {
            task_id: "extract".into(),
            attempt: 2,
            name: name.into(),
            size,
            sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".into(),
            created_at_ms: 1_795_000_000_123,
        }
    }

    #[test]
    fn results_list_json_shape() {
        let views: Vec<ResultView> = [result_file("parts/a.csv", 0)]
            .iter()
            .map(ResultView::from)
            .collect();
        assert_eq!(
            serde_json::to_value(&views).unwrap(),
            json!([{
                "task": "extract", "attempt": 2, "name": "parts/a.csv", "size": 0,
                "sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                "created_at": "2026-11-18T11:06:40.123Z"
            }])
        );
        let unknown_time = ResultFile {
            created_at_ms: 0,
            ..result_file("x", 1)
        };
        assert_eq!(
            serde_json::to_value(ResultView::from(&unknown_time)).unwrap()["created_at"],
            serde_json::Value::Null
        );
    }

    #[test]
    fn results_list_table() {
        let views: Vec<ResultView> = [
            result_file("out.csv", 1_073_741_829),
            result_file("parts/a.csv", 512),
        ]
        .iter()
        .map(ResultView::from)
        .collect();
        assert_eq!(
            ResultView::table(&views),
            "\
TASK     ATTEMPT  NAME         SIZE     SHA256        CREATED
extract  2        out.csv      1.0 GiB  e3b0c44298fc  2026-11-18T11:06:40Z
extract  2        parts/a.csv  512 B    e3b0c44298fc  2026-11-18T11:06:40Z
"
        );
    }
}
