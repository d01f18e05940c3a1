//! `sen restore …`: a whole cluster into a new data directory, a site
//! into a local directory or back into the live site, a database into
//! JSON lines or back into the live database (docs/backup.md). The work is
//! `sen_backup::restore`; this module parses, prints and exits.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Subcommand;
use sen_backup::RepoError;
use sen_backup::archive;
use sen_backup::format::hex_id;
use sen_backup::read::{self, SnapshotEntry};
use sen_backup::restore::{self, DbChange, SiteRestore};
use sen_ops::live::ClientCluster;
use sen_store::backup::DataDirSink;
use serde_json::json;

use crate::output::emit;
use crate::repo_args::{RepoArgs, bar, fail, mb, open, open_snapshot, runtime, when};
use crate::{Failure, Output};

#[derive(Subcommand, Debug)]
pub enum RestoreCmd {
    /// Prepare a data directory that starts a new one-node cluster holding
    /// exactly a snapshot's state (disaster recovery).
    Cluster {
        #[command(flatten)]
        repo: RepoArgs,
        /// `latest` or a snapshot id prefix.
        #[arg(long, default_value = "latest")]
        snapshot: String,
        /// Point in time: `latest` (everything archived) or a time
        /// (`2026-12-03T14:02:00+07:00`): the newest snapshot before it,
        /// then the archived log replayed up to the last entry committed
        /// at or before it (`sen archive enable`).
        #[arg(long, conflicts_with_all = ["snapshot", "index"])]
        at: Option<String>,
        /// Point in time: replay the archived log up to this Raft index.
        #[arg(long, conflicts_with_all = ["snapshot", "at"])]
        index: Option<u64>,
        /// New, empty data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// Node id of the restored node.
        #[arg(long)]
        id: u64,
        /// gRPC address the node will listen on.
        #[arg(long)]
        listen: String,
        /// Address other nodes reach it at (default: --listen).
        #[arg(long)]
        advertise: Option<String>,
    },
    /// Restore a site (or a file or directory of it) to a local directory.
    Site {
        #[command(flatten)]
        repo: RepoArgs,
        site: String,
        /// A file or directory of the site (default: all of it).
        #[arg(long, default_value = "")]
        path: String,
        #[arg(long, default_value = "latest")]
        snapshot: String,
        /// Point in time instead of a snapshot: `latest` or a time
        /// (`2026-12-03T14:02:00+07:00`); the cluster's state then is
        /// rebuilt from the newest snapshot and the archived log in a
        /// scratch directory, and the site taken from it.
        #[arg(long, conflicts_with = "snapshot")]
        at: Option<String>,
        /// Local directory to write into.
        #[arg(long, required_unless_present = "into_cluster", conflicts_with = "into_cluster")]
        to: Option<PathBuf>,
        /// Put the files back into the live site instead (one atomic
        /// deployment: under --path the site becomes what the snapshot had;
        /// everything else stays as it is now).
        #[arg(long)]
        into_cluster: bool,
        /// With --into-cluster: list what would change, change nothing.
        #[arg(long, requires = "into_cluster")]
        dry_run: bool,
    },
    /// Restore a database (or the keys under a prefix) to a JSON-lines file.
    Db {
        #[command(flatten)]
        repo: RepoArgs,
        db: String,
        #[arg(long, default_value = "")]
        prefix: String,
        #[arg(long, default_value = "latest")]
        snapshot: String,
        /// Point in time instead of a snapshot: `latest` or a time
        /// (`2026-12-03T14:02:00+07:00`), rebuilt from the archived log.
        #[arg(long, conflicts_with = "snapshot")]
        at: Option<String>,
        /// File to write (`-`: standard output).
        #[arg(long, required_unless_present = "into_cluster", conflicts_with = "into_cluster")]
        to: Option<PathBuf>,
        /// Write the records back into the live database instead: under
        /// --prefix the database becomes what the snapshot had (keys added
        /// since are deleted, changed ones reset).
        #[arg(long)]
        into_cluster: bool,
        /// With --into-cluster: list what would change, change nothing.
        #[arg(long, requires = "into_cluster")]
        dry_run: bool,
    },
}

pub fn run_restore(cmd: RestoreCmd, endpoints: &[String], output: Output, timeout: Duration) -> Result<(), Failure> {
    let rt = runtime()?;
    let started = Instant::now();
    if let Some(done) = point_in_time(&rt, &cmd, endpoints, output, timeout)? {
        return Ok(done);
    }
    match cmd {
        RestoreCmd::Site {
            repo,
            site,
            path,
            snapshot,
            into_cluster: true,
            dry_run,
            ..
        } => {
            let (r, e, index) = open_snapshot(&rt, &repo, &snapshot)?;
            let client = crate::client(endpoints, timeout)?;
            let mut live = ClientCluster {
                client: &client,
                rt: rt.handle().clone(),
            };
            let done = restore::site_into_cluster(&r, &index, &e, &site, &path, &mut live, dry_run).map_err(fail)?;
            print_site_restore(output, &source_of(&e), &site, &path, dry_run, &done);
            Ok(())
        }
        RestoreCmd::Db {
            repo,
            db,
            prefix,
            snapshot,
            into_cluster: true,
            dry_run,
            ..
        } => {
            let (r, e, index) = open_snapshot(&rt, &repo, &snapshot)?;
            let client = crate::client(endpoints, timeout)?;
            let mut live = ClientCluster {
                client: &client,
                rt: rt.handle().clone(),
            };
            let changes = restore::db_into_cluster(&r, &index, &e.snapshot, &db, prefix.as_bytes(), &mut live, dry_run)
                .map_err(fail)?;
            print_db_restore(output, &source_of(&e), &db, &prefix, dry_run, &changes);
            Ok(())
        }
        RestoreCmd::Site {
            repo,
            site,
            path,
            snapshot,
            to,
            ..
        } => {
            let to = to.ok_or_else(|| Failure::from("give --to DIR or --into-cluster"))?;
            let (r, e, index) = open_snapshot(&rt, &repo, &snapshot)?;
            let files = read::site_files(&r, &index, &e.snapshot, &site, &path).map_err(fail)?;
            if files.is_empty() {
                return Err(format!("snapshot {} has nothing at {site}/{path}", e.short_id()).into());
            }
            let total: u64 = files.iter().map(|f| f.record.size).sum();
            let pb = bar(output, total);
            let stats = read::restore_files(&r, &index, &files, &to, &|n| pb.inc(n)).map_err(fail)?;
            pb.finish_and_clear();
            let secs = started.elapsed().as_secs_f64();
            emit(
                output,
                json!({"snapshot_id": hex_id(&e.id), "site": site, "path": path, "to": to, "files": stats.files, "bytes": stats.bytes, "duration_ms": (secs * 1000.0) as u64}),
                || {
                    format!(
                        "restored {} file(s), {} of site {site} from snapshot {} into {} in {secs:.1} s ({:.1} MB/s)",
                        stats.files,
                        mb(stats.bytes),
                        e.short_id(),
                        to.display(),
                        stats.bytes as f64 / 1e6 / secs.max(1e-3)
                    )
                },
            );
            Ok(())
        }
        RestoreCmd::Db {
            repo,
            db,
            prefix,
            snapshot,
            to,
            ..
        } => {
            let to = to.ok_or_else(|| Failure::from("give --to FILE or --into-cluster"))?;
            let (r, e, index) = open_snapshot(&rt, &repo, &snapshot)?;
            let stdout = to.as_os_str() == "-";
            let tmp = to.with_extension("sen-restore-tmp");
            let mut w: Box<dyn Write> = if stdout {
                Box::new(std::io::BufWriter::new(std::io::stdout()))
            } else {
                Box::new(std::io::BufWriter::new(
                    std::fs::File::create(&tmp).map_err(|e| format!("create {}: {e}", tmp.display()))?,
                ))
            };
            let n = read::db_records(&r, &index, &e.snapshot, &db, prefix.as_bytes(), &mut |k, rec| {
                let line = serde_json::to_string(&read::DbRecord::new(&db, k, &rec))
                    .map_err(|e| RepoError::Usage(e.to_string()))?;
                writeln!(w, "{line}").map_err(|e| RepoError::Usage(format!("write {}: {e}", to.display())))
            })
            .map_err(fail)?;
            w.flush().map_err(|e| format!("write {}: {e}", to.display()))?;
            drop(w);
            if !stdout {
                std::fs::rename(&tmp, &to).map_err(|e| format!("rename into {}: {e}", to.display()))?;
                emit(
                    output,
                    json!({"snapshot_id": hex_id(&e.id), "db": db, "prefix": prefix, "to": to, "records": n}),
                    || {
                        format!(
                            "restored {n} record(s) of database {db} from snapshot {} into {}",
                            e.short_id(),
                            to.display()
                        )
                    },
                );
            }
            Ok(())
        }
        RestoreCmd::Cluster {
            repo,
            snapshot,
            at,
            index: to_index,
            data_dir,
            id,
            listen,
            advertise,
        } => {
            let target = match (&at, to_index) {
                (_, Some(i)) => Some(archive::Target::Index(i)),
                (Some(a), None) => Some(at_target(a)?),
                (None, None) => None,
            };
            let (r, e, index, replay, stop_at_ms) = match target {
                None => {
                    let (r, e, index) = open_snapshot(&rt, &repo, &snapshot)?;
                    let at = e.snapshot.time_ms;
                    (r, e, index, Vec::new(), at)
                }
                Some(t) => {
                    let r = open(&rt, &repo)?;
                    let plan = archive::plan(&r, t).map_err(fail)?;
                    let index = r.load_index().map_err(fail)?;
                    let (_, _, at) = plan.stops_at();
                    let replay = replay_entries(&r, &index, plan.entries)?;
                    (r, plan.snapshot, index, replay, at)
                }
            };
            let replaying = !replay.is_empty() || target.is_some();
            let addr = advertise.unwrap_or_else(|| listen.clone());
            // An existing, non-empty directory is refused here, before
            // anything is written (and never removed below).
            let mut sink = DataDirSink::create(&data_dir, id, &addr)
                .map_err(|e| Failure::from(format!("restore into {}: {e}", data_dir.display())))?
                .with_replay(replay);
            let pb = bar(output, e.snapshot.stats.bytes_total);
            let result = restore::cluster(&r, &index, &e.snapshot, &mut sink, &|n| pb.inc(n));
            let replayed = sink.replayed().cloned();
            drop(sink);
            pb.finish_and_clear();
            let (cluster_id, digest, bytes) = match result {
                Ok(x) => (x.cluster_id, x.digest, x.bytes),
                Err(err) => {
                    // Leave nothing half-built behind that could be started.
                    let _ = std::fs::remove_dir_all(&data_dir);
                    return Err(fail(err));
                }
            };
            let secs = started.elapsed().as_secs_f64();
            if replaying {
                let (stop_index, stop_term, final_digest, replayed_entries) = match &replayed {
                    Some(p) => (p.index, p.term, p.digest.clone(), p.entries),
                    None => (e.snapshot.raft_index, e.snapshot.raft_term, digest.clone(), 0),
                };
                emit(
                    output,
                    json!({
                        "snapshot_id": hex_id(&e.id),
                        "snapshot_raft_index": e.snapshot.raft_index,
                        "cluster_id": cluster_id,
                        "raft_index": stop_index,
                        "raft_term": stop_term,
                        "committed_at_ms": stop_at_ms,
                        "replayed_entries": replayed_entries,
                        "state_digest": final_digest,
                        "data_dir": data_dir,
                        "node_id": id,
                        "duration_ms": (secs * 1000.0) as u64,
                    }),
                    || {
                        format!(
                            "restored snapshot {} (raft index {}) and replayed {replayed_entries} archived entries: stopped at index {stop_index}, term {stop_term}, committed {}
into {} in {secs:.1} s
start it with: sen server --id {id} --data-dir {} --listen {listen}{}",
                            e.short_id(),
                            e.snapshot.raft_index,
                            when(stop_at_ms),
                            data_dir.display(),
                            data_dir.display(),
                            if addr != listen { format!(" --advertise {addr}") } else { String::new() }
                        )
                    },
                );
                return Ok(());
            }
            emit(
                output,
                json!({
                    "snapshot_id": hex_id(&e.id),
                    "cluster_id": cluster_id,
                    "raft_index": e.snapshot.raft_index,
                    "state_digest": digest,
                    "data_dir": data_dir,
                    "node_id": id,
                    "bytes": bytes,
                    "duration_ms": (secs * 1000.0) as u64,
                }),
                || {
                    format!(
                        "restored snapshot {} (cluster {}, raft index {}) into {} in {secs:.1} s ({:.1} MB/s); state digest verified\nstart it with: sen server --id {id} --data-dir {} --listen {listen}{}\nthen add nodes with `sen cluster add-node`",
                        e.short_id(),
                        cluster_id,
                        e.snapshot.raft_index,
                        data_dir.display(),
                        bytes as f64 / 1e6 / secs.max(1e-3),
                        data_dir.display(),
                        if addr != listen {
                            format!(" --advertise {addr}")
                        } else {
                            String::new()
                        }
                    )
                },
            );
            Ok(())
        }
    }
}

/// What a site or database restore came from: its JSON fields and how
/// the text names it.
struct Source {
    json: serde_json::Value,
    name: String,
}

fn source_of(e: &SnapshotEntry) -> Source {
    Source {
        json: json!({"snapshot_id": hex_id(&e.id)}),
        name: format!("snapshot {}", e.short_id()),
    }
}

fn with_source(src: &Source, mut j: serde_json::Value) -> serde_json::Value {
    if let (Some(o), Some(extra)) = (j.as_object_mut(), src.json.as_object()) {
        for (k, v) in extra {
            o.insert(k.clone(), v.clone());
        }
    }
    j
}

fn print_site_restore(output: Output, src: &Source, site: &str, path: &str, dry_run: bool, done: &SiteRestore) {
    let changes = &done.changes;
    emit(
        output,
        with_source(
            src,
            json!({"site": site, "path": path, "dry_run": dry_run, "deployment": done.deployment,
               "changes": changes.iter().map(|(k, p)| json!({"change": k, "path": p})).collect::<Vec<_>>()}),
        ),
        || {
            let mut t = String::new();
            for (k, p) in changes {
                t.push_str(&format!("{:<8} {p}\n", format!("{k:?}").to_lowercase()));
            }
            t.push_str(&match done.deployment {
                _ if changes.is_empty() => {
                    format!("site {site} already matches {} under {path:?}: nothing to do", src.name)
                }
                None => format!("dry run: {} change(s) to site {site} from {}", changes.len(), src.name),
                Some(d) => format!(
                    "restored {} change(s) to site {site} from {} as deployment {d}",
                    changes.len(),
                    src.name
                ),
            });
            t
        },
    );
}

fn print_db_restore(
    output: Output,
    src: &Source,
    db: &str,
    prefix: &str,
    dry_run: bool,
    changes: &[(DbChange, Vec<u8>)],
) {
    emit(
        output,
        with_source(
            src,
            json!({"db": db, "prefix": prefix, "dry_run": dry_run,
               "changes": changes.iter().map(|(c, k)| json!({"change": c, "key": crate::output::json_bytes(k)})).collect::<Vec<_>>()}),
        ),
        || {
            let mut t = String::new();
            for (c, k) in changes {
                t.push_str(&format!(
                    "{:<7} {}\n",
                    format!("{c:?}").to_lowercase(),
                    crate::output::show(k)
                ));
            }
            t.push_str(&format!(
                "{} {} change(s) to database {db} from {}",
                if dry_run { "dry run:" } else { "applied" },
                changes.len(),
                src.name
            ));
            t
        },
    );
}

/// `2026-12-03T14:02:00+07:00` (or `…Z`) as ms since the epoch.
pub fn parse_time(s: &str) -> Result<u64, Failure> {
    let t: jiff::Timestamp = s.parse().map_err(|e| {
        Failure::from(format!(
            "--at {s:?}: give `latest` or a time with its offset, e.g. 2026-12-03T14:02:00+07:00 ({e})"
        ))
    })?;
    u64::try_from(t.as_millisecond()).map_err(|_| Failure::from(format!("--at {s:?} is before 1970")))
}

/// `--at latest` or `--at TIME`.
fn at_target(at: &str) -> Result<archive::Target, Failure> {
    Ok(if at == "latest" {
        archive::Target::Latest
    } else {
        archive::Target::Time(parse_time(at)?)
    })
}

/// The commit time of archived entry `index`, if the archive holds it.
/// The archived entries of a plan, in the log's encoding, with the data
/// of the content chunks they hold by reference fetched from the
/// repository.
fn replay_entries(
    r: &sen_backup::Repo,
    index: &sen_backup::repo::Index,
    entries: Vec<archive::ArchivedEntry>,
) -> Result<Vec<Vec<u8>>, Failure> {
    let mut fetch = |ids: Vec<[u8; 32]>| -> Result<Vec<sen_content::StoredChunk>, RepoError> {
        r.fetch_blobs(index, ids).map(|b| restore::cluster_chunk(b?)).collect()
    };
    sen_store::archive::fill_chunks(entries.into_iter().map(|e| e.entry).collect(), &mut fetch).map_err(fail)
}

/// One record of a replicated table, as a backup's readers take it.
type RawRecord = Result<(Vec<u8>, Vec<u8>), RepoError>;

/// The cluster's state at a point in time, rebuilt in a scratch data
/// directory (removed when this is dropped).
struct PastState {
    dir: PathBuf,
    state: Option<sen_store::StateDb>,
    source: Source,
}

impl Drop for PastState {
    fn drop(&mut self) {
        self.state.take();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl PastState {
    fn state(&self) -> &sen_store::StateDb {
        self.state.as_ref().expect("open until dropped")
    }

    /// Raw records of one replicated table.
    fn table(&self, name: &str) -> Result<Vec<RawRecord>, Failure> {
        let mut out = Vec::new();
        self.state()
            .with_read_view(|v| {
                v.scan::<sen_store::StoreError>(name, &mut |k, val| {
                    out.push(Ok((k.to_vec(), val.to_vec())));
                    Ok(())
                })
            })
            .map_err(|e| format!("reading the rebuilt state: {e}"))?;
        Ok(out)
    }
}

/// Rebuild the state at `at` from the repository's snapshot and archive.
fn rebuild(rt: &tokio::runtime::Runtime, repo: &RepoArgs, at: &str) -> Result<PastState, Failure> {
    let r = open(rt, repo)?;
    let plan = archive::plan(&r, at_target(at)?).map_err(fail)?;
    let index = r.load_index().map_err(fail)?;
    let (stop_index, _, stop_at) = plan.stops_at();
    let dir = std::env::temp_dir().join(format!("sen-pitr-{}-{}", std::process::id(), sen_core::now_ms()));
    let replay = replay_entries(&r, &index, plan.entries)?;
    let mut sink = DataDirSink::create(&dir, 1, "127.0.0.1:1")
        .map_err(|e| Failure::from(format!("scratch directory {}: {e}", dir.display())))?
        .with_replay(replay);
    let mut past = PastState {
        dir: dir.clone(),
        state: None,
        source: Source {
            json: json!({"snapshot_id": hex_id(&plan.snapshot.id), "raft_index": stop_index, "committed_at_ms": stop_at}),
            name: format!("the state at index {stop_index} (committed {})", when(stop_at)),
        },
    };
    restore::cluster(&r, &index, &plan.snapshot.snapshot, &mut sink, &|_| {}).map_err(fail)?;
    drop(sink);
    past.state = Some(
        sen_store::StateDb::open(&dir, &Default::default())
            .map_err(|e| format!("opening the rebuilt state in {}: {e}", dir.display()))?,
    );
    Ok(past)
}

/// `restore site|db … --at`: from the state rebuilt to that point.
/// `None` when the command is not a point-in-time one.
fn point_in_time(
    rt: &tokio::runtime::Runtime,
    cmd: &RestoreCmd,
    endpoints: &[String],
    output: Output,
    timeout: Duration,
) -> Result<Option<()>, Failure> {
    match cmd {
        RestoreCmd::Site {
            repo,
            site,
            path,
            at: Some(at),
            to,
            into_cluster,
            dry_run,
            ..
        } => {
            let past = rebuild(rt, repo, at)?;
            let files = read::site_files_in(past.table(sen_raft::schema::tables::FILES)?, site, path).map_err(fail)?;
            let mut chunks = |ids: Vec<[u8; 32]>| -> Result<Vec<sen_content::StoredChunk>, RepoError> {
                past.state().with_read_view(|v| {
                    ids.iter()
                        .map(|id| {
                            v.chunk(id)
                                .map_err(|e| RepoError::Source(e.to_string()))?
                                .ok_or_else(|| {
                                    RepoError::Corrupt(format!(
                                        "chunk {} is missing from the rebuilt state",
                                        hex_id(id)
                                    ))
                                })
                        })
                        .collect()
                })
            };
            if *into_cluster {
                let client = crate::client(endpoints, timeout)?;
                let mut live = ClientCluster {
                    client: &client,
                    rt: rt.handle().clone(),
                };
                let message = format!("restore {path:?} from {}", past.source.name);
                let done =
                    restore::site_into_cluster_from(files, &mut chunks, site, path, &mut live, *dry_run, &message)
                        .map_err(fail)?;
                print_site_restore(output, &past.source, site, path, *dry_run, &done);
                return Ok(Some(()));
            }
            let to = to
                .as_ref()
                .ok_or_else(|| Failure::from("give --to DIR or --into-cluster"))?;
            if files.is_empty() {
                return Err(format!("{} has nothing at {site}/{path}", past.source.name).into());
            }
            let (mut n, mut bytes) = (0u64, 0u64);
            for f in &files {
                let target = to.join(&f.path);
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| format!("create {}: {e}", parent.display()))?;
                }
                let ids: Vec<[u8; 32]> = f.record.chunks.iter().map(|c| c.id.0).collect();
                let mut data = Vec::with_capacity(f.record.size as usize);
                for c in chunks(ids).map_err(fail)? {
                    data.extend(c.decode().map_err(|e| format!("chunk of {}: {e}", f.path))?);
                }
                if blake3::hash(&data).as_bytes() != &f.record.blake3 {
                    return Err(format!("{}: the rebuilt file does not match its recorded hash", f.path).into());
                }
                let tmp = target.with_extension("sen-restore-tmp");
                std::fs::write(&tmp, &data).map_err(|e| format!("write {}: {e}", tmp.display()))?;
                std::fs::rename(&tmp, &target).map_err(|e| format!("rename into {}: {e}", target.display()))?;
                n += 1;
                bytes += data.len() as u64;
            }
            emit(
                output,
                with_source(
                    &past.source,
                    json!({"site": site, "path": path, "to": to, "files": n, "bytes": bytes}),
                ),
                || {
                    format!(
                        "restored {n} file(s), {} of site {site} from {} into {}",
                        mb(bytes),
                        past.source.name,
                        to.display()
                    )
                },
            );
            Ok(Some(()))
        }
        RestoreCmd::Db {
            repo,
            db,
            prefix,
            at: Some(at),
            to,
            into_cluster,
            dry_run,
            ..
        } => {
            let past = rebuild(rt, repo, at)?;
            let mut wanted = std::collections::BTreeMap::new();
            let mut lines = Vec::new();
            read::db_records_in(
                past.table(sen_raft::schema::tables::KV)?,
                db,
                prefix.as_bytes(),
                &mut |k, rec| {
                    lines.push(
                        serde_json::to_string(&read::DbRecord::new(db, k, &rec))
                            .map_err(|e| RepoError::Usage(e.to_string()))?,
                    );
                    wanted.insert(k.to_vec(), rec.value);
                    Ok(())
                },
            )
            .map_err(fail)?;
            if *into_cluster {
                let client = crate::client(endpoints, timeout)?;
                let mut live = ClientCluster {
                    client: &client,
                    rt: rt.handle().clone(),
                };
                let changes =
                    restore::db_into_cluster_from(wanted, db, prefix.as_bytes(), &mut live, *dry_run).map_err(fail)?;
                print_db_restore(output, &past.source, db, prefix, *dry_run, &changes);
                return Ok(Some(()));
            }
            let to = to
                .as_ref()
                .ok_or_else(|| Failure::from("give --to FILE or --into-cluster"))?;
            let mut text = lines.join("\n");
            if !text.is_empty() {
                text.push('\n');
            }
            if to.as_os_str() == "-" {
                print!("{text}");
            } else {
                let tmp = to.with_extension("sen-restore-tmp");
                std::fs::write(&tmp, text).map_err(|e| format!("write {}: {e}", tmp.display()))?;
                std::fs::rename(&tmp, to).map_err(|e| format!("rename into {}: {e}", to.display()))?;
                emit(
                    output,
                    with_source(
                        &past.source,
                        json!({"db": db, "prefix": prefix, "to": to, "records": lines.len()}),
                    ),
                    || {
                        format!(
                            "restored {} record(s) of database {db} from {} into {}",
                            lines.len(),
                            past.source.name,
                            to.display()
                        )
                    },
                );
            }
            Ok(Some(()))
        }
        _ => Ok(None),
    }
}
