//! A session: one cluster connection, an I/O context of the pool and the
//! image open in it. The device opens one at connect time and, in failover
//! mode, a new one whenever the cluster fenced (blocklisted) the old one:
//! a blocklisted client can do nothing more and must be replaced.

use std::ffi::{CStr, CString};

use super::ffi;

/// What it takes to open a session, kept for opening it again.
#[derive(Debug, Clone)]
pub(super) struct SessionParams {
    pub(super) pool: CString,
    pub(super) image: CString,
    pub(super) client_id: Option<CString>,
    pub(super) conf: Option<CString>,
    /// librados' timeouts, in whole seconds.
    pub(super) timeout_secs: u64,
    /// librbd's write cache; never with `failover`.
    pub(super) cache: bool,
    /// Manual exclusive lock (see [`open`]).
    pub(super) failover: bool,
}

/// Which step of opening a session failed, with its errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OpenError {
    Create(i32),
    Config(i32),
    SetOption(&'static str, i32),
    Connect(i32),
    Pool(i32),
    Image(i32),
}

/// Connects and opens the image; blocks, each step bounded by librados'
/// timeouts.
///
/// With `failover`, librbd never takes or hands over the exclusive lock by
/// itself (a write without the lock fails with `EROFS`, a peer's request
/// for the lock is refused), and breaking another client's lock
/// blocklists that client, so that none of its writes can land after.
pub(super) fn open(params: &SessionParams) -> Result<ffi::Image, OpenError> {
    let mut cluster =
        ffi::Cluster::create(params.client_id.as_deref()).map_err(OpenError::Create)?;
    cluster
        .read_conf(params.conf.as_deref())
        .map_err(OpenError::Config)?;
    let secs = CString::new(params.timeout_secs.to_string()).expect("digits have no NUL");
    let mut options: Vec<(&'static CStr, &CStr)> = vec![
        (c"client_mount_timeout", &secs),
        (c"rados_mon_op_timeout", &secs),
        (c"rados_osd_op_timeout", &secs),
        (
            c"rbd_cache",
            if params.cache && !params.failover {
                c"true"
            } else {
                c"false"
            },
        ),
    ];
    if params.failover {
        options.push((c"rbd_auto_exclusive_lock_until_manual_request", c"false"));
        options.push((c"rbd_blocklist_on_break_lock", c"true"));
    }
    for (option, value) in options {
        cluster
            .set(option, value)
            .map_err(|errno| OpenError::SetOption(option.to_str().unwrap_or("?"), errno))?;
    }
    cluster.connect().map_err(OpenError::Connect)?;
    let ioctx = ffi::IoCtx::create(cluster, &params.pool).map_err(OpenError::Pool)?;
    ffi::Image::open(ioctx, &params.image).map_err(OpenError::Image)
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (step, errno) = match *self {
            OpenError::Create(errno) => ("creating the client", errno),
            OpenError::Config(errno) => ("reading the configuration", errno),
            OpenError::SetOption(option, errno) => {
                return write!(f, "setting {option}: {}", describe(errno));
            }
            OpenError::Connect(errno) => ("connecting", errno),
            OpenError::Pool(errno) => ("opening the pool", errno),
            OpenError::Image(errno) => ("opening the image", errno),
        };
        write!(f, "{step}: {}", describe(errno))
    }
}

fn describe(errno: i32) -> &'static str {
    nix::errno::Errno::from_raw(errno).desc()
}
