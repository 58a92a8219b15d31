//! Views of sql extraction: what an extract holds (`jobs show`, `results list`) and the stored
//! high watermarks (`watermarks list | set | reset`).

use ferry_proto::v1::{ExtractInfo, Watermark};
use serde::Serialize;

use super::{bytes, short_timestamp, timestamp, Table};

/// What an sql task's successful attempt extracted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExtractView {
    pub rows: u64,
    pub bytes: u64,
    pub files: Vec<String>,
    pub columns: Vec<ColumnView>,
    /// The upper bound extracted to; `None` when not incremental or no rows.
    pub watermark: Option<String>,
    pub incremental_column: Option<String>,
    pub backfill: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ColumnView {
    pub name: String,
    pub source_type: String,
    pub file_type: String,
    pub nullable: bool,
}

impl From<&ExtractInfo> for ExtractView {
    fn from(e: &ExtractInfo) -> Self {
        ExtractView {
            rows: e.rows,
            bytes: e.bytes,
            files: e.files.clone(),
            columns: e
                .columns
                .iter()
                .map(|c| ColumnView {
                    name: c.name.clone(),
                    source_type: c.source_type.clone(),
                    file_type: c.file_type.clone(),
                    nullable: c.nullable,
                })
                .collect(),
            watermark: e.watermark.clone().filter(|w| !w.is_empty()),
            incremental_column: (!e.incremental_column.is_empty())
                .then(|| e.incremental_column.clone()),
            backfill: e.backfill,
        }
    }
}

impl ExtractView {
    /// `name source_type→file_type`, `?` for a nullable column, comma-separated.
    pub fn schema(&self) -> String {
        if self.columns.is_empty() {
            return "-".to_owned();
        }
        self.columns
            .iter()
            .map(|c| {
                let null = if c.nullable { "?" } else { "" };
                format!("{} {}→{}{null}", c.name, c.source_type, c.file_type)
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The watermark cell: the value, `(backfill)` after a backfill's, `-` for none.
    pub fn watermark_cell(&self) -> String {
        match (&self.watermark, self.backfill) {
            (Some(w), true) => format!("{w} (backfill)"),
            (Some(w), false) => w.clone(),
            (None, _) => "-".to_owned(),
        }
    }

    /// The files cell: their names, or the first ones and how many there are.
    pub fn files_cell(&self) -> String {
        match self.files.len() {
            0 => "-".to_owned(),
            1..=3 => self.files.join(","),
            n => format!("{},{},… ({n} files)", self.files[0], self.files[1]),
        }
    }

    /// A table of extracts, one row per task: `(task, attempt, extract)`.
    pub fn table(rows: &[(&str, Option<u32>, &ExtractView)]) -> String {
        let mut table = Table::new(&["TASK", "ROWS", "SIZE", "FILES", "WATERMARK", "SCHEMA"]);
        for (task, attempt, e) in rows {
            let task = match attempt {
                Some(n) => format!("{task}#{n}"),
                None => (*task).to_owned(),
            };
            table.row(vec![
                task,
                e.rows.to_string(),
                bytes(e.bytes),
                e.files_cell(),
                e.watermark_cell(),
                e.schema(),
            ]);
        }
        table.render()
    }
}

/// One stored high watermark.
#[derive(Debug, Clone, Serialize)]
pub struct WatermarkView {
    pub job_name: String,
    pub task: String,
    pub column: String,
    pub value: String,
    pub updated_at: Option<String>,
    /// The job and attempt whose success set it; `None` when set by hand.
    pub job_id: Option<String>,
    pub attempt: Option<u32>,
    #[serde(skip)]
    updated_ms: i64,
}

impl From<&Watermark> for WatermarkView {
    fn from(w: &Watermark) -> Self {
        let by_hand = w.job_id.is_empty();
        WatermarkView {
            job_name: w.job_name.clone(),
            task: w.task_id.clone(),
            column: w.column.clone(),
            value: w.value.clone(),
            updated_at: timestamp(w.updated_at_ms),
            job_id: (!by_hand).then(|| w.job_id.clone()),
            attempt: (!by_hand).then_some(w.attempt),
            updated_ms: w.updated_at_ms,
        }
    }
}

impl WatermarkView {
    fn set_by(&self) -> String {
        match (&self.job_id, self.attempt) {
            (Some(job), Some(n)) => format!("{job}#{n}"),
            _ => "by hand".to_owned(),
        }
    }

    pub fn table(marks: &[WatermarkView]) -> String {
        let mut table = Table::new(&["JOB", "TASK", "COLUMN", "VALUE", "UPDATED", "SET BY"]);
        for m in marks {
            table.row(vec![
                m.job_name.clone(),
                m.task.clone(),
                m.column.clone(),
                m.value.clone(),
                short_timestamp(m.updated_ms),
                m.set_by(),
            ]);
        }
        table.render()
    }

    /// What `watermarks set` prints.
    pub fn set_table(&self) -> String {
        format!(
            "watermark of task {} of job {} set: {} > {:?} on its next run\n",
            self.task, self.job_name, self.column, self.value
        )
    }
}

/// `watermarks reset`.
#[derive(Debug, Serialize)]
pub struct ResetView {
    pub job_name: String,
    pub task: String,
    /// False when there was none.
    pub existed: bool,
}

impl ResetView {
    pub fn table(&self) -> String {
        if self.existed {
            format!(
                "watermark of task {} of job {} reset: its next run extracts from the start\n",
                self.task, self.job_name
            )
        } else {
            format!(
                "task {} of job {} had no watermark: its next run extracts from the start\n",
                self.task, self.job_name
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use ferry_proto::v1::ExtractColumn;
    use serde_json::json;

    use super::*;

    fn info() -> ExtractInfo {
        ExtractInfo {
            rows: 200,
            bytes: 5_300,
            files: vec!["extract.csv".into()],
            columns: vec![
                ExtractColumn {
                    name: "id".into(),
                    source_type: "INTEGER".into(),
                    file_type: "int64".into(),
                    nullable: false,
                },
                ExtractColumn {
                    name: "amount".into(),
                    source_type: "REAL".into(),
                    file_type: "float64".into(),
                    nullable: true,
                },
            ],
            watermark: Some("200".into()),
            incremental_column: "id".into(),
            backfill: false,
        }
    }

    #[test]
    fn extracts_read_as_json_and_as_a_table() {
        let view = ExtractView::from(&info());
        assert_eq!(
            serde_json::to_value(&view).unwrap(),
            json!({
                "rows": 200, "bytes": 5300, "files": ["extract.csv"],
                "columns": [
                    {"name": "id", "source_type": "INTEGER", "file_type": "int64", "nullable": false},
                    {"name": "amount", "source_type": "REAL", "file_type": "float64", "nullable": true}
                ],
                "watermark": "200", "incremental_column": "id", "backfill": false
            })
        );
        let backfill = ExtractView::from(&ExtractInfo {
            backfill: true,
            watermark: Some("50".into()),
            incremental_column: String::new(),
            columns: vec![],
            ..info()
        });
        assert_eq!(
            ExtractView::table(&[("extract", None, &view), ("old", Some(2), &backfill)]),
            "\
TASK     ROWS  SIZE     FILES        WATERMARK      SCHEMA
extract  200   5.2 KiB  extract.csv  200            id INTEGER→int64, amount REAL→float64?
old#2    200   5.2 KiB  extract.csv  50 (backfill)  -
"
        );
    }

    #[test]
    fn many_files_are_summed_up() {
        let view = ExtractView::from(&ExtractInfo {
            files: (1..=5).map(|i| format!("t-{i:05}.csv")).collect(),
            ..info()
        });
        assert_eq!(view.files_cell(), "t-00001.csv,t-00002.csv,… (5 files)");
    }

    #[test]
    fn watermarks_read_as_json_and_as_a_table() {
        let marks = [
            Watermark {
                job_name: "orders-etl".into(),
                task_id: "extract".into(),
                column: "updated_at".into(),
                value: "2026-11-24 10:00:00".into(),
                updated_at_ms: 1_795_000_000_000,
                job_id: "0193a".into(),
                attempt: 2,
            },
            Watermark {
                job_name: "orders-etl".into(),
                task_id: "other".into(),
                column: "id".into(),
                value: "42".into(),
                updated_at_ms: 1_795_000_000_000,
                job_id: String::new(),
                attempt: 0,
            },
        ];
        let views: Vec<WatermarkView> = marks.iter().map(WatermarkView::from).collect();
        assert_eq!(
            serde_json::to_value(&views).unwrap(),
            json!([
                {"job_name": "orders-etl", "task": "extract", "column": "updated_at",
                 "value": "2026-11-24 10:00:00", "updated_at": "2026-11-18T11:06:40.000Z",
                 "job_id": "0193a", "attempt": 2},
                {"job_name": "orders-etl", "task": "other", "column": "id", "value": "42",
                 "updated_at": "2026-11-18T11:06:40.000Z", "job_id": null, "attempt": null}
            ])
        );
        assert_eq!(
            WatermarkView::table(&views),
            "\
JOB         TASK     COLUMN      VALUE                UPDATED               SET BY
orders-etl  extract  updated_at  2026-11-24 10:00:00  2026-11-18T11:06:40Z  0193a#2
orders-etl  other    id          42                   2026-11-18T11:06:40Z  by hand
"
        );
    }
}
