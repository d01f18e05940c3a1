//! Users, grants and tokens in the control plane (the `sen.v1.Access`
//! service's logic, written against `ControlPlane` and unit-tested on an
//! in-memory state machine). Every change is one compare-and-set
//! transaction, so two administrators editing the same user never lose
//! each other's change.

use std::time::Duration;

use sen_core::auth::{Grant, Role, Scope};
use sen_raft::schema::system::{
    self, AUTH_KEY_KEY, AuthKey, SYSTEM_DB, SystemRecord, TOKEN_PREFIX, TokenRecord, USER_PREFIX, UserRecord,
};
use sen_raft::{Compare, CompareTarget, Op, TxnOp};
use sen_security::TokenSecret;

use crate::error::ApiError;
use crate::system::{self as cp, ControlPlane, cmp, txn};

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(e.to_string())
}

fn json<T: SystemRecord>(r: &T) -> Result<Vec<u8>, ApiError> {
    r.to_json().map_err(internal)
}

fn put(key: Vec<u8>, value: Vec<u8>) -> TxnOp {
    TxnOp::Put { key, value }
}

fn check_name(name: &str) -> Result<(), ApiError> {
    sen_security::identity::valid_user_name(name).map_err(ApiError::InvalidArgument)
}

/// Create the cluster's token key, the first cluster-admin `admin` and a
/// token for it — once: `None` if the cluster already has a token key.
pub async fn bootstrap(
    plane: &impl ControlPlane,
    admin: &str,
    now_ms: u64,
    budget: Duration,
) -> Result<Option<TokenSecret>, ApiError> {
    check_name(admin)?;
    let key: [u8; 32] = rand::random();
    let user = UserRecord {
        version: UserRecord::VERSION,
        name: admin.to_owned(),
        grants: vec![Grant {
            role: Role::ClusterAdmin,
            scopes: vec![],
        }],
        created_at_ms: now_ms,
        created_by: "cluster init".into(),
        updated_at_ms: now_ms,
    };
    let token = TokenSecret::generate();
    let rec = TokenRecord {
        version: TokenRecord::VERSION,
        id: token.id.clone(),
        user: admin.to_owned(),
        name: "cluster init".into(),
        hash: hex::encode(token.hash(&key)),
        created_at_ms: now_ms,
        created_by: "cluster init".into(),
        expires_at_ms: None,
        revoked_at_ms: None,
    };
    let ak = AuthKey {
        version: AuthKey::VERSION,
        key: hex::encode(key),
    };
    let done = txn(
        plane,
        vec![cmp(AUTH_KEY_KEY, CompareTarget::Exists(false))],
        vec![
            put(AUTH_KEY_KEY.to_vec(), json(&ak)?),
            put(system::user_key(admin), json(&user)?),
            put(system::token_key(&rec.id), json(&rec)?),
        ],
        budget,
    )
    .await?;
    Ok(done.then_some(token))
}

pub fn get_user(plane: &impl ControlPlane, name: &str) -> Result<(UserRecord, u64), ApiError> {
    cp::read::<UserRecord>(plane, &system::user_key(name))?
        .ok_or_else(|| ApiError::NotFound(format!("no user {name:?}; see `sen user list`")))
}

pub fn list_users(plane: &impl ControlPlane) -> Result<Vec<UserRecord>, ApiError> {
    plane
        .scan_raw(USER_PREFIX.as_bytes())?
        .iter()
        .map(|(_, v)| UserRecord::from_json(v).map_err(internal))
        .collect()
}

pub async fn add_user(
    plane: &impl ControlPlane,
    name: &str,
    by: &str,
    now_ms: u64,
    budget: Duration,
) -> Result<UserRecord, ApiError> {
    check_name(name)?;
    let user = UserRecord {
        version: UserRecord::VERSION,
        name: name.to_owned(),
        grants: vec![],
        created_at_ms: now_ms,
        created_by: by.to_owned(),
        updated_at_ms: now_ms,
    };
    let key = system::user_key(name);
    if !txn(
        plane,
        vec![cmp(&key, CompareTarget::Exists(false))],
        vec![put(key.clone(), json(&user)?)],
        budget,
    )
    .await?
    {
        return Err(ApiError::FailedPrecondition(format!("user {name:?} already exists")));
    }
    Ok(user)
}

fn admins(users: &[UserRecord]) -> Vec<&str> {
    users
        .iter()
        .filter(|u| u.grants.iter().any(|g| g.role == Role::ClusterAdmin))
        .map(|u| u.name.as_str())
        .collect()
}

/// Refuse to take cluster-admin away from `name` if it is the last one;
/// otherwise the compares that keep it so: every other admin unchanged
/// until the change applies. Two removals racing (or a leader elected a
/// moment ago that has not applied the other yet) then cannot both pass:
/// the second one's compare fails and its retry sees the truth.
fn others_stay_admin(plane: &impl ControlPlane, name: &str) -> Result<Vec<Compare>, ApiError> {
    let users = list_users(plane)?;
    let admins = admins(&users);
    if admins == [name] {
        return Err(ApiError::FailedPrecondition(format!(
            "{name} is the last cluster-admin: grant cluster-admin to another user first"
        )));
    }
    admins
        .into_iter()
        .filter(|a| *a != name)
        .map(|a| {
            let (_, rev) = get_user(plane, a)?;
            Ok(cmp(&system::user_key(a), CompareTarget::ModRevision(rev)))
        })
        .collect()
}

/// Remove a user and revoke their tokens. The last cluster-admin cannot be
/// removed (nobody could administer the cluster afterwards).
pub async fn remove_user(
    plane: &impl ControlPlane,
    name: &str,
    now_ms: u64,
    budget: Duration,
) -> Result<u32, ApiError> {
    let (u, rev) = get_user(plane, name)?;
    let mut compares = vec![cmp(&system::user_key(name), CompareTarget::ModRevision(rev))];
    if u.grants.iter().any(|g| g.role == Role::ClusterAdmin) {
        compares.extend(others_stay_admin(plane, name)?);
    }
    let mut ops = vec![TxnOp::Delete {
        key: system::user_key(name),
    }];
    let mut revoked = 0;
    for mut t in list_tokens(plane, name)? {
        if t.revoked_at_ms.is_none() {
            t.revoked_at_ms = Some(now_ms);
            ops.push(put(system::token_key(&t.id), json(&t)?));
            revoked += 1;
        }
    }
    if !txn(plane, compares, ops, budget).await? {
        return Err(ApiError::Unavailable(format!(
            "user {name} (or another cluster-admin) changed meanwhile; retry"
        )));
    }
    Ok(revoked)
}

/// Check a grant's shape: scoped roles need scopes, the others take none.
pub fn make_grant(role: &str, scopes: &[String]) -> Result<Grant, ApiError> {
    let role: Role = role.parse().map_err(ApiError::InvalidArgument)?;
    let scopes: Vec<Scope> = scopes
        .iter()
        .map(|s| s.parse().map_err(ApiError::InvalidArgument))
        .collect::<Result<_, _>>()?;
    match (role.is_scoped(), scopes.is_empty()) {
        (true, true) => Err(ApiError::InvalidArgument(format!(
            "{role} is granted on sites or databases: add --scope site:NAME or db:NAME (NAME may end with *)"
        ))),
        (false, false) => Err(ApiError::InvalidArgument(format!(
            "{role} is a cluster-wide role: it takes no --scope"
        ))),
        _ => Ok(Grant { role, scopes }),
    }
}

async fn update_user(
    plane: &impl ControlPlane,
    name: &str,
    now_ms: u64,
    budget: Duration,
    guard: impl Fn() -> Result<Vec<Compare>, ApiError>,
    change: impl Fn(&mut UserRecord) -> Result<(), ApiError>,
) -> Result<UserRecord, ApiError> {
    for _ in 0..5 {
        let (mut u, rev) = get_user(plane, name)?;
        change(&mut u)?;
        u.updated_at_ms = now_ms;
        let key = system::user_key(name);
        let mut compares = vec![cmp(&key, CompareTarget::ModRevision(rev))];
        compares.extend(guard()?);
        if txn(plane, compares, vec![put(key.clone(), json(&u)?)], budget).await? {
            return Ok(u);
        }
    }
    Err(ApiError::Unavailable(format!("user {name} keeps changing; retry")))
}

/// Grant `grant` to `name` (scopes merge into an existing grant of the role).
pub async fn grant(
    plane: &impl ControlPlane,
    name: &str,
    grant: Grant,
    now_ms: u64,
    budget: Duration,
) -> Result<UserRecord, ApiError> {
    update_user(
        plane,
        name,
        now_ms,
        budget,
        || Ok(Vec::new()),
        |u| {
            match u.grants.iter_mut().find(|g| g.role == grant.role) {
                Some(g) => {
                    for s in &grant.scopes {
                        if !g.scopes.contains(s) {
                            g.scopes.push(s.clone());
                        }
                    }
                    g.scopes.sort();
                }
                None => u.grants.push(grant.clone()),
            }
            u.grants.sort_by_key(|g| g.role);
            Ok(())
        },
    )
    .await
}

/// Revoke `role` from `name` (only `scopes` of it, if given).
pub async fn revoke(
    plane: &impl ControlPlane,
    name: &str,
    role: Role,
    scopes: Vec<Scope>,
    now_ms: u64,
    budget: Duration,
) -> Result<UserRecord, ApiError> {
    let guard = || {
        if role == Role::ClusterAdmin {
            others_stay_admin(plane, name)
        } else {
            Ok(Vec::new())
        }
    };
    guard()?;
    update_user(plane, name, now_ms, budget, guard, |u| {
        let before = u.grants.clone();
        if scopes.is_empty() {
            u.grants.retain(|g| g.role != role);
        } else {
            for g in u.grants.iter_mut().filter(|g| g.role == role) {
                g.scopes.retain(|s| !scopes.contains(s));
            }
            u.grants.retain(|g| !(g.role == role && g.scopes.is_empty()));
        }
        if u.grants == before {
            return Err(ApiError::NotFound(format!(
                "user {} has no such grant of {role}",
                u.name
            )));
        }
        Ok(())
    })
    .await
}

pub fn list_tokens(plane: &impl ControlPlane, user: &str) -> Result<Vec<TokenRecord>, ApiError> {
    let mut out = Vec::new();
    for (_, v) in plane.scan_raw(TOKEN_PREFIX.as_bytes())? {
        let t = TokenRecord::from_json(&v).map_err(internal)?;
        if user.is_empty() || t.user == user {
            out.push(t);
        }
    }
    out.sort_by_key(|t| t.created_at_ms);
    Ok(out)
}

const MIN_TOKEN_LIFE: Duration = Duration::from_secs(1);
const MAX_TOKEN_LIFE: Duration = Duration::from_secs(100 * 366 * 24 * 3600);

/// A new token for `user`. The secret is returned once; only its keyed
/// hash is stored.
pub async fn create_token(
    plane: &impl ControlPlane,
    user: &str,
    name: &str,
    expires_in: Option<Duration>,
    by: &str,
    now_ms: u64,
    budget: Duration,
) -> Result<(TokenSecret, TokenRecord), ApiError> {
    let (_, rev) = get_user(plane, user)?;
    if name.len() > 100 {
        return Err(ApiError::InvalidArgument("a token name is at most 100 bytes".into()));
    }
    if let Some(d) = expires_in
        && !(MIN_TOKEN_LIFE..=MAX_TOKEN_LIFE).contains(&d)
    {
        return Err(ApiError::InvalidArgument(format!(
            "a token expires after 1 s to 100 years, not {d:?} (omit the expiry for a token that never expires)"
        )));
    }
    let (ak, _) = cp::read::<AuthKey>(plane, AUTH_KEY_KEY)?.ok_or_else(|| {
        ApiError::FailedPrecondition("this cluster has no token key: run `sen cluster init` first".into())
    })?;
    let key: [u8; 32] = hex::decode(&ak.key)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| ApiError::Internal("the cluster's token key is damaged".into()))?;
    let token = TokenSecret::generate();
    let rec = TokenRecord {
        version: TokenRecord::VERSION,
        id: token.id.clone(),
        user: user.to_owned(),
        name: name.to_owned(),
        hash: hex::encode(token.hash(&key)),
        created_at_ms: now_ms,
        created_by: by.to_owned(),
        expires_at_ms: expires_in.map(|d| now_ms.saturating_add(d.as_millis() as u64)),
        revoked_at_ms: None,
    };
    let key = system::token_key(&rec.id);
    let ok = txn(
        plane,
        vec![
            cmp(&key, CompareTarget::Exists(false)),
            cmp(&system::user_key(user), CompareTarget::ModRevision(rev)),
        ],
        vec![put(key, json(&rec)?)],
        budget,
    )
    .await?;
    if !ok {
        return Err(ApiError::Unavailable(format!("user {user} changed meanwhile; retry")));
    }
    Ok((token, rec))
}

pub async fn revoke_token(
    plane: &impl ControlPlane,
    id: &str,
    now_ms: u64,
    budget: Duration,
) -> Result<TokenRecord, ApiError> {
    let key = system::token_key(id);
    let (mut t, rev) = cp::read::<TokenRecord>(plane, &key)?
        .ok_or_else(|| ApiError::NotFound(format!("no token {id:?}; see `sen token list`")))?;
    if t.revoked_at_ms.is_none() {
        t.revoked_at_ms = Some(now_ms);
        if !txn(
            plane,
            vec![cmp(&key, CompareTarget::ModRevision(rev))],
            vec![put(key.clone(), json(&t)?)],
            budget,
        )
        .await?
        {
            return Err(ApiError::Unavailable(format!("token {id} changed meanwhile; retry")));
        }
    }
    Ok(t)
}

/// Make a site private (HTTP needs a reader) or public again.
pub async fn set_site_private(
    plane: &impl ControlPlane,
    site: &str,
    private: bool,
    now_ms: u64,
    budget: Duration,
) -> Result<(), ApiError> {
    let key = system::site_private_key(site);
    let op = if private {
        Op::Put {
            db: SYSTEM_DB.into(),
            key,
            value: now_ms.to_string().into_bytes(),
        }
    } else {
        Op::Delete {
            db: SYSTEM_DB.into(),
            key,
        }
    };
    plane.propose(op, budget).await?;
    Ok(())
}

pub fn site_is_private(plane: &impl ControlPlane, site: &str) -> bool {
    // A flag that cannot be read counts as set: fail closed.
    !matches!(plane.get_raw(&system::site_private_key(site)), Ok(None))
}

#[cfg(test)]
mod tests;
