//! A private sshd for one test (Debian's openssh-server, which `./scripts/test` installs):
//! started on a free port with generated host and user keys in a temporary directory,
//! stopped by PID on drop.

use std::collections::HashMap;
use std::io::Read as _;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tempfile::TempDir;

const SSHD: &str = "/usr/sbin/sshd";

/// A running sshd; killed (with every connection it serves) on drop.
pub struct Sshd {
    dir: TempDir,
    port: u16,
    addresses: Vec<String>,
    child: Option<Child>,
    generation: u32,
}

impl Sshd {
    /// Starts a server on 127.0.0.1 and a free port with fresh host and user keys.
    pub fn start() -> Sshd {
        Self::start_on(&["127.0.0.1"])
    }

    /// Starts a server listening on every one of `addresses` (loopback addresses such as
    /// 127.0.0.2 reach this machine too), on one free port, with fresh keys.
    pub fn start_on(addresses: &[&str]) -> Sshd {
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} is missing: the SSH tests need Debian's openssh-server; run ./scripts/test, \
             which installs it (or apt-get install openssh-server)"
        );
        let dir = tempfile::Builder::new()
            .prefix("dtk-sshd")
            .tempdir()
            .expect("temp dir");
        keygen(&dir.path().join("user_key"));
        std::fs::copy(
            dir.path().join("user_key.pub"),
            dir.path().join("authorized_keys"),
        )
        .expect("authorized_keys");
        prepare_privsep_dir();
        let mut sshd = Sshd {
            dir,
            port: 0,
            addresses: addresses.iter().map(|a| (*a).to_owned()).collect(),
            child: None,
            generation: 0,
        };
        sshd.new_host_key();
        let mut last_log = String::new();
        for _ in 0..5 {
            sshd.port = free_port();
            match sshd.spawn() {
                Ok(()) => return sshd,
                Err(log) => last_log = log,
            }
        }
        panic!("sshd did not start; its log:\n{last_log}");
    }

    /// The directory holding keys, config and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The listener's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The private key the server accepts.
    pub fn user_key(&self) -> PathBuf {
        self.dir().join("user_key")
    }

    /// The current host public key file.
    pub fn host_public_key(&self) -> PathBuf {
        self.dir().join(format!("host_key{}.pub", self.generation))
    }

    /// The SHA256 fingerprint of the current host key.
    pub fn host_fingerprint(&self) -> String {
        let out = Command::new("ssh-keygen")
            .arg("-lf")
            .arg(self.host_public_key())
            .output()
            .expect("ssh-keygen -lf");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.split_whitespace()
            .nth(1)
            .expect("fingerprint")
            .to_owned()
    }

    /// Writes a known_hosts file at `path` that holds the current host key, for every
    /// address the server listens on.
    pub fn write_known_hosts(&self, path: &Path) {
        let key = std::fs::read_to_string(self.host_public_key()).expect("host key");
        let mut words = key.split_whitespace();
        let (kind, body) = (words.next().expect("type"), words.next().expect("key"));
        let text: String = self
            .addresses
            .iter()
            .map(|a| format!("[{a}]:{} {kind} {body}\n", self.port))
            .collect();
        std::fs::write(path, text).expect("known_hosts");
    }

    /// The addresses it listens on.
    pub fn addresses(&self) -> &[String] {
        &self.addresses
    }

    /// Restarts on the same port with a new host key; every connection is dropped.
    pub fn restart_with_new_host_key(&mut self) {
        self.stop();
        self.new_host_key();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err(log) if Instant::now() > deadline => panic!("sshd did not restart:\n{log}"),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    /// Kills every process serving a connection (the per-connection sshd processes and the
    /// sessions' commands), as a network failure or a server crash would end them.
    pub fn drop_connections(&self) {
        let pids = descendants(self.pid());
        if !pids.is_empty() {
            let _ = Command::new("kill")
                .arg("-KILL")
                .args(pids.iter().map(u32::to_string))
                .stderr(Stdio::null())
                .status();
        }
    }

    /// How many processes serve connections now.
    pub fn connection_processes(&self) -> usize {
        descendants(self.pid()).len()
    }

    /// How many logins the server accepted so far (from its log).
    pub fn accepted_logins(&self) -> usize {
        self.log().matches("Accepted publickey for").count()
    }

    /// The server's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("sshd.log")).unwrap_or_default()
    }

    fn new_host_key(&mut self) {
        self.generation += 1;
        keygen(&self.dir().join(format!("host_key{}", self.generation)));
    }

    fn config(&self) -> String {
        let d = self.dir().display();
        let mut c = format!(
            "Port {port}\n\
             {listen}\
             HostKey {d}/host_key{gen}\n\
             PidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\n\
             StrictModes no\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             PermitRootLogin prohibit-password\n\
             UsePAM no\n\
             PrintMotd no\n\
             MaxStartups 200\n\
             MaxSessions 20\n\
             LogLevel INFO\n\
             SetEnv SHLVL=5\n",
            port = self.port,
            listen = self
                .addresses
                .iter()
                .map(|a| format!("ListenAddress {a}\n"))
                .collect::<String>(),
            gen = self.generation,
        );
        // `SetEnv SHLVL=5`: bash sources ~/.bashrc for commands run by sshd unless SHLVL
        // shows a nested shell. The tests compare stderr exactly and must not see what a
        // heavy .bashrc prints (pyenv's "cannot rehash"), nor wait for it.
        if penalties_supported() {
            // OpenSSH 9.8+ throttles sources that fail to authenticate; the tests fail
            // on purpose.
            c.push_str("PerSourcePenalties no\n");
        }
        c
    }

    /// Starts the listener and waits until the port accepts; `Err` carries the log.
    fn spawn(&mut self) -> Result<(), String> {
        let config = self.dir().join("sshd_config");
        std::fs::write(&config, self.config()).expect("sshd_config");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir().join("sshd.log"))
            .expect("sshd.log");
        let mut child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn sshd");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return Err(self.log());
            }
            if self
                .addresses
                .iter()
                .all(|a| TcpStream::connect((a.as_str(), self.port)).is_ok())
            {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        self.drop_connections();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "dtk-test", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .expect("ssh-keygen");
    assert!(status.success(), "ssh-keygen failed");
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// sshd refuses to start as root without its privilege-separation directory.
fn prepare_privsep_dir() {
    let dir = Path::new("/run/sshd");
    if !dir.exists() {
        let _ = std::fs::create_dir_all(dir);
    }
}

/// Whether this sshd knows `PerSourcePenalties` (it must be turned off where it exists).
fn penalties_supported() -> bool {
    static SUPPORTED: OnceLock<bool> = OnceLock::new();
    *SUPPORTED.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let key = dir.path().join("k");
        keygen(&key);
        let config = dir.path().join("c");
        std::fs::write(
            &config,
            format!("HostKey {}\nPerSourcePenalties no\n", key.display()),
        )
        .expect("config");
        Command::new(SSHD)
            .arg("-t")
            .arg("-f")
            .arg(&config)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// Every process below `root` (from /proc).
pub fn descendants(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (pid, ppid) in processes() {
        children.entry(ppid).or_default().push(pid);
    }
    let mut found = Vec::new();
    let mut todo = vec![root];
    while let Some(p) = todo.pop() {
        for &c in children.get(&p).into_iter().flatten() {
            found.push(c);
            todo.push(c);
        }
    }
    found
}

fn processes() -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let mut stat = String::new();
        if std::fs::File::open(entry.path().join("stat"))
            .and_then(|mut f| f.read_to_string(&mut stat))
            .is_err()
        {
            continue;
        }
        // pid (comm) state ppid ...: comm may hold spaces and parentheses.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|s| s.parse().ok()) {
            out.push((pid, ppid));
        }
    }
    out
}

/// Whether a process whose command line is exactly `argv` exists.
pub fn process_running(argv: &[&str]) -> bool {
    let want = argv.join("\0") + "\0";
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == want.as_bytes()))
}

/// The names of the SSH transport's run files (`.dtk-run-*`) in the node directory `dir`
/// (none when it does not exist).
pub fn run_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".dtk-run-"))
        .collect()
}

/// The user sshd runs commands as: whoever runs the tests.
pub fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("id -un");
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}
