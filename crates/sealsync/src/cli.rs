//! Command-line grammar of the `sealsync` binary (clap derive). Parsing only: each command is
//! carried out by the module named after it.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Sealsync: end-to-end encrypted sync for offline-first devices.
#[derive(Debug, Parser)]
#[command(name = "sealsync", version, about, propagate_version = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create or run a sync server.
    #[command(subcommand)]
    Server(ServerCommand),
    /// Operator commands on a server's data directory.
    Admin(AdminArgs),
    /// Commands of one device (its local replica lives in --home).
    Device(DeviceArgs),
    /// Run the whole story on one machine: a server, three devices, offline edits, sync.
    Demo,
    /// Measure a full sync of many records from one device to a fresh one over loopback TLS.
    Bench(BenchArgs),
}

#[derive(Debug, Subcommand)]
pub(crate) enum ServerCommand {
    /// Create the server's CA, TLS certificate and keys, and its SQLite store.
    Init {
        /// Directory for the server's keys and data (created; must not be initialised yet).
        #[arg(long)]
        data: PathBuf,
        /// Address devices use to reach the server; its host goes into the certificate.
        #[arg(long, default_value = sealsync_server::DEFAULT_URL)]
        url: String,
    },
    /// Serve HTTP/2 over TLS 1.3 until interrupted.
    Run {
        /// Directory made by `sealsync server init`.
        #[arg(long)]
        data: PathBuf,
        /// Address and port to listen on (default: the port of the URL given at init; on
        /// that address if it is loopback, else on all interfaces).
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
}

#[derive(Debug, Args)]
pub(crate) struct AdminArgs {
    /// The server's data directory.
    #[arg(long)]
    pub(crate) data: PathBuf,
    #[command(subcommand)]
    pub(crate) command: AdminCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AdminCommand {
    /// Print a one-line enrollment bundle holding a one-time ticket for ACCOUNT.
    Enroll {
        /// Account the new device joins (created by its first device).
        #[arg(long)]
        account: String,
        /// How long the ticket stays valid, e.g. 15m, 2h, 1d.
        #[arg(long, default_value = "15m")]
        ttl: String,
        /// Server address to put in the bundle instead of the one given at init.
        #[arg(long)]
        url: Option<String>,
    },
}

#[derive(Debug, Args)]
pub(crate) struct DeviceArgs {
    /// The device's directory: local replica and encrypted key store.
    #[arg(long)]
    pub(crate) home: PathBuf,
    #[command(subcommand)]
    pub(crate) command: DeviceCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum DeviceCommand {
    /// Make this device's keys and enroll it with a bundle from `sealsync admin enroll`.
    Enroll {
        /// The bundle printed by `sealsync admin enroll`.
        bundle: String,
        /// A name for this device, shown to the account's other devices.
        #[arg(long)]
        name: String,
        /// Join with the account's recovery secret instead of pairing. The secret is read
        /// from SEALSYNC_RECOVERY, else from a prompt on the terminal, else from standard
        /// input; never from the command line (a value given here is refused, not echoed).
        #[arg(long, num_args = 0..=1, value_name = "NOTHING")]
        recovery: Option<Option<String>>,
        /// This is the first device of a new account (refused if the account has devices).
        #[arg(long, conflicts_with = "recovery")]
        new_account: bool,
    },
    /// On a trusted device: print a one-time code for the pending device DEVICE_ID, then
    /// pair with it while it runs `join CODE`.
    Approve {
        /// Device id, as printed by `enroll` on the new device (or `sealsync device pending`).
        device_id: String,
        /// How long to wait for the new device, e.g. 90s, 10m.
        #[arg(long, default_value = "10m")]
        timeout: String,
    },
    /// On a pending device: pair with the trusted device that shows CODE (from `approve`).
    Join {
        /// The one-time code the approving device printed, XXXX-XXXX. Omit it (or write
        /// `-`) to type it at a prompt, or to give it on standard input, so that it stays
        /// out of `ps` and shell history.
        code: Option<String>,
        /// How long to wait for the approving device, e.g. 90s, 10m.
        #[arg(long, default_value = "10m")]
        timeout: String,
    },
    /// List the devices waiting for approval.
    Pending,
    /// Write a record. The value comes from VALUE, --file, or standard input.
    Put {
        collection: String,
        key: String,
        /// The value (omit to read --file or standard input).
        value: Option<String>,
        /// Read the value from this file.
        #[arg(long, conflicts_with = "value")]
        file: Option<PathBuf>,
    },
    /// Print a record's value.
    Get { collection: String, key: String },
    /// Delete a record (a tombstone that syncs like any edit).
    Delete { collection: String, key: String },
    /// List the live records of a collection, one `key<TAB>value` line each (TAB, newline,
    /// backslash, control characters and bytes that are not UTF-8 escaped as \t \n \\ \xNN).
    List {
        collection: String,
        /// Print one JSON array of {"key": K, "value": V} (or "value_base64" for a value that
        /// is not UTF-8).
        #[arg(long)]
        json: bool,
    },
    /// List the live records whose keys match, in key order, in the format of `list`. Only
    /// the records printed are decrypted.
    Scan {
        collection: String,
        /// Only keys starting with P.
        #[arg(long, value_name = "P")]
        prefix: Option<String>,
        /// Only keys from K on (K included).
        #[arg(long, value_name = "K")]
        start: Option<String>,
        /// Only keys before K (K excluded).
        #[arg(long, value_name = "K")]
        end: Option<String>,
        /// At most N records (with --reverse, the last N).
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// Descending key order.
        #[arg(long)]
        reverse: bool,
        /// Print one JSON array, as `list --json` does.
        #[arg(long)]
        json: bool,
    },
    /// List the live records whose JSON field FIELD equals VALUE, in the format of `list`,
    /// through the index on FIELD (made by `index`).
    Find {
        collection: String,
        field: String,
        /// A JSON value (`"red"`, `1`, `true`, `null`, `[1,2]`); anything that is not JSON is
        /// taken as a string (`red`).
        #[arg(allow_hyphen_values = true)]
        value: String,
        /// Print one JSON array, as `list --json` does.
        #[arg(long)]
        json: bool,
    },
    /// Index the JSON field FIELD of the records of COLLECTION, for `find` (kept up to date
    /// by every later change; the index stores keyed hashes, never the values).
    Index { collection: String, field: String },
    /// Show every version of a record and which one won and why.
    History { collection: String, key: String },
    /// Collection commands.
    #[command(subcommand)]
    Collection(CollectionCommand),
    /// List the records of a manual collection that have concurrent versions.
    Conflicts { collection: String },
    /// Write the resolution of a conflict (supersedes every current version).
    Resolve {
        collection: String,
        key: String,
        value: String,
    },
    /// Push local edits and pull everything new (a progress bar on a terminal).
    Sync {
        /// Keep syncing until interrupted: after local writes (also by other processes),
        /// when the server says other devices pushed, and every minute; one line per sync.
        #[arg(long)]
        watch: bool,
        /// Print the report (with --watch: one JSON object per sync, one per line).
        #[arg(long)]
        json: bool,
        /// No progress bar and no report line (errors are still printed).
        #[arg(long, short)]
        quiet: bool,
    },
    /// Show this device's identity, trust state and collections.
    Status {
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum CollectionCommand {
    /// Create a collection with a merge policy.
    Create {
        name: String,
        /// lww (last writer wins), fields (per-field LWW on JSON objects) or manual.
        #[arg(long, default_value = "lww")]
        policy: String,
    },
}

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Records to sync.
    #[arg(long, default_value_t = 100_000)]
    pub(crate) records: usize,
    /// Value size of each record in bytes.
    #[arg(long, default_value_t = 1024)]
    pub(crate) size: usize,
    /// w1: initial sync (push, then a fresh device pulls); w6: live sync latency between
    /// two devices running the sync driver; ui: local write latency during a big pull and
    /// without one; all: the three in turn.
    #[arg(long, value_enum, default_value_t = crate::bench::Workload::W1)]
    pub(crate) workload: crate::bench::Workload,
    /// w6: how long the first device writes, in seconds.
    #[arg(long, default_value_t = 60)]
    pub(crate) duration_secs: u64,
    /// w6: milliseconds between the first device's writes.
    #[arg(long, default_value_t = 100)]
    pub(crate) interval_ms: u64,
    /// ui: milliseconds between the UI thread's writes.
    #[arg(long, default_value_t = 10)]
    pub(crate) ui_interval_ms: u64,
}
