//! `S3Store` against a real SeaweedFS server (`weed mini`, installed by
//! `scripts/setup.sh`): the object-store conformance suite at a bucket root
//! and under a prefix, plus the failures a user meets first.

use sen_backup::ObjectStore;
use sen_backup::store::conformance;
use sen_backup_s3::testing::SeaweedFs;
use sen_backup_s3::{S3Options, S3Store};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conforms_at_bucket_root_and_under_a_prefix() {
    let server = SeaweedFs::start().await;

    let root = server.store("s3://sen-b1").await;
    assert_eq!(root.describe(), format!("s3://sen-b1 at {}", server.endpoint()));
    conformance::run(&root).await;

    let prefixed = server.store("s3://sen-b2/some/prefix").await;
    conformance::run(&prefixed).await;

    // The prefix is really where the objects go, and listing strips it.
    prefixed.put("x/y", b"z".to_vec()).await.expect("put under prefix");
    let whole_bucket = server.store("s3://sen-b2").await;
    assert_eq!(whole_bucket.get("some/prefix/x/y").await.expect("raw key"), b"z");
    let listed = prefixed.list("x/").await.expect("list under prefix");
    assert_eq!(listed.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(), ["x/y"]);
    // A sibling prefix that merely starts with the same characters is not listed.
    whole_bucket
        .put("some/prefixed/q", b"q".to_vec())
        .await
        .expect("put sibling");
    assert!(
        prefixed
            .list("")
            .await
            .expect("list all")
            .iter()
            .all(|o| o.key != "q" && !o.key.contains("prefixed"))
    );

    // Ranges: at and past the end are empty, a zero length is empty, and
    // a missing object is still NotFound with a zero length.
    root.put("r", b"0123456789".to_vec()).await.expect("put");
    assert_eq!(root.get_range("r", 10, 5).await.expect("at end"), b"");
    assert_eq!(root.get_range("r", 50, 5).await.expect("past end"), b"");
    assert_eq!(root.get_range("r", 3, 0).await.expect("zero length"), b"");
    assert_eq!(root.get_range("r", 8, u64::MAX).await.expect("huge length"), b"89");
    assert!(root.get_range("nope", 0, 0).await.expect_err("missing").is_not_found());
    root.put("empty", Vec::new()).await.expect("put empty");
    assert_eq!(root.get_range("empty", 0, 4).await.expect("range of empty"), b"");

    root.probe_conditional_create()
        .await
        .expect("SeaweedFS honours If-None-Match: *");
    assert!(
        root.list("locks/").await.expect("list locks").is_empty(),
        "the probe object must be deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_is_a_clear_credentials_error() {
    let server = SeaweedFs::start().await;
    server.store("s3://sen-creds").await;
    let wrong = S3Options {
        secret_access_key: Some("not-the-secret".into()),
        ..server.options()
    };
    let store = S3Store::open("s3://sen-creds", wrong).await.expect("open");
    for e in [
        store.get("config").await.expect_err("get with a wrong secret"),
        store
            .put("config", b"x".to_vec())
            .await
            .expect_err("put with a wrong secret"),
        store.list("").await.expect_err("list with a wrong secret"),
        store
            .probe_conditional_create()
            .await
            .expect_err("probe with a wrong secret"),
    ] {
        assert!(!e.is_not_found(), "{e}");
        let msg = e.to_string();
        assert!(msg.contains("403"), "{msg}");
        assert!(msg.contains("AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"), "{msg}");
        eprintln!("wrong secret: {msg}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_bucket_is_a_clear_error_not_a_missing_object() {
    let server = SeaweedFs::start().await;
    let store = S3Store::open("s3://no-such-bucket/p", server.options())
        .await
        .expect("open does not touch the bucket");
    let want = format!(
        "bucket no-such-bucket does not exist at {}: create it first",
        server.endpoint()
    );
    let errors = [
        store.get("config").await.expect_err("get"),
        store.get_range("config", 0, 10).await.expect_err("get_range"),
        store.put("config", b"x".to_vec()).await.expect_err("put"),
        store
            .put_if_absent("locks/l", b"x".to_vec())
            .await
            .expect_err("put_if_absent"),
        store.list("").await.expect_err("list"),
        store.delete("config").await.expect_err("delete"),
        store.probe_conditional_create().await.expect_err("probe"),
    ];
    for e in errors {
        assert!(
            !e.is_not_found(),
            "a missing bucket must not look like a missing object: {e}"
        );
        assert!(e.to_string().contains(&want), "{e}");
        eprintln!("missing bucket: {e}");
    }
    // open did not create it; create_bucket_if_missing does, and is idempotent.
    store.create_bucket_if_missing().await.expect("create");
    store.create_bucket_if_missing().await.expect("create again");
    store.put("config", b"x".to_vec()).await.expect("put after create");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_endpoint_fails_fast_with_the_endpoint_in_the_message() {
    // A port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let opts = S3Options {
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        region: Some("us-east-1".into()),
        access_key_id: Some("k".into()),
        secret_access_key: Some("s".into()),
        max_attempts: 2,
        ..S3Options::default()
    };
    let store = S3Store::open("s3://bucket", opts).await.expect("open");
    let started = std::time::Instant::now();
    let e = store.get("config").await.expect_err("nothing listens there");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    let msg = e.to_string();
    assert!(!e.is_not_found(), "{msg}");
    assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
    eprintln!("unreachable: {msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_endpoints_speak_tls() {
    // A plain-text server on an https:// endpoint: the client must attempt
    // a TLS handshake (rustls + ring) and report its failure.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut conn, _)) = listener.accept().await {
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
        }
    });
    let opts = S3Options {
        endpoint: Some(format!("https://127.0.0.1:{port}")),
        region: Some("us-east-1".into()),
        access_key_id: Some("k".into()),
        secret_access_key: Some("s".into()),
        max_attempts: 1,
        ..S3Options::default()
    };
    let store = S3Store::open("s3://bucket", opts).await.expect("open");
    let e = store.get("config").await.expect_err("no TLS server there");
    let msg = e.to_string();
    eprintln!("https to a plain-text server: {msg}");
    assert!(!e.is_not_found(), "{msg}");
    assert!(msg.contains(&format!("https://127.0.0.1:{port}")), "{msg}");
    // rustls: "received corrupt message of type InvalidContentType".
    assert!(
        msg.contains("corrupt message") || msg.to_ascii_lowercase().contains("tls"),
        "{msg}"
    );
}
