//! The bucket and single objects: create the bucket, put/get/head/delete an object, presigned
//! GET/PUT URLs, and ListObjectsV2 (one page or all of them).

use std::time::Duration;

use bytes::Bytes;
use hyper::Method;

use super::http::header;
use super::{S3Client, S3Error};
use crate::s3::xml;

/// What HEAD tells of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub size: u64,
    /// As S3 sends it, quotes included.
    pub etag: String,
}

/// One object of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    pub key: String,
    pub size: u64,
    pub etag: String,
}

/// One page of ListObjectsV2 and the token of the next, if any.
#[derive(Debug, Clone, Default)]
pub struct ListPage {
    pub objects: Vec<ListedObject>,
    pub next: Option<String>,
}

impl S3Client {
    /// Creates the configured bucket (in the configured region).
    pub async fn create_bucket(&self) -> Result<(), S3Error> {
        let body = if self.config.region == "us-east-1" {
            Bytes::new()
        } else {
            Bytes::from(format!(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                 <LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
                xml::escape(&self.config.region)
            ))
        };
        self.send("CreateBucket", Method::PUT, None, &[], &[], body)
            .await?;
        Ok(())
    }

    /// Stores a small object in one request; returns its ETag.
    pub async fn put_object(&self, key: &str, body: Bytes) -> Result<String, S3Error> {
        let answer = self
            .send("PutObject", Method::PUT, Some(key), &[], &[], body)
            .await?;
        Ok(header(&answer.headers, "etag").unwrap_or_default())
    }

    /// Reads a whole object into memory (for small objects: manifests, tests).
    pub async fn get_object(&self, key: &str) -> Result<Bytes, S3Error> {
        let answer = self
            .send("GetObject", Method::GET, Some(key), &[], &[], Bytes::new())
            .await?;
        Ok(answer.body)
    }

    /// Size and ETag of `key`, or `None` if there is no such object.
    pub async fn head_object(&self, key: &str) -> Result<Option<ObjectMeta>, S3Error> {
        let op = "HeadObject";
        let answer = match self
            .send(op, Method::HEAD, Some(key), &[], &[], Bytes::new())
            .await
        {
            Ok(answer) => answer,
            Err(S3Error::Service { status: 404, .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let size = header(&answer.headers, "content-length")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| S3Error::Malformed {
                op,
                target: self.target(Some(key)),
                detail: "no Content-Length".into(),
            })?;
        Ok(Some(ObjectMeta {
            size,
            etag: header(&answer.headers, "etag").unwrap_or_default(),
        }))
    }
    /// A URL the holder can `GET` `key` from, for `expires`.
    pub fn presign_get(&self, key: &str, expires: Duration) -> Result<String, S3Error> {
        self.presign("GetObject", "GET", key, &[], expires)
    }

    /// A URL the holder can `PUT` `key` to in one request, for `expires`.
    pub fn presign_put(&self, key: &str, expires: Duration) -> Result<String, S3Error> {
        self.presign("PutObject", "PUT", key, &[], expires)
    }

    /// Deletes `key` (no error if it does not exist).
    pub async fn delete_object(&self, key: &str) -> Result<(), S3Error> {
        self.send(
            "DeleteObject",
            Method::DELETE,
            Some(key),
            &[],
            &[],
            Bytes::new(),
        )
        .await?;
        Ok(())
    }

    /// Deletes every key, one DELETE each (DeleteObjects would need a Content-MD5), stopping
    /// at the first failure.
    pub async fn delete_objects(&self, keys: &[String]) -> Result<(), S3Error> {
        for key in keys {
            self.delete_object(key).await?;
        }
        Ok(())
    }

    /// One page of the keys starting with `prefix`, after `continuation` (from the previous
    /// page's `next`), at most `max_keys` (1 to 1000).
    pub async fn list_objects_v2_page(
        &self,
        prefix: &str,
        continuation: Option<&str>,
        max_keys: u32,
    ) -> Result<ListPage, S3Error> {
        let op = "ListObjectsV2";
        let mut query = vec![
            ("list-type".to_string(), "2".to_string()),
            ("max-keys".to_string(), max_keys.clamp(1, 1000).to_string()),
            ("prefix".to_string(), prefix.to_string()),
        ];
        if let Some(token) = continuation {
            query.push(("continuation-token".to_string(), token.to_string()));
        }
        let answer = self
            .send(op, Method::GET, None, &query, &[], Bytes::new())
            .await?;
        let text = String::from_utf8_lossy(&answer.body);
        let malformed = |detail: String| S3Error::Malformed {
            op,
            target: self.target(None),
            detail,
        };
        let mut objects = Vec::new();
        for block in xml::blocks(&text, "Contents") {
            let key =
                xml::tag(block, "Key").ok_or_else(|| malformed("an entry has no Key".into()))?;
            let size = xml::tag(block, "Size")
                .and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| malformed(format!("{key:?} has no Size")))?;
            objects.push(ListedObject {
                key,
                size,
                etag: xml::tag(block, "ETag").unwrap_or_default(),
            });
        }
        let truncated = xml::tag(&text, "IsTruncated").is_some_and(|t| t.trim() == "true");
        let next = if truncated {
            Some(
                xml::tag(&text, "NextContinuationToken")
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| malformed("truncated without NextContinuationToken".into()))?,
            )
        } else {
            None
        };
        Ok(ListPage { objects, next })
    }
    /// Every object whose key starts with `prefix`, following continuation tokens.
    pub async fn list_objects_v2(&self, prefix: &str) -> Result<Vec<ListedObject>, S3Error> {
        let mut all = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .list_objects_v2_page(prefix, token.as_deref(), 1000)
                .await?;
            all.extend(page.objects);
            match page.next {
                Some(next) => token = Some(next),
                None => return Ok(all),
            }
        }
    }
}
