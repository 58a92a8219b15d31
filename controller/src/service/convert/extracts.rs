//! The conversions of incremental extracts: a task's extract range and what it reported (rows,
//! files, columns, watermark), and the watermarks kept per job name.

use ferry_proto::v1 as pb;

use crate::model::{ExtractColumn, ExtractInfo, ExtractRange, TaskExtract, Watermark};

pub fn extract_range(r: &ExtractRange) -> pb::ExtractRange {
    pb::ExtractRange {
        after: r.after.clone(),
        until: r.until.clone(),
        backfill: r.backfill,
    }
}

pub fn extract_info(e: &ExtractInfo) -> pb::ExtractInfo {
    pb::ExtractInfo {
        rows: e.rows,
        bytes: e.bytes,
        files: e.files.clone(),
        columns: e
            .columns
            .iter()
            .map(|c| pb::ExtractColumn {
                name: c.name.clone(),
                source_type: c.source_type.clone(),
                file_type: c.file_type.clone(),
                nullable: c.nullable,
            })
            .collect(),
        watermark: e.watermark.clone(),
        incremental_column: e.incremental_column.clone(),
        backfill: e.backfill,
    }
}

/// What an agent reports with a success; an empty watermark is no watermark.
pub fn extract_from_agent(e: Option<pb::ExtractInfo>) -> Option<ExtractInfo> {
    let e = e?;
    Some(ExtractInfo {
        rows: e.rows,
        bytes: e.bytes,
        files: e.files,
        columns: e
            .columns
            .into_iter()
            .map(|c| ExtractColumn {
                name: c.name,
                source_type: c.source_type,
                file_type: c.file_type,
                nullable: c.nullable,
            })
            .collect(),
        watermark: e.watermark.filter(|w| !w.is_empty()),
        incremental_column: e.incremental_column,
        backfill: e.backfill,
    })
}

pub fn task_extract(t: &TaskExtract) -> pb::TaskExtract {
    pb::TaskExtract {
        task_id: t.task_id.clone(),
        attempt: t.attempt,
        extract: Some(extract_info(&t.extract)),
    }
}

pub fn watermark(w: &Watermark) -> pb::Watermark {
    pb::Watermark {
        job_name: w.job_name.clone(),
        task_id: w.task_id.clone(),
        column: w.column.clone(),
        value: w.value.clone(),
        updated_at_ms: w.updated_at,
        job_id: w.job_id.clone().unwrap_or_default(),
        attempt: w.attempt,
    }
}
