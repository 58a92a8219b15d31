//! Tests of the S3 client against a real moto server on loopback (`moto.rs` starts it). The
//! presigned URLs are used as an agent would: plain HTTP requests that carry no credentials.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::moto::{Moto, ACCESS_KEY, SECRET_KEY};
use super::sigv4::{self, Signer};
use super::time::Timestamp;
use super::xml;
use crate::s3::location::{Credentials, Secret};

const MINUTE: Duration = Duration::from_secs(60);

struct Reply {
    status: u16,
    etag: Option<String>,
    body: Bytes,
}

/// One plain HTTP request, as an agent holding only a URL would send it.
async fn plain(method: Method, url: &str, headers: &[(String, String)], body: Bytes) -> Reply {
    let client: Client<_, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut request = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let response = client
        .request(request.body(Full::new(body)).unwrap())
        .await
        .expect("HTTP request");
    let status = response.status().as_u16();
    let etag = response
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_string());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Reply { status, etag, body }
}

#[tokio::test]
async fn s3_moto_presigned_put_signed_get_list_and_delete() {
    let moto = Moto::start(&[]).await;
    let s3 = moto.bucket("s3://ferry-artifacts/runs/").await;

    // An agent PUTs through a presigned URL; the controller reads it back, signed.
    let key = s3.key("job-1/extract/attempt-1/table.csv");
    assert_eq!(key, "runs/job-1/extract/attempt-1/table.csv");
    let url = s3.presign_put(&key, MINUTE).unwrap();
    let put = plain(Method::PUT, &url, &[], Bytes::from_static(b"a,b\n1,2\n")).await;
    assert_eq!(put.status, 200, "{}", String::from_utf8_lossy(&put.body));
    assert_eq!(&s3.get_object(&key).await.unwrap()[..], b"a,b\n1,2\n");

    // Signed small puts, including a key that needs escaping in URLs and XML.
    let odd = s3.key("job-1/load/attempt-2/a b&c<d>+é.txt");
    s3.put_object(&odd, Bytes::from_static(b"odd"))
        .await
        .unwrap();
    s3.put_object(&s3.key("job-1/load/attempt-2/empty"), Bytes::new())
        .await
        .unwrap();
    s3.put_object(&s3.key("job-2/x"), Bytes::from_static(b"x"))
        .await
        .unwrap();
    let meta = s3.head_object(&odd).await.unwrap().expect("the object");
    assert_eq!(meta.size, 3);
    assert!(meta.etag.starts_with('"'), "{meta:?}");
    let got = plain(
        Method::GET,
        &s3.presign_get(&odd, MINUTE).unwrap(),
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!((got.status, &got.body[..]), (200, &b"odd"[..]));

    // Listing by prefix, whole and page by page.
    let listed = s3.list_objects_v2(&s3.key("job-1/")).await.unwrap();
    let keys: Vec<&str> = listed.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "runs/job-1/extract/attempt-1/table.csv",
            "runs/job-1/load/attempt-2/a b&c<d>+é.txt",
            "runs/job-1/load/attempt-2/empty",
        ]
    );
    assert_eq!(listed.iter().map(|o| o.size).collect::<Vec<_>>(), [8, 3, 0]);
    let mut paged = Vec::new();
    let mut token = None;
    loop {
        let page = s3
            .list_objects_v2_page(&s3.key("job-1/"), token.as_deref(), 1)
            .await
            .unwrap();
        assert!(page.objects.len() <= 1);
        paged.extend(page.objects);
        match page.next {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    assert_eq!(paged, listed);

    // Deleting.
    let doomed: Vec<String> = listed.iter().map(|o| o.key.clone()).collect();
    s3.delete_objects(&doomed).await.unwrap();
    assert!(s3
        .list_objects_v2(&s3.key("job-1/"))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(s3.head_object(&odd).await.unwrap(), None);
    assert_eq!(s3.list_objects_v2(&s3.key("")).await.unwrap().len(), 1);
    let err = s3.get_object(&odd).await.unwrap_err();
    assert_eq!(err.code(), Some("NoSuchKey"), "{err}");
    assert!(err.to_string().contains("GetObject"), "{err}");
    assert!(err.to_string().contains("HTTP 404"), "{err}");
}

#[tokio::test]
async fn s3_moto_multipart_upload_through_presigned_parts() {
    let moto = Moto::start(&[]).await;
    let s3 = moto.bucket("s3://ferry-artifacts").await;
    let key = s3.key("job/task/1/big.bin");

    let first: Vec<u8> = (0..5 << 20).map(|i: u32| (i % 251) as u8).collect();
    let second = vec![7u8];
    let upload_id = s3.create_multipart_upload(&key).await.unwrap();
    let mut parts = Vec::new();
    // Uploaded out of order, as two agents' connections might.
    for (number, data) in [(2u32, &second), (1, &first)] {
        let url = s3
            .presign_upload_part(&key, &upload_id, number, MINUTE)
            .unwrap();
        assert!(url.contains(&format!("partNumber={number}")), "{url}");
        let reply = plain(Method::PUT, &url, &[], Bytes::from(data.clone())).await;
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        parts.push((number, reply.etag.expect("a part's ETag")));
    }
    let etag = s3
        .complete_multipart_upload(&key, &upload_id, &parts)
        .await
        .unwrap();
    assert!(etag.ends_with("-2\""), "a two-part ETag: {etag}");

    let meta = s3.head_object(&key).await.unwrap().expect("the object");
    assert_eq!(meta.size, (5 << 20) + 1);
    assert_eq!(meta.etag, etag);
    let got = plain(
        Method::GET,
        &s3.presign_get(&key, MINUTE).unwrap(),
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body.len(), (5 << 20) + 1);
    assert!(got.body[..5 << 20] == first[..] && got.body[5 << 20..] == second[..]);

    // An aborted upload cannot be completed.
    let other = s3.key("job/task/1/abandoned.bin");
    let abandoned = s3.create_multipart_upload(&other).await.unwrap();
    let url = s3
        .presign_upload_part(&other, &abandoned, 1, MINUTE)
        .unwrap();
    let reply = plain(Method::PUT, &url, &[], Bytes::from_static(b"partial")).await;
    let part = (1, reply.etag.expect("ETag"));
    s3.abort_multipart_upload(&other, &abandoned).await.unwrap();
    // (moto answers 500 to any later use of an aborted upload, so only its absence is checked.)
    drop(part);
    assert_eq!(s3.head_object(&other).await.unwrap(), None);
}

/// One IAM query-API call to moto (form body, signed for `iam`); the answer's XML.
async fn iam(moto: &Moto, params: &[(&str, &str)]) -> String {
    let body: String = params
        .iter()
        .map(|(k, v)| format!("{k}={}", sigv4::uri_encode(v, true)))
        .collect::<Vec<_>>()
        .join("&");
    let body = format!("{body}&Version=2010-05-08");
    let signer = Signer::new(
        Credentials {
            access_key_id: ACCESS_KEY.into(),
            secret_access_key: Secret(SECRET_KEY.into()),
            session_token: None,
        },
        "us-east-1",
    )
    .with_service("iam");
    let mut headers = vec![
        ("host".to_string(), format!("127.0.0.1:{}", moto.port)),
        (
            "content-type".to_string(),
            "application/x-www-form-urlencoded; charset=utf-8".to_string(),
        ),
    ];
    let hash = sigv4::sha256_hex(body.as_bytes());
    signer.sign_headers("POST", "/", &[], &mut headers, &hash, Timestamp::now());
    let reply = plain(
        Method::POST,
        &format!("{}/", moto.endpoint()),
        &headers,
        Bytes::from(body),
    )
    .await;
    let text = String::from_utf8_lossy(&reply.body).to_string();
    assert_eq!(reply.status, 200, "IAM {params:?}: {text}");
    text
}

#[tokio::test]
async fn s3_moto_checks_header_signatures_and_names_the_refusal() {
    // moto verifies signatures (with botocore's SigV4) only once this many actions have run
    // unauthenticated: here the IAM set-up (3) and the bucket's creation.
    let moto = Moto::start(&[("INITIAL_NO_AUTH_ACTION_COUNT", "4")]).await;
    iam(&moto, &[("Action", "CreateUser"), ("UserName", "ferry")]).await;
    let created = iam(
        &moto,
        &[("Action", "CreateAccessKey"), ("UserName", "ferry")],
    )
    .await;
    let key_id = xml::tag(&created, "AccessKeyId").expect("AccessKeyId");
    let secret = xml::tag(&created, "SecretAccessKey").expect("SecretAccessKey");
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#;
    iam(
        &moto,
        &[
            ("Action", "PutUserPolicy"),
            ("UserName", "ferry"),
            ("PolicyName", "s3"),
            ("PolicyDocument", policy),
        ],
    )
    .await;
    let good = moto.client("s3://ferry-artifacts/p", &key_id, &secret);
    if let Err(e) = good.create_bucket().await {
        panic!("{e}");
    }

    // From here every request is checked: the right secret's signatures are accepted…
    let key = good.key("a/b c.txt");
    good.put_object(&key, Bytes::from_static(b"signed"))
        .await
        .expect("a correctly signed PUT");
    assert_eq!(&good.get_object(&key).await.unwrap()[..], b"signed");
    assert_eq!(good.head_object(&key).await.unwrap().unwrap().size, 6);
    // (moto re-checks a query with `/` decoded, refusing even botocore's own signature of
    // `prefix=p%2Fa`: checked here with a prefix without `/`, as botocore passes too.)
    let listed = good.list_objects_v2("p").await.unwrap();
    assert_eq!(listed.len(), 1);

    // …a wrong secret's are refused, with S3's code in the error…
    let wrong = moto.client("s3://ferry-artifacts/p", &key_id, "not-the-secret");
    let err = wrong
        .put_object(&key, Bytes::from_static(b"forged"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");
    assert_eq!(err.code(), Some("SignatureDoesNotMatch"), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("PutObject") && text.contains("HTTP 403"),
        "{text}"
    );
    assert!(
        !text.contains("not-the-secret"),
        "the secret leaked: {text}"
    );

    // …and so is an unknown key id.
    let stranger = moto.client("s3://ferry-artifacts/p", "AKIAUNKNOWN000000000", &secret);
    let err = stranger.get_object(&key).await.unwrap_err();
    assert_eq!(err.code(), Some("InvalidAccessKeyId"), "{err}");
    assert_eq!(&good.get_object(&key).await.unwrap()[..], b"signed");
}
