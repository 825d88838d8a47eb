//! The embedded PostgreSQL default: with no `DATABASE_URL`, fordeler starts (or reuses) a private
//! cluster in a project-local data directory, from the system's PostgreSQL binaries.
//!
//! The cluster listens on a Unix socket only (no TCP port to collide with), inside its own
//! directory. `initdb` and `pg_ctl` refuse to run as root, so as root they run as the `postgres`
//! user through `runuser`, and the cluster's directory is handed to that user.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, bail};

/// A private cluster's directory layout.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// `<base>/data`: the PostgreSQL data directory.
    pub data: PathBuf,
    /// Directory of the Unix socket.
    pub socket_dir: PathBuf,
    /// `<base>/postgres.log`.
    pub log: PathBuf,
    bin: PathBuf,
    as_postgres: bool,
}

/// The socket's port number (only names the socket file; no TCP port is opened).
const PORT: u16 = 5432;

impl Cluster {
    /// Describes the cluster under `base` (created by [`Cluster::start`] if missing).
    pub fn new(base: &Path) -> anyhow::Result<Self> {
        let base = absolute(base)?;
        let as_postgres = is_root();
        let base = if as_postgres && !postgres_can_reach(&base) {
            // The project sits where the postgres user cannot go (e.g. under /root): keep the
            // cluster in a per-project directory it can reach.
            fallback_base(&base)
        } else {
            base
        };
        let data = base.join("data");
        Ok(Self {
            bin: find_bin_dir(&data)?,
            data,
            socket_dir: socket_dir(&base),
            log: base.join("postgres.log"),
            as_postgres,
        })
    }

    /// The connection URL of the cluster's `postgres` database.
    pub fn url(&self) -> String {
        let host = percent_encode(&self.socket_dir.display().to_string());
        format!("postgres://postgres@localhost/postgres?host={host}&port={PORT}")
    }

    /// Creates the cluster if needed and starts it if it is not running. Safe to call from
    /// several processes at once: they serialise on a lock file.
    pub fn start(&self) -> anyhow::Result<()> {
        let base = self
            .data
            .parent()
            .context("cluster directory has no parent")?;
        // Private: only its owner can create entries (such as a link in place of the lock file).
        private_dir(base).with_context(|| format!("cannot create {}", base.display()))?;
        let lock = std::fs::File::create(base.join("lock"))?;
        lock.lock().context("cannot lock the cluster directory")?;
        if !self.data.join("PG_VERSION").exists() {
            self.init()?;
        }
        if !self.is_running() {
            self.run_start()?;
        }
        Ok(())
    }

    /// Stops the cluster (fast shutdown) if it runs.
    pub fn stop(&self) -> anyhow::Result<()> {
        if self.is_running() {
            let data = self.data.display().to_string();
            check(
                self.pg("pg_ctl", &["stop", "-D", &data, "-m", "fast", "-w"])?,
                "pg_ctl stop",
            )?;
        }
        Ok(())
    }

    /// Whether the cluster's postmaster runs.
    pub fn is_running(&self) -> bool {
        let data = self.data.display().to_string();
        self.data.join("PG_VERSION").exists()
            && self
                .pg("pg_ctl", &["status", "-D", &data])
                .is_ok_and(|o| o.status.success())
    }

    /// Creates the cluster in `data.tmp` and renames it to `data` only when it is complete and
    /// configured, so a kill during creation never leaves a half-made cluster behind.
    fn init(&self) -> anyhow::Result<()> {
        let staging = self.data.with_extension("tmp");
        if staging.exists() {
            std::fs::remove_dir_all(&staging)?;
        }
        std::fs::create_dir_all(&staging)?;
        private_dir(&self.socket_dir)?;
        self.hand_to_postgres()?;
        let data = staging.display().to_string();
        let args = [
            "-D",
            &data,
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
        ];
        check(self.pg("initdb", &args)?, "initdb")?;
        // Unix socket only, reachable by its owner (and root) alone: trust authentication is
        // safe because nobody else can connect.
        // Memory and WAL settings are given at every start (`tuning`), so they follow the machine.
        let conf = "\n# fordeler's private cluster\nlisten_addresses = ''\nunix_socket_permissions = 0700\n\
                    max_connections = 200\nclient_connection_check_interval = 1s\n";
        let conf_path = staging.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path)?;
        text.push_str(conf);
        std::fs::write(&conf_path, text)?;
        std::fs::rename(&staging, &self.data)?;
        Ok(())
    }

    fn run_start(&self) -> anyhow::Result<()> {
        private_dir(&self.socket_dir)?;
        self.hand_to_postgres()?;
        let data = self.data.display().to_string();
        let log = self.log.display().to_string();
        // pg_ctl hands -o to a shell: quote the path.
        let options = format!(
            "-k {} -p {PORT} {}",
            shell_quote(&self.socket_dir.display().to_string()),
            tuning(memory_bytes())
        );
        let output = self.pg(
            "pg_ctl",
            &[
                "start", "-D", &data, "-l", &log, "-w", "-t", "60", "-o", &options,
            ],
        )?;
        check(output, "pg_ctl start").with_context(|| format!("see the server log {log}"))
    }

    fn hand_to_postgres(&self) -> anyhow::Result<()> {
        if !self.as_postgres {
            return Ok(());
        }
        let base = self
            .data
            .parent()
            .context("cluster directory has no parent")?;
        for dir in [base, self.socket_dir.as_path()] {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir)
                .status()?;
            if !status.success() {
                bail!("cannot hand {} to the postgres user", dir.display());
            }
        }
        Ok(())
    }

    fn pg(&self, tool: &str, args: &[&str]) -> anyhow::Result<Output> {
        let program = self.bin.join(tool);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        command.args(args).current_dir("/");
        command
            .output()
            .with_context(|| format!("cannot run {}", program.display()))
    }
}

fn check(output: Output, what: &str) -> anyhow::Result<()> {
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    bail!(
        "{what} failed ({}): {}{}",
        output.status,
        stderr.trim(),
        stdout.trim()
    )
}

/// `FORDELER_PG_BIN`; else the binaries of the existing cluster's version; else the newest
/// `/usr/lib/postgresql/*/bin` that has `initdb`.
fn find_bin_dir(data: &Path) -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("FORDELER_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    if let Ok(version) = std::fs::read_to_string(data.join("PG_VERSION")) {
        let bin = PathBuf::from(format!("/usr/lib/postgresql/{}/bin", version.trim()));
        if bin.join("pg_ctl").exists() {
            return Ok(bin);
        }
        bail!(
            "the cluster in {} is PostgreSQL {}, whose binaries ({}) are not installed",
            data.display(),
            version.trim(),
            bin.display()
        );
    }
    let mut candidates: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    candidates.sort();
    match candidates.pop() {
        Some((_, bin)) => Ok(bin),
        None => bail!(
            "no DATABASE_URL is set and no PostgreSQL server binaries were found in \
             /usr/lib/postgresql/*/bin: install Debian's postgresql package \
             (scripts/install-deps.sh does), or set DATABASE_URL"
        ),
    }
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    if path.is_absolute() {
        Ok(path.to_path_buf())
    } else {
        Ok(std::env::current_dir()?.join(path))
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Whether the postgres user can enter every directory above `path` that exists.
fn postgres_can_reach(path: &Path) -> bool {
    let existing = path
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    Command::new("runuser")
        .args(["-u", "postgres", "--", "test", "-x"])
        .arg(existing)
        .status()
        .is_ok_and(|s| s.success())
}

/// Creates `dir` (mode 0700) if missing, refusing a symlink or a non-directory in its place
/// (the fallback directories under /tmp have predictable names).
fn private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.file_type().is_symlink() || !meta.is_dir() => {
            bail!(
                "{} is not a plain directory; refusing to use it",
                dir.display()
            )
        }
        Ok(_) => {}
        Err(_) => {
            // Ancestors get the usual permissions (the postgres user must traverse them); only
            // the directory itself is private.
            if let Some(parent) = dir.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::DirBuilder::new().mode(0o700).create(dir)?;
        }
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(())
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// Percent-encodes a socket path for the `host` parameter of a URL.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn short_hash(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(path.display().to_string().as_bytes())[..6])
}

fn fallback_base(base: &Path) -> PathBuf {
    PathBuf::from(format!("/var/tmp/fordeler-{}", short_hash(base)))
}

/// `<base>/run`, or a short directory under /tmp when that path would not fit in a Unix socket
/// address (about 100 bytes).
fn socket_dir(base: &Path) -> PathBuf {
    let dir = base.join("run");
    if dir.as_os_str().len() + ".s.PGSQL.5432".len() < 100 {
        dir
    } else {
        PathBuf::from(format!("/tmp/fordeler-{}", short_hash(base)))
    }
}

/// Server settings for imports, given at start: a quarter of the machine's memory for shared
/// buffers (128 MB to 8 GB; the import's index pages stay in memory instead of being written
/// out and read back by the backend), a larger WAL buffer, and checkpoints far enough apart
/// that a large package does not pay a full-page image for every page it touches twice.
fn tuning(memory: u64) -> String {
    const MB: u64 = 1024 * 1024;
    let shared_buffers = (memory / 4).clamp(128 * MB, 8192 * MB) / MB;
    format!(
        "-c shared_buffers={shared_buffers}MB -c wal_buffers=64MB -c max_wal_size=8GB \
         -c checkpoint_timeout=15min"
    )
}

/// The machine's memory (`MemTotal`), or 1 GB when it cannot be read.
fn memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kb * 1024)
        })
        .unwrap_or(1 << 30)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_buffers_take_a_quarter_of_memory_within_bounds() {
        const GB: u64 = 1 << 30;
        assert!(tuning(24 * GB).contains("shared_buffers=6144MB"));
        assert!(tuning(GB / 4).contains("shared_buffers=128MB"));
        assert!(tuning(256 * GB).contains("shared_buffers=8192MB"));
    }
}
