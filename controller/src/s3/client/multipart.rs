//! Multipart uploads: create, presign a part's PUT, complete, abort, and list the parts of an
//! upload and the uploads in progress.

use std::time::Duration;

use bytes::Bytes;
use hyper::Method;

use super::error::service_error;
use super::http::header;
use super::{S3Client, S3Error};
use crate::s3::xml;

/// S3 numbers parts from 1 to 10000.
pub const MAX_PART_NUMBER: u32 = 10_000;

impl S3Client {
    /// Starts a multipart upload of `key`; returns its upload id.
    pub async fn create_multipart_upload(&self, key: &str) -> Result<String, S3Error> {
        let op = "CreateMultipartUpload";
        let query = [("uploads".to_string(), String::new())];
        let answer = self
            .send(op, Method::POST, Some(key), &query, &[], Bytes::new())
            .await?;
        let text = String::from_utf8_lossy(&answer.body);
        xml::tag(&text, "UploadId")
            .filter(|id| !id.is_empty())
            .ok_or_else(|| S3Error::Malformed {
                op,
                target: self.target(Some(key)),
                detail: "no UploadId".into(),
            })
    }

    /// A URL the holder can `PUT` part `part_number` (1 to 10000) of the upload to, for
    /// `expires`. The answer's `ETag` header names the part for `complete_multipart_upload`.
    pub fn presign_upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        expires: Duration,
    ) -> Result<String, S3Error> {
        let op = "UploadPart";
        if !(1..=MAX_PART_NUMBER).contains(&part_number) {
            return Err(S3Error::Invalid {
                op,
                target: self.target(Some(key)),
                detail: format!("part number {part_number} is not from 1 to {MAX_PART_NUMBER}"),
            });
        }
        let query = [
            ("partNumber".to_string(), part_number.to_string()),
            ("uploadId".to_string(), upload_id.to_string()),
        ];
        self.presign(op, "PUT", key, &query, expires)
    }

    /// Assembles the object from `parts` (number, ETag as returned by each part's PUT), in
    /// ascending part order; returns the object's ETag.
    pub async fn complete_multipart_upload(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[(u32, String)],
    ) -> Result<String, S3Error> {
        let op = "CompleteMultipartUpload";
        let mut sorted: Vec<&(u32, String)> = parts.iter().collect();
        sorted.sort_by_key(|(number, _)| *number);
        let mut body = String::from("<CompleteMultipartUpload>");
        for (number, etag) in sorted {
            body.push_str(&format!(
                "<Part><PartNumber>{number}</PartNumber><ETag>{}</ETag></Part>",
                xml::escape(etag)
            ));
        }
        body.push_str("</CompleteMultipartUpload>");
        let query = [("uploadId".to_string(), upload_id.to_string())];
        let answer = self
            .send(op, Method::POST, Some(key), &query, &[], Bytes::from(body))
            .await?;
        // S3 may answer 200 and still fail: the error is then in the body.
        let text = String::from_utf8_lossy(&answer.body);
        if text.contains("<Error>") {
            return Err(service_error(
                op,
                self.target(Some(key)),
                answer.status,
                &answer.body,
            ));
        }
        Ok(xml::tag(&text, "ETag")
            .or_else(|| header(&answer.headers, "etag"))
            .unwrap_or_default())
    }

    /// Abandons a multipart upload and frees its parts.
    pub async fn abort_multipart_upload(&self, key: &str, upload_id: &str) -> Result<(), S3Error> {
        let query = [("uploadId".to_string(), upload_id.to_string())];
        self.send(
            "AbortMultipartUpload",
            Method::DELETE,
            Some(key),
            &query,
            &[],
            Bytes::new(),
        )
        .await?;
        Ok(())
    }
    /// The parts of a multipart upload the store holds: (number, ETag, size), in order.
    /// `NoSuchUpload` when the upload was completed or aborted.
    pub async fn list_parts(
        &self,
        key: &str,
        upload_id: &str,
    ) -> Result<Vec<(u32, String, u64)>, S3Error> {
        let op = "ListParts";
        let mut parts = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let mut query = vec![
                ("max-parts".to_string(), "1000".to_string()),
                ("uploadId".to_string(), upload_id.to_string()),
            ];
            if let Some(marker) = &marker {
                query.push(("part-number-marker".to_string(), marker.clone()));
            }
            let answer = self
                .send(op, Method::GET, Some(key), &query, &[], Bytes::new())
                .await?;
            let text = String::from_utf8_lossy(&answer.body);
            let malformed = |detail: &str| S3Error::Malformed {
                op,
                target: self.target(Some(key)),
                detail: detail.to_string(),
            };
            for block in xml::blocks(&text, "Part") {
                let number = xml::tag(block, "PartNumber")
                    .and_then(|n| n.trim().parse().ok())
                    .ok_or_else(|| malformed("a part has no PartNumber"))?;
                let size = xml::tag(block, "Size")
                    .and_then(|n| n.trim().parse().ok())
                    .ok_or_else(|| malformed("a part has no Size"))?;
                let etag =
                    xml::tag(block, "ETag").ok_or_else(|| malformed("a part has no ETag"))?;
                parts.push((number, etag, size));
            }
            let truncated = xml::tag(&text, "IsTruncated").is_some_and(|t| t.trim() == "true");
            match xml::tag(&text, "NextPartNumberMarker").filter(|m| !m.is_empty()) {
                Some(next) if truncated => marker = Some(next),
                _ => break,
            }
        }
        parts.sort_by_key(|p| p.0);
        Ok(parts)
    }

    /// The multipart uploads in progress whose keys start with `prefix`: (key, upload id),
    /// oldest first within a key.
    pub async fn list_multipart_uploads(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, String)>, S3Error> {
        let op = "ListMultipartUploads";
        let mut uploads = Vec::new();
        let mut markers: Option<(String, String)> = None;
        loop {
            let mut query = vec![
                ("prefix".to_string(), prefix.to_string()),
                ("uploads".to_string(), String::new()),
            ];
            if let Some((key, id)) = &markers {
                query.push(("key-marker".to_string(), key.clone()));
                query.push(("upload-id-marker".to_string(), id.clone()));
            }
            let answer = self
                .send(op, Method::GET, None, &query, &[], Bytes::new())
                .await?;
            let text = String::from_utf8_lossy(&answer.body);
            for block in xml::blocks(&text, "Upload") {
                if let (Some(key), Some(id)) = (xml::tag(block, "Key"), xml::tag(block, "UploadId"))
                {
                    // Some servers ignore `prefix` here: filter again.
                    if key.starts_with(prefix) {
                        uploads.push((key, id));
                    }
                }
            }
            let truncated = xml::tag(&text, "IsTruncated").is_some_and(|t| t.trim() == "true");
            let next = (
                xml::tag(&text, "NextKeyMarker").unwrap_or_default(),
                xml::tag(&text, "NextUploadIdMarker").unwrap_or_default(),
            );
            if !truncated || next.0.is_empty() {
                return Ok(uploads);
            }
            markers = Some(next);
        }
    }
}
