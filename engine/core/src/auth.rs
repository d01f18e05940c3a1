//! Who may do what: principals, roles scoped to sites and databases, and
//! the one permission check (`Grants::allows`). Pure: the node resolves
//! the principal (certificate or token) and looks up its grants; this
//! module decides.
//!
//! Roles follow the regulation's delegation (docs/security.md):
//!
//! | role | who | may |
//! |---|---|---|
//! | `cluster-admin` | the Department of Information and Communications | everything |
//! | `site-admin` | the Provincial Office, component-site admins | write and read their sites and databases |
//! | `operator` | staff on duty | run the cluster: status, switchover, drain, drills, backups, incidents, reports |
//! | `reader` | readers of private sites, applications | read their sites and databases |
//! | `auditor` | the Editorial Board | read-only: status, incidents, drills, backups, reports, the audit log |

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::NodeId;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Principal {
    /// A node of this cluster, proven by a node certificate of the
    /// cluster CA (mutual TLS).
    Node(NodeId),
    /// A user, by client certificate (its common name) or token.
    User { name: String, via: Credential },
    /// The node runs without TLS (`--insecure`, or plaintext on loopback):
    /// nothing is authenticated and every caller acts as cluster admin.
    Insecure,
    /// No credentials.
    Anonymous,
}

/// How a user proved who they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Credential {
    Certificate,
    /// A bearer token, by its id (never its secret).
    Token {
        id: String,
    },
}

impl Principal {
    /// The user name, if a user.
    pub fn user(&self) -> Option<&str> {
        match self {
            Principal::User { name, .. } => Some(name),
            _ => None,
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Node(id) => write!(f, "node {id}"),
            Principal::User {
                name,
                via: Credential::Certificate,
            } => write!(f, "user {name} (certificate)"),
            Principal::User {
                name,
                via: Credential::Token { id },
            } => write!(f, "user {name} (token {id})"),
            Principal::Insecure => f.write_str("anyone (insecure mode)"),
            Principal::Anonymous => f.write_str("anonymous"),
        }
    }
}

/// A role (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    ClusterAdmin,
    SiteAdmin,
    Operator,
    Reader,
    Auditor,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::ClusterAdmin,
        Role::SiteAdmin,
        Role::Operator,
        Role::Reader,
        Role::Auditor,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Role::ClusterAdmin => "cluster-admin",
            Role::SiteAdmin => "site-admin",
            Role::Operator => "operator",
            Role::Reader => "reader",
            Role::Auditor => "auditor",
        }
    }

    /// Whether the role is granted on named sites and databases (`--scope`)
    /// rather than on the whole cluster.
    pub fn is_scoped(self) -> bool {
        matches!(self, Role::SiteAdmin | Role::Reader)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Role::ALL.into_iter().find(|r| r.name() == s).ok_or_else(|| {
            format!(
                "unknown role {s:?}: use one of {}",
                Role::ALL.map(|r| r.name()).join(", ")
            )
        })
    }
}

/// A set of sites or databases a grant covers: one name, or every name
/// with a prefix (`xa-*`), or every one (`*`). Stored as its text form
/// (`site:xa-*`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Scope {
    Site(Pattern),
    Db(Pattern),
}

/// A name or a `prefix*` pattern.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Pattern(pub String);

impl Pattern {
    pub fn matches(&self, name: &str) -> bool {
        match self.0.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => self.0 == name,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Site(p) => write!(f, "site:{}", p.0),
            Scope::Db(p) => write!(f, "db:{}", p.0),
        }
    }
}

impl From<Scope> for String {
    fn from(s: Scope) -> String {
        s.to_string()
    }
}

impl TryFrom<String> for Scope {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl FromStr for Scope {
    type Err = String;
    /// `site:NAME`, `db:NAME`, with an optional trailing `*`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (kind, pat) = s
            .split_once(':')
            .ok_or_else(|| format!("scope {s:?}: use site:NAME or db:NAME (NAME may end with *)"))?;
        let body = pat.strip_suffix('*').unwrap_or(pat);
        if body.contains('*') || body.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("scope {s:?}: a * may only end the name"));
        }
        if pat.is_empty() {
            return Err(format!("scope {s:?}: give a name (or * for all)"));
        }
        let p = Pattern(pat.to_owned());
        match kind {
            "site" => Ok(Scope::Site(p)),
            "db" => Ok(Scope::Db(p)),
            other => Err(format!("scope {s:?}: kind {other:?} is neither site nor db")),
        }
    }
}

/// One role granted to a user, on the whole cluster or on scopes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub role: Role,
    /// Empty for cluster-wide roles.
    pub scopes: Vec<Scope>,
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.scopes.is_empty() {
            write!(f, "{}", self.role)
        } else {
            let s: Vec<String> = self.scopes.iter().map(|s| s.to_string()).collect();
            write!(f, "{} on {}", self.role, s.join(","))
        }
    }
}

/// What a request does, and to what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<'a> {
    /// Any authenticated principal (status, who-am-i, list calls that are
    /// filtered per caller).
    Authenticated,
    /// Read cluster state: incidents, drills, backup lists, reports.
    ClusterRead,
    /// Run the cluster: switchover, drain, drills, backups, incident notes.
    Operate,
    /// Read the audit log.
    AuditRead,
    /// Membership, recovery, users, roles and tokens.
    Administer,
    SiteRead(&'a str),
    SiteWrite(&'a str),
    /// Upload content chunks (not yet part of any site): needs write
    /// access to some site.
    SiteWriteAny,
    DbRead(&'a str),
    DbWrite(&'a str),
}

impl fmt::Display for Action<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Authenticated => f.write_str("any authenticated user"),
            Action::ClusterRead => f.write_str("auditor, operator or cluster-admin"),
            Action::Operate => f.write_str("operator or cluster-admin"),
            Action::AuditRead => f.write_str("auditor or cluster-admin"),
            Action::Administer => f.write_str("cluster-admin"),
            Action::SiteRead(s) => write!(f, "reader or site-admin on site:{s}"),
            Action::SiteWrite(s) => write!(f, "site-admin on site:{s}"),
            Action::SiteWriteAny => f.write_str("site-admin on some site"),
            Action::DbRead(d) => write!(f, "reader or site-admin on db:{d}"),
            Action::DbWrite(d) => write!(f, "site-admin on db:{d}"),
        }
    }
}

/// Resources drills write as probes: the operator (who runs drills) may
/// read and write them.
pub const DRILL_PROBE: &str = "drill-probe";

/// A user's grants.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grants(pub Vec<Grant>);

impl Grants {
    fn has(&self, role: Role) -> bool {
        self.0.iter().any(|g| g.role == role)
    }

    fn scoped(&self, roles: &[Role], f: impl Fn(&Scope) -> bool) -> bool {
        self.0
            .iter()
            .filter(|g| roles.contains(&g.role))
            .any(|g| g.scopes.iter().any(&f))
    }

    /// Whether these grants allow `action`.
    pub fn allows(&self, action: &Action<'_>) -> bool {
        if self.has(Role::ClusterAdmin) {
            return true;
        }
        let operator = self.has(Role::Operator);
        let auditor = self.has(Role::Auditor);
        let site = |name: &str, roles: &[Role]| {
            self.scoped(roles, |s| matches!(s, Scope::Site(p) if p.matches(name))) || (operator && name == DRILL_PROBE)
        };
        let db = |name: &str, roles: &[Role]| {
            self.scoped(roles, |s| matches!(s, Scope::Db(p) if p.matches(name))) || (operator && name == DRILL_PROBE)
        };
        match action {
            Action::Authenticated => true,
            Action::ClusterRead => operator || auditor,
            Action::Operate => operator,
            Action::AuditRead => auditor,
            Action::Administer => false,
            Action::SiteRead(s) => site(s, &[Role::SiteAdmin, Role::Reader]),
            Action::SiteWrite(s) => site(s, &[Role::SiteAdmin]),
            Action::SiteWriteAny => operator || self.scoped(&[Role::SiteAdmin], |s| matches!(s, Scope::Site(_))),
            Action::DbRead(d) => db(d, &[Role::SiteAdmin, Role::Reader]),
            Action::DbWrite(d) => db(d, &[Role::SiteAdmin]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(role: Role, scopes: &[&str]) -> Grant {
        Grant {
            role,
            scopes: scopes.iter().map(|s| s.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn scopes_parse_and_match() {
        let s: Scope = "site:xa-*".parse().unwrap();
        assert_eq!(s.to_string(), "site:xa-*");
        let Scope::Site(p) = &s else { panic!() };
        assert!(p.matches("xa-my-hiep") && p.matches("xa-") && !p.matches("portal"));
        assert!("db:cong-bao".parse::<Scope>().is_ok());
        for bad in ["cong-bao", "file:x", "site:", "site:a*b", "db:a b"] {
            assert!(bad.parse::<Scope>().is_err(), "{bad}");
        }
        assert!("site:*".parse::<Scope>().is_ok());
    }

    #[test]
    fn roles_allow_what_the_regulation_delegates() {
        let admin = Grants(vec![g(Role::ClusterAdmin, &[])]);
        let office = Grants(vec![g(
            Role::SiteAdmin,
            &["site:lich-tuan", "db:cong-bao", "site:xa-*"],
        )]);
        let duty = Grants(vec![g(Role::Operator, &[])]);
        let board = Grants(vec![g(Role::Auditor, &[])]);
        let reader = Grants(vec![g(Role::Reader, &["site:noi-bo"])]);
        let none = Grants::default();
        for a in [
            Action::Administer,
            Action::AuditRead,
            Action::SiteWrite("portal"),
            Action::DbWrite("x"),
        ] {
            assert!(admin.allows(&a), "{a}");
        }
        // The Provincial Office: its sites and databases, nothing else.
        assert!(office.allows(&Action::SiteWrite("lich-tuan")));
        assert!(office.allows(&Action::SiteWrite("xa-my-hiep")));
        assert!(office.allows(&Action::SiteRead("xa-my-hiep")));
        assert!(office.allows(&Action::DbWrite("cong-bao")));
        assert!(office.allows(&Action::SiteWriteAny));
        assert!(!office.allows(&Action::SiteWrite("portal")));
        assert!(
            !office.allows(&Action::DbWrite("lich-tuan")),
            "a site scope is not a db scope"
        );
        assert!(!office.allows(&Action::Operate));
        assert!(!office.allows(&Action::ClusterRead));
        // Staff on duty: run the cluster and drills, no content.
        assert!(duty.allows(&Action::Operate) && duty.allows(&Action::ClusterRead));
        assert!(!duty.allows(&Action::SiteWrite("portal")) && !duty.allows(&Action::DbWrite("cong-bao")));
        assert!(duty.allows(&Action::DbWrite(DRILL_PROBE)) && duty.allows(&Action::SiteWrite(DRILL_PROBE)));
        assert!(!duty.allows(&Action::Administer) && !duty.allows(&Action::AuditRead));
        // The Editorial Board: read-only.
        assert!(board.allows(&Action::ClusterRead) && board.allows(&Action::AuditRead));
        assert!(!board.allows(&Action::Operate) && !board.allows(&Action::DbRead("cong-bao")));
        // A reader.
        assert!(reader.allows(&Action::SiteRead("noi-bo")));
        assert!(!reader.allows(&Action::SiteWrite("noi-bo")) && !reader.allows(&Action::SiteWriteAny));
        // Nobody: only what any authenticated user may do.
        assert!(none.allows(&Action::Authenticated));
        assert!(!none.allows(&Action::ClusterRead) && !none.allows(&Action::SiteRead("portal")));
    }

    #[test]
    fn names_round_trip() {
        for r in Role::ALL {
            assert_eq!(r.name().parse::<Role>().unwrap(), r);
        }
        assert!("root".parse::<Role>().unwrap_err().contains("cluster-admin"));
        assert_eq!(
            Grant {
                role: Role::SiteAdmin,
                scopes: vec!["site:a".parse().unwrap(), "db:b*".parse().unwrap()]
            }
            .to_string(),
            "site-admin on site:a,db:b*"
        );
    }
}
