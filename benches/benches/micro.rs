//! Micro-benchmarks of the hot paths, so regressions show up in review:
//!
//! ```text
//! cargo bench -p sen-benches --features micro
//! ```
//!
//! (criterion is behind the `micro` feature: CI's `cargo test` never builds
//! it.) Inputs are deterministic.

#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// Deterministic incompressible bytes.
fn random(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(n);
    v
}

/// Compressible text resembling portal pages.
fn text(n: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(n);
    let mut i = 0u64;
    while v.len() < n {
        v.extend_from_slice(
            format!(
                "<p class=\"tin\">Văn bản chỉ đạo điều hành số {i}/UBND-TH ngày {} tháng {} năm 2026.</p>\n",
                i % 28 + 1,
                i % 12 + 1
            )
            .as_bytes(),
        );
        i += 1;
    }
    v.truncate(n);
    v
}

fn content(c: &mut Criterion) {
    let data = random(8 << 20, 1);
    let mut g = c.benchmark_group("content");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("fastcdc cut 8 MiB", |b| {
        b.iter(|| black_box(sen_content::chunker::cut(black_box(&data))))
    });
    g.bench_function("blake3 chunk id 8 MiB", |b| {
        b.iter(|| black_box(sen_content::ChunkId::of(black_box(&data))))
    });
    let page = text(64 << 10);
    g.throughput(Throughput::Bytes(page.len() as u64));
    for level in [1, 3, 9] {
        g.bench_with_input(BenchmarkId::new("zstd encode 64 KiB text", level), &level, |b, &l| {
            b.iter(|| black_box(sen_content::StoredChunk::encode(black_box(&page), l).unwrap()))
        });
    }
    let stored = sen_content::StoredChunk::encode(&page, 3).unwrap();
    g.bench_function("zstd decode 64 KiB text", |b| {
        b.iter(|| black_box(stored.decode().unwrap()))
    });
    g.finish();
}

fn backup_pack(c: &mut Criterion) {
    // What one group of a backup pack costs: zstd 3 over 1 MiB of small
    // records, then sealing with XChaCha20-Poly1305.
    let (keys, _) = sen_backup::crypto::Keys::generate(b"bench password", "bench-repo").unwrap();
    let group = text(1 << 20);
    let mut g = c.benchmark_group("backup pack");
    g.throughput(Throughput::Bytes(group.len() as u64));
    g.bench_function("compress + seal 1 MiB group", |b| {
        b.iter(|| {
            let z = zstd::bulk::compress(black_box(&group), 3).unwrap();
            black_box(keys.seal(z, b"sen-blob-group-v1").unwrap())
        })
    });
    let sealed = keys.seal(zstd::bulk::compress(&group, 3).unwrap(), b"aad").unwrap();
    g.bench_function("open + decompress 1 MiB group", |b| {
        b.iter(|| {
            let z = keys.open(black_box(&sealed), b"aad", "bench").unwrap();
            black_box(zstd::bulk::decompress(&z, 2 << 20).unwrap())
        })
    });
    g.finish();
}

fn apply(c: &mut Criterion) {
    use sen_raft::mem::MemState;
    use sen_raft::{Applier, Op, Request};
    // 1,000 puts of 256 B values applied to an in-memory state (the apply
    // logic without RocksDB), as one batch of committed entries.
    let reqs: Vec<Request> = (0..1000u64)
        .map(|i| Request {
            id: Some(sen_core::RequestId::generate()),
            proposed_at_ms: 1_800_000_000_000 + i,
            op: Op::Put {
                db: "portal".into(),
                key: format!("k{i:08}").into_bytes(),
                value: vec![b'v'; 256],
            },
        })
        .collect();
    let mut g = c.benchmark_group("state machine");
    g.throughput(Throughput::Elements(reqs.len() as u64));
    g.bench_function("apply 1000 puts (in-memory state)", |b| {
        b.iter(|| {
            let mut state = MemState::default();
            let mut a = Applier::new(&state);
            for (i, r) in reqs.iter().enumerate() {
                black_box(a.apply(i as u64 + 1, r).unwrap());
            }
            let m = a.finish();
            state.write(m);
            black_box(state.kv.len())
        })
    });
    g.finish();
}

fn linearizability(c: &mut Criterion) {
    use sen_chaos::check::lin::{Event, RegIn, RegOut, Register, check};
    // A history of 5 clients on one key: overlapping puts, gets and CASes,
    // consistent with a register (the checker's common case).
    let mut events = Vec::new();
    let mut value: Option<String> = None;
    let mut t = 0u64;
    for i in 0..200u64 {
        let client = i % 5;
        let (input, output) = match i % 4 {
            0 => {
                let v = format!("v{i}");
                value = Some(v.clone());
                (RegIn::Put(v), RegOut::Done)
            }
            1 => (RegIn::Get, RegOut::Read(value.clone())),
            2 => {
                let v = format!("c{i}");
                let r = (RegIn::Cas(value.clone(), v.clone()), RegOut::Cas(Some(true)));
                value = Some(v);
                r
            }
            _ => (RegIn::Get, RegOut::Read(value.clone())),
        };
        // Each op overlaps the next client's op a little.
        events.push(Event {
            input,
            output,
            call: t,
            ret: t + 3 + client,
        });
        t += 4 + client;
    }
    let mut g = c.benchmark_group("checker");
    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function("linearizability, 200 ops on one key", |b| {
        b.iter(|| black_box(check(&Register, black_box(&events), None)))
    });
    g.finish();
}

/// What authenticating a bearer token costs a node, besides reading two
/// records from its replica: parsing, the keyed BLAKE3 hash compared in
/// constant time, decoding the token and user records, and checking a
/// grant.
fn auth(c: &mut Criterion) {
    use sen_core::auth::{Action, Grant, Grants, Role};
    use sen_raft::schema::system::{SystemRecord, TokenRecord, UserRecord};
    use sen_security::TokenSecret;
    let key = [7u8; 32];
    let token = TokenSecret::generate();
    let text = token.reveal();
    let stored = token.hash(&key);
    let rec = TokenRecord {
        version: 1,
        id: token.id.clone(),
        user: "cong-bao-admin".into(),
        name: "laptop".into(),
        hash: stored.iter().map(|b| format!("{b:02x}")).collect(),
        created_at_ms: 1,
        created_by: "admin".into(),
        expires_at_ms: Some(u64::MAX),
        revoked_at_ms: None,
    }
    .to_json()
    .expect("json");
    let grants = vec![
        Grant {
            role: Role::SiteAdmin,
            scopes: vec![
                "site:cong-bao".parse().expect("scope"),
                "db:cong-bao".parse().expect("scope"),
            ],
        },
        Grant {
            role: Role::Reader,
            scopes: vec!["site:xa-*".parse().expect("scope")],
        },
    ];
    let user = UserRecord {
        version: 1,
        name: "cong-bao-admin".into(),
        grants: grants.clone(),
        created_at_ms: 1,
        created_by: "admin".into(),
        updated_at_ms: 1,
    }
    .to_json()
    .expect("json");
    let mut g = c.benchmark_group("auth");
    g.bench_function("token: parse, keyed blake3, constant-time compare", |b| {
        b.iter(|| {
            let t = TokenSecret::parse(black_box(&text)).expect("token");
            black_box(t.matches(&key, &stored))
        })
    });
    g.bench_function("token and user records: decode (JSON)", |b| {
        b.iter(|| {
            let t = TokenRecord::from_json(black_box(&rec)).expect("token record");
            let u = UserRecord::from_json(black_box(&user)).expect("user record");
            black_box((t, u))
        })
    });
    let grants = Grants(grants);
    g.bench_function("grants: may write db:cong-bao", |b| {
        b.iter(|| black_box(grants.allows(black_box(&Action::DbWrite("cong-bao")))))
    });
    g.finish();
}

criterion_group!(benches, content, backup_pack, apply, linearizability, auth);
criterion_main!(benches);
