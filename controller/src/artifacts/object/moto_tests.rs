//! The object store against a real moto server: grants, resumption after a restart
//! (a new instance finds the upload and its parts in the store), verification, discard.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::*;
use crate::s3::moto::Moto;

/// PUTs `data` to a presigned URL as an agent would; the ETag.
async fn put(url: &str, data: Vec<u8>) -> String {
    let client: Client<_, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let request = Request::builder()
        .method(Method::PUT)
        .uri(url)
        .body(Full::new(Bytes::from(data)))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status().as_u16();
    let etag = response
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    etag
}

fn key() -> AttemptKey {
    AttemptKey {
        job_id: "job1".into(),
        task_id: "extract".into(),
        attempt: 1,
    }
}

fn sha(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

#[tokio::test]
async fn object_store_uploads_resume_after_a_restart_and_verify() {
    let moto = Moto::start(&[]).await;
    let client = moto.bucket("s3://ferry-art/pre").await;
    let store = ObjectArtifacts::new(client.clone(), 1 << 30);
    let key = key();

    // 40 MiB: three parts of 16 MiB (the last 8).
    let size = 40u64 << 20;
    let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let UploadGrant::Multipart {
        upload_id,
        part_size,
        part_count,
        parts,
        done,
    } = store.grant_upload(&key, "big.bin", size, 0).await.unwrap()
    else {
        panic!("a multipart grant")
    };
    assert_eq!((part_size, part_count, parts.len()), (PART_SIZE, 3, 3));
    assert!(done.is_empty());
    let slice = |n: u32| {
        let at = (u64::from(n) - 1) * part_size;
        data[at as usize..(at + part_size).min(size) as usize].to_vec()
    };
    let etag1 = put(&parts[0].1, slice(1)).await;

    // A restarted controller: nothing in memory; the upload and its part are found again.
    let restarted = ObjectArtifacts::new(client.clone(), 1 << 30);
    let UploadGrant::Multipart {
        upload_id: again,
        parts,
        done,
        ..
    } = restarted
        .grant_upload(&key, "big.bin", size, 0)
        .await
        .unwrap()
    else {
        panic!("a multipart grant")
    };
    assert_eq!(again, upload_id);
    assert_eq!(done, vec![(1, etag1.clone(), part_size)]);
    assert_eq!(
        parts.iter().map(|p| p.0).collect::<Vec<_>>(),
        vec![2, 3],
        "only the parts the store lacks"
    );
    let etag2 = put(&parts[0].1, slice(2)).await;
    let etag3 = put(&parts[1].1, slice(3)).await;
    let stored = restarted
        .complete_upload(
            &key,
            "big.bin",
            &upload_id,
            &[(1, etag1), (2, etag2), (3, etag3)],
        )
        .await
        .unwrap();
    assert_eq!(stored, size);
    // Completing again (an answer lost on the way) answers the same.
    assert_eq!(
        restarted
            .complete_upload(&key, "big.bin", &upload_id, &[])
            .await
            .unwrap(),
        size
    );

    // A small file: one PUT, read back and checked at verification.
    let UploadGrant::Single { url } = restarted
        .grant_upload(&key, "small.csv", 4, 0)
        .await
        .unwrap()
    else {
        panic!("a single PUT")
    };
    put(&url, b"a,b\n".to_vec()).await;
    let outputs = |small_sha: String| {
        vec![
            OutputFile {
                name: "big.bin".into(),
                size,
                sha256: sha(&data),
            },
            OutputFile {
                name: "small.csv".into(),
                size: 4,
                sha256: small_sha,
            },
        ]
    };
    restarted
        .verify(&key, &outputs(sha(b"a,b\n")))
        .await
        .unwrap();
    let err = restarted
        .verify(&key, &outputs(sha(b"other")))
        .await
        .unwrap_err();
    assert!(matches!(err, ArtifactError::Mismatch { .. }), "{err}");
    let mut missing = outputs(sha(b"a,b\n"));
    missing[1].name = "gone.csv".into();
    let err = restarted.verify(&key, &missing).await.unwrap_err();
    assert!(matches!(err, ArtifactError::NotStaged { .. }), "{err}");

    // The limit counts what the attempt already holds.
    let small = ObjectArtifacts::new(client.clone(), size + 10);
    let err = small
        .grant_upload(&key, "more.bin", 20, 0)
        .await
        .unwrap_err();
    assert!(matches!(err, ArtifactError::TooLarge { .. }), "{err}");

    // Discarded: objects and uploads in progress go.
    let UploadGrant::Multipart { .. } = restarted
        .grant_upload(&key, "pending.bin", size, 0)
        .await
        .unwrap()
    else {
        panic!("a multipart grant")
    };
    assert_eq!(restarted.attempts().await.unwrap(), vec![key.clone()]);
    restarted.discard_all(&key).await.unwrap();
    assert!(client.list_objects_v2("pre/").await.unwrap().is_empty());
    assert!(client
        .list_multipart_uploads("pre/")
        .await
        .unwrap()
        .is_empty());
    assert!(restarted.attempts().await.unwrap().is_empty());
}
